"""``hotpatch show TARGET --data FILE --clip NAME -o OUT.png``: which frames each pruner keeps."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import torch

from hotpatch.cli._options import argument_type, check_outputs, check_png, consoles, stage_value
from hotpatch.keep import parse as keep_parse
from hotpatch.patch import stage_text
from hotpatch.cli.sweep import name_list
from hotpatch.errors import ConfigError, DataError
from hotpatch.prune import PRUNERS
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hotpatch.cli._data import add_data_arguments

    p = subparsers.add_parser(
        "show", help="plot one clip's motion with the frames each pruner keeps (PNG)",
        description="Run TARGET patched with each pruner on one F-frame window of a clip and plot the clip's "
                    "per-frame joint speed with the kept frames marked, one panel per pruner.")
    add_target_arguments(p)
    add_data_arguments(p)
    g = p.add_argument_group("what to show")
    g.add_argument("--clip", required=True, metavar="NAME", help="clip (sequence) name, or a prefix of it")
    g.add_argument("--camera", type=int, default=0, metavar="K", help="which of the clip's views (default: 0)")
    g.add_argument("--start", type=int, metavar="S", help="first frame of the window (default: centred in the clip)")
    g.add_argument("--n", type=stage_value, metavar="n",
                   help="prune after the n-th temporal block, or a list such as 1,3 (default: the recipe's)")
    g.add_argument("--f", type=stage_value, metavar="f", help="frames kept, one per stage (default: the recipe's)")
    g.add_argument("--keep", type=argument_type(keep_parse), metavar="K",
                   help="instead of --f: the fraction of the F frames kept, one per stage (f = K*F, rounded)")
    g.add_argument("--prune", type=name_list(tuple(PRUNERS)), default=["tpc", "uniform"], metavar="P,..",
                   help=f"pruners side by side ({', '.join(PRUNERS)}) (default: tpc,uniform)")
    g.add_argument("-o", "--output", required=True, metavar="OUT.png", help="the picture")
    from hotpatch.cli._options import add_threads_option  # shared option definitions

    add_threads_option(g)
    p.set_defaults(run=run)
    return p


def find_sequence(sequences: list, clip: str, camera: int) -> Any:
    """The ``camera``-th view of the first clip whose name is ``clip`` or starts with it."""
    views = [s for s in sequences if s.name == clip or s.name.split("/")[0] == clip]
    if not views:
        views = [s for s in sequences if s.name.startswith(clip)]
        names = sorted({s.name.split("/")[0] for s in views})
        views = [s for s in views if s.name.split("/")[0] == names[0]] if names else []
    if not views:
        examples = ", ".join(sorted({s.name.split("/")[0] for s in sequences})[:5])
        raise DataError(f"no clip named {clip!r} in the data (e.g. {examples}); pass --clip NAME")
    if not 0 <= camera < len(views):
        raise DataError(f"clip {clip!r} has {len(views)} views; pass --camera 0..{len(views) - 1}")
    return views[camera]


def run(args: argparse.Namespace) -> int:
    from hotpatch.atomic import atomic_write
    from hotpatch.cli._data import check_data_files, load_splits
    from hotpatch.data import window_frames
    from hotpatch.patch import prepare
    from hotpatch.viz import joint_speed, kept_frames_plot

    out, _ = consoles(args.quiet)
    check_outputs(args)
    check_png("-o", args.output, "the picture")
    check_data_files(args)
    target = load_target(args)
    if target.patched:
        raise ConfigError(f"{target.name} is already patched; pass the original model to compare pruners")
    frames, joints, channels = target.input_shape()
    n = args.n if args.n is not None else target.defaults.get("n")
    if args.f is not None and args.keep is not None:
        raise ConfigError("pass --f or --keep, not both (--keep K keeps K*F frames)")
    f, keep = (args.f, args.keep) if args.f is not None or args.keep is not None else (
        target.defaults.get("f"), target.defaults.get("keep"))
    if n is None or (f is None and keep is None):
        raise ConfigError(f"{target.name} has no default HoT settings; pass --n and --f")
    splits = load_splits(args)
    seq = find_sequence(splits["test"] + splits["train"], args.clip, args.camera)
    start = args.start if args.start is not None else max(0, (len(seq) - frames) // 2)
    if not 0 <= start < len(seq):
        raise ConfigError(f"--start {start}: the clip has {len(seq)} frames; pass 0 <= S < {len(seq)}")
    idx, _ = window_frames(start, len(seq), frames)
    x = torch.from_numpy(seq.keypoints[idx]).unsqueeze(0)
    if channels == 3:
        x = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
    prepared = prepare(target.model, example_input=x)
    kept: dict[str, list[list[int]]] = {}
    for name in args.prune:
        patched = prepared.patch(n, f, keep=keep, prune=name, recover="linear",
                                 pipeline=target.defaults.get("pipeline") or "auto")
        kept[name] = _kept_frames(patched, x)
    f = patched.hotpatch_config["f"]
    speed = joint_speed(seq.positions[idx]) * 1000.0  # metres -> mm per frame
    title = (f"{seq.name}, frames {start}-{start + frames - 1}: n={stage_text(n)}, f={stage_text(f)} of F={frames} "
             f"({describe(target)})")
    with atomic_write(args.output) as tmp:
        kept_frames_plot(tmp, speed, kept, start=start, title=title, ylabel="joint speed (mm/frame)")
    for name, stages in kept.items():
        frames_kept = stages[-1]
        fast = speed >= np.quantile(speed, 0.75)
        share = fast[frames_kept].mean() if len(frames_kept) else 0.0
        out.print(f"{name}: kept {len(frames_kept)} frames, {100 * share:.0f}% of them among the fastest quarter",
                  highlight=False, markup=False)
    out.print(f"wrote {args.output}", highlight=False, markup=False)
    return 0


def _kept_frames(patched: torch.nn.Module, x: torch.Tensor) -> list[list[int]]:
    """The frames each pruning stage keeps (original indices), first stage first."""
    from hotpatch.engine.rewrite import stage_pruners

    recorded: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda m, a, out: recorded.append(out[-1].detach()))
               for _, m in stage_pruners(patched)]
    try:
        with torch.no_grad():
            patched.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return [index[0].tolist() for index in recorded]
