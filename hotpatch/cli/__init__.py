"""The ``hotpatch`` command line: ``hotpatch profile | patch | eval | train | finetune | sweep | tune | show | lift | export | recipes``.

Each subcommand lives in ``hotpatch/cli/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors end the program with one line and exit code 2 (a
traceback only with ``--debug``). Under ``torchrun`` only rank 0 logs, and a leading ``--``
(``torchrun --nproc_per_node 2 -m hotpatch -- eval ... --n 3``: where torchrun's own options end,
so that its parser does not take ``--n`` for an abbreviation of ``--nnodes``) is skipped. Every command's ``--help`` ends with one or two examples
(:data:`EXAMPLES`, or the command module's own ``EXAMPLES``); options that several commands
share are defined once in ``cli/_options.py``; ``--threads`` holds for the whole command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from hotpatch._version import __version__
from hotpatch.errors import HotpatchError

COMMANDS = ("profile", "patch", "eval", "train", "finetune", "sweep", "tune", "show", "lift", "export", "recipes")

#: One or two command lines per command, printed at the end of its ``--help`` (a command module's
#: own ``EXAMPLES`` tuple takes precedence). tests/cli/test_help.py parses every one of them.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "profile": ("hotpatch profile mixste --n 3 --f 81",
                "hotpatch profile model.pt --trust --frames 243 --n 3 --f 81 --json profile.json"),
    "patch": ("hotpatch patch mixste --n 3 --f 81 -o hot_mixste.pt",),
    "eval": ("hotpatch eval base.pt --data clips.npz --n 3 --f 81 --recover linear",),
    "train": ("hotpatch train mixste --frames 81 --data clips.npz --epochs 20 -o base.pt",),
    "finetune": ("hotpatch finetune base.pt --data clips.npz --n 3 --f 27 --epochs 5 -o hot.pt",),
    "sweep": ("hotpatch sweep base.pt --data clips.npz --n 1,2,3 --f 27,41 --plot pareto.png",
              "hotpatch sweep mixste --stages 1,3:121,61 --no-latency"),
    "tune": ("hotpatch tune base.pt --data clips.npz --budget 0.5 -o tuned.pt",
             "hotpatch tune base.pt --data clips.npz --latency-ms 20 --check-grid --json tune.json -o tuned.pt"),
    "show": ("hotpatch show base.pt --data clips.npz --clip dataset-1_walk_normal --prune tpc,uniform -o kept.png",),
    "lift": ("hotpatch lift hot.pt --keypoints alphapose-results.json -o poses3d.npz --render poses3d.gif",),
    "export": ("hotpatch export hot.pt --onnx hot.onnx",),
    "recipes": ("hotpatch recipes --json recipes.json", "hotpatch recipes mixste-tpc-243-61"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that the examples at the end keep their lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def _add_examples(parser: argparse.ArgumentParser, examples: Sequence[str]) -> None:
    parser.formatter_class = _HelpFormatter
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error form: one line and where to read more, no usage block
    (subcommand parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hotpatch", description="Hourglass Tokenizer (HoT) patches for video pose transformers."
    )
    parser.add_argument("--version", action="version", version=f"hotpatch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="print only the results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:  # the source of truth: a listed command that cannot be imported is a bug
        try:
            module = importlib.import_module(f"hotpatch.cli.{name}")
        except ImportError as err:
            raise ImportError(
                f"hotpatch command {name!r} is listed in hotpatch.cli.COMMANDS but hotpatch.cli.{name} "
                f"cannot be imported ({type(err).__name__}: {err}); the installation is broken or incomplete"
            ) from err
        module.add_parser(sub)
        _add_global_options(sub.choices[name])
        examples = getattr(module, "EXAMPLES", None) or EXAMPLES.get(name)
        if examples:
            _add_examples(sub.choices[name], examples)
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """Also accept ``--debug`` / ``--quiet`` after the subcommand (``hotpatch profile X --quiet``)."""
    for flag, text in (("--debug", "show tracebacks and debug logs"), ("--quiet", "print only the results")):
        try:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
        except argparse.ArgumentError:
            pass  # the subcommand defines it itself


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # torchrun ... -m hotpatch -- eval ...: the end of torchrun's own options
        argv = argv[1:]
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 logs; the others only errors
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR if rank else logging.WARNING if args.quiet
        else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with _torch_threads(getattr(args, "threads", None)):
            return int(args.run(args) or 0)
    except (HotpatchError, FileNotFoundError, OSError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception holds
        print(f"hotpatch {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """``--threads``: that many torch threads while the command runs, then the count it had."""
    if not threads:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
