"""Options and output helpers shared by the subcommands (not a command itself)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotpatch import keep
from hotpatch.errors import ConfigError
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse ``type=``: its ``ConfigError`` becomes the option's error message
    (argparse would print only "invalid value" for a ValueError)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def _number(kind: type, low: float, inclusive: bool, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}; "
                                             f"expected {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text}: expected {what}")
        return value

    parse.__name__ = f"{what} {kind.__name__}"
    return parse


#: argparse ``type=`` of counts and sizes: rejected when the command line is read, before any work.
positive_int = _number(int, 1, True, "a positive integer (1 or more)")
nonnegative_int = _number(int, 0, True, "an integer of 0 or more")
positive_float = _number(float, 0.0, False, "a number greater than 0")
nonnegative_float = _number(float, 0.0, True, "a number of 0 or more")


def stage_value(text: str) -> int | list[int]:
    """``"3"`` -> 3; ``"1,3"`` -> [1, 3] (one value per pruning stage)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer or a comma-separated list of integers (e.g. 3, or 1,3 for two stages)"
        ) from None
    return values[0] if len(values) == 1 else values


def add_hot_arguments(parser: argparse.ArgumentParser) -> None:
    """``--n --f --pipeline --prune --recover --k --prune-pos-embed``; unset ones are None
    (``Target.patch`` then takes the target's defaults, e.g. a recipe's paper settings)."""
    group = parser.add_argument_group("HoT settings")
    group.add_argument("--n", type=stage_value, metavar="n", help="prune after the n-th temporal block; a list "
                       "such as 1,3 prunes in stages (with --f 121,61)")
    group.add_argument("--f", type=stage_value, metavar="f", help="representative frames kept after pruning "
                       "(f <= F); one per stage, e.g. 121,61")
    group.add_argument("--keep", type=argument_type(keep.parse), metavar="K",
                       help="instead of --f: the fraction of the F frames kept, e.g. 0.33 (f = K*F rounded to a valid "
                            "value, printed); one per stage, e.g. 0.5,0.25")
    group.add_argument("--pipeline", choices=("auto", "seq2seq", "seq2frame"),
                       help="seq2seq recovers all frames; seq2frame keeps the centre one (default: the recipe's, else auto)")
    group.add_argument("--prune", choices=tuple(PRUNERS), help="token pruning (default: tpc)")
    group.add_argument("--recover", choices=tuple(RECOVERERS),
                       help="token recovery for seq2seq (default: tra; finetune: linear-tra)")
    group.add_argument("--k", type=positive_int, metavar="K", help="DPC-kNN neighbours (default: 2)")
    group.add_argument("--prune-pos-embed", action=argparse.BooleanOptionalAction, default=None,
                       help="learnable (1, f, C) positional embedding after pruning "
                            "(default: the recipe's; on for MixSTE and MotionBERT as in the paper)")


def hot_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``Target.patch`` from ``add_hot_arguments`` options."""
    if args.f is not None and args.keep is not None:
        raise ConfigError(f"pass --f {args.f} or --keep {args.keep}, not both (--keep K keeps K*F frames)")
    return dict(n=args.n, f=args.f, keep=args.keep, pipeline=args.pipeline, prune=args.prune, recover=args.recover,
                k=args.k, prune_pos_embed=args.prune_pos_embed)


def process_rank() -> int:
    """This process's rank under ``torchrun`` (its ``RANK``), 0 outside it: only rank 0 prints and writes."""
    return int(os.environ.get("RANK", "0"))


def consoles(quiet: bool) -> tuple[Any, Any]:
    """(stdout console for results, stderr console for progress; None when ``quiet``).

    Plain text lines are never wrapped (``soft_wrap``): a long path or setting stays on one
    line whatever the terminal width. Tables fit the terminal, or 120 columns when stdout
    is not a terminal (a pipe, a file, a test)."""
    from rich.console import Console

    out = Console(file=sys.stdout, soft_wrap=True)
    if not out.is_terminal:
        out.width = 120
    err = None if quiet else Console(file=sys.stderr)
    return out, err


def describe_config(cfg: dict[str, Any]) -> str:
    """``n=3 f=81 F=243 seq2seq tpc+tra pos-embed`` from a ``hotpatch_config`` (the model cards' text)."""
    from hotpatch.pretrained import describe_setting

    return describe_setting(cfg)


#: Options that name a file a command reads, and the files it writes (attribute, flag).
INPUT_OPTIONS = (("target", "TARGET"), ("checkpoint", "--checkpoint"), ("data", "--data"), ("data_2d", "--data-2d"),
                 ("keypoints", "--keypoints"), ("video", "--video"))
OUTPUT_OPTIONS = (("output", "-o"), ("json", "--json"), ("csv", "--csv"), ("plot", "--plot"), ("render", "--render"),
                  ("onnx", "--onnx"), ("torch_export", "--torch-export"))


def check_outputs(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> None:
    """Before any work: every output of the command can be written, none is one of its inputs,
    and no two outputs are the same file (``extra``: outputs by flag that are not options,
    e.g. the default training-state file). ``--json -`` (stdout) is no file."""
    from hotpatch.atomic import check_writable

    outputs = [(flag, getattr(args, name, None)) for name, flag in OUTPUT_OPTIONS]
    outputs += list((extra or {}).items())
    outputs = [(flag, Path(p)) for flag, p in outputs if p and str(p) != "-"]
    inputs = [(flag, Path(p)) for name, flag in INPUT_OPTIONS
              if (p := getattr(args, name, None)) and isinstance(p, str) and Path(p).exists()]
    for i, (flag, path) in enumerate(outputs):
        check_writable(path)
        for other, source in inputs:
            if _same_file(path, source):
                raise ConfigError(f"{flag} {path} is also {other}: the command would overwrite its own input; "
                                  f"write to another file, e.g. {path.with_name(path.stem + '.new' + path.suffix)}")
        for other, earlier in outputs[:i]:
            if _same_file(path, earlier):
                raise ConfigError(f"{other} and {flag} are both {path}; give each output its own file")


def check_png(flag: str, path: str | None, what: str = "the plot") -> None:
    """A picture option (``flag``) must name a ``.png`` file (when given)."""
    if path and not path.lower().endswith(".png"):
        raise ConfigError(f"{flag} {path}: {what} is a PNG; pass a path ending in .png")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


# ------------------------------------------------------------------ options with one meaning everywhere
# Every command that has one of these options defines it through the function here, so the option
# means the same on every command (tests/cli/test_help.py checks every option that two commands share).

THREADS_HELP = "torch threads for the whole command: every model run, timing and evaluation (default: torch's)"
JSON_HELP = "write the results as JSON to PATH ('-' for stdout only)"
BATCH_HELP = "clips (F-frame windows) per forward pass; in training, per optimiser step across all processes"
COMPILE_HELP = ("run the model as torch.compile(model, mode=MODE, fullgraph=True) (compiled before any timing, "
                "the compile time reported apart; MODE default: default)")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def add_threads_option(group: Any) -> None:
    """``--threads T``: applied by ``hotpatch.cli.main`` around the whole command (and restored)."""
    group.add_argument("--threads", type=positive_int, metavar="T", help=THREADS_HELP)


def add_json_option(group: Any, *, deprecated: tuple[str, ...] = ()) -> None:
    """``--json PATH`` (and hidden ``deprecated`` spellings of it that warn and do the same)."""
    group.add_argument("--json", metavar="PATH", help=JSON_HELP)
    for flag in deprecated:
        group.add_argument(flag, dest="json", metavar="PATH", action=DeprecatedAlias, replacement="--json",
                           help=argparse.SUPPRESS)


def add_batch_option(group: Any, default: int) -> None:
    group.add_argument("--batch", type=positive_int, default=default, metavar="B",
                       help=f"{BATCH_HELP} (default: {default})")


def add_compile_option(group: Any) -> None:
    group.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, help=COMPILE_HELP)


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new one's ``dest`` and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.replacement} (same meaning)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)
