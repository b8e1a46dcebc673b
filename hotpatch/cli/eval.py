"""``hotpatch eval TARGET --data PATH [--n N --f F ...]``: accuracy and FLOPs, original vs patched.

Zero-retraining: the checkpoint's weights are used as they are (a TRA the checkpoint holds no
weights for recovers linearly instead, unless ``--recover tra``; a recipe without ``--checkpoint``
is refused unless ``--random-weights``). Both models see the same test windows (seq2seq:
non-overlapping; seq2frame: one per centre frame). Under ``torchrun`` the windows are split across
the processes and rank 0 prints the one table::

    torchrun --nproc_per_node 2 -m hotpatch -- eval base.pt --data clips.npz --n 3 --f 81

(the ``--`` ends torchrun's own options: without it torchrun takes ``--n`` for an abbreviation
of its ``--nnodes`` / ``--nproc-per-node`` and stops).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from typing import Any

import torch

from hotpatch.atomic import write_text
from hotpatch.cli._data import add_data_arguments, check_data_files, load_splits
from hotpatch.cli._options import (add_hot_arguments, check_outputs, consoles, describe_config, hot_settings,
                                   positive_int)
from hotpatch.errors import ConfigError, InputShapeError
from hotpatch.cli._progress import Progress
from hotpatch.cli._targets import Target, add_target_arguments, describe, load_target
from hotpatch.cli._weights import add_random_weights, check_weights

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="MPJPE / P-MPJPE / MPJVE and FLOPs of the original and the patched model (no retraining)",
        description="Evaluate TARGET and its HoT-patched version side by side on the test split of DATA, "
                    "with the weights as they are (zero-retraining).")
    add_target_arguments(p)
    add_hot_arguments(p)
    add_data_arguments(p)
    from hotpatch.cli._options import add_batch_option, add_threads_option  # shared option definitions

    g = p.add_argument_group("evaluation")
    add_batch_option(g, 64)
    add_threads_option(g)
    g.add_argument("--flip", action="store_true", help="test-time flip augmentation (as MixSTE evaluates)")
    g.add_argument("--stride", type=positive_int, metavar="S",
                   help="window stride (default: F for seq2seq, 1 for seq2frame; seq2frame > 1 skips frames)")
    g.add_argument("--seed", type=int, default=0, help="seed of new parameters (an untrained TRA) (default: 0)")
    add_random_weights(g)
    g.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH ('-' for stdout only)")
    p.set_defaults(run=run)
    return p


def _refuse_several_inputs(name: str) -> None:
    raise ConfigError(f"{name} takes several inputs (--example-input); eval feeds it (B, F, J, C) clips of --data "
                      "alone. Evaluate such a model (a diffusion denoiser) with its own sampling loop; hotpatch "
                      "profile and sweep (without --data) measure its cost")


def run(args: argparse.Namespace) -> int:
    from hotpatch.distributed import setup_distributed, teardown
    from hotpatch.evaluate import compare_models

    out, err = consoles(args.quiet)
    check_outputs(args)
    if getattr(args, "example_input", None):
        _refuse_several_inputs(args.target)
    check_data_files(args)
    torch.manual_seed(args.seed)
    target = load_target(args)
    if target.several_inputs:
        _refuse_several_inputs(describe(target))
    check_weights(target, args, "evaluating")
    if target.patched:
        original, patched = target.original(), target.model
    else:
        original, patched = target.model, target.patch(**hot_settings(args))
    frames, joints, channels = target.input_shape()
    _check_geometry(joints, channels, target)
    ctx = setup_distributed()
    try:
        with Progress(err if ctx.is_main else None, "eval") as progress:
            progress.status("loading data")
            splits = load_splits(args)
            result = compare_models(
                original, patched, splits["test"], frames=frames, batch_size=args.batch, flip=args.flip,
                stride=args.stride, confidence=channels == 3, recovery="as-is" if args.recover == "tra" else
                "parameter-free", dist=ctx,
                progress=lambda name, done, total: progress.update(f"evaluating {name}", done, total))
    finally:
        teardown(ctx)
    if not ctx.is_main:
        return 0
    config = result["config"]
    result["target"] = describe(target)
    result["data"] = {"path": str(args.data), "data_2d": args.data_2d, "sequences": len(splits["test"]),
                      "max_clips": args.max_clips}
    if args.json:
        text = json.dumps(json_safe(result), indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    out.print(f"{describe(target)}; HoT {describe_config(config)}; {result['data']['sequences']} test sequences, "
              f"{result['config']['windows']} windows{' (flip)' if args.flip else ''}"
              + (f" on {ctx.world_size} processes" if ctx.distributed else ""), highlight=False, markup=False)
    if config.get("recovery_note"):
        out.print(f"recovery: {config['recovery_note']}", highlight=False, markup=False)
    out.print(table(result))
    if args.json:
        out.print(f"wrote {args.json}", highlight=False, markup=False)
    return 0


def json_safe(value: Any) -> Any:
    """``value`` with NaN / inf floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _check_geometry(joints: int, channels: int, target: Target) -> None:
    if joints != 17 or channels not in (2, 3):
        raise InputShapeError(
            f"{target.name} takes clips with J={joints}, C={channels}; the data has 17 joints with 2D inputs "
            "(C=2, or C=3 with a confidence channel). Build the model for 17 joints and 2 or 3 channels."
        )


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> Any:
    """A rich table: original, patched and change of each error (mm) and of the paper FLOPs."""
    from rich.table import Table

    a, b = result["original"], result["patched"]
    t = Table(title=f"zero-retraining accuracy ({result['config']['pipeline']})")
    t.add_column("metric")
    t.add_column("original", justify="right")
    t.add_column("patched", justify="right")
    t.add_column("change", justify="right")
    for key, label in (("mpjpe", "MPJPE (mm)"), ("p_mpjpe", "P-MPJPE (mm)"), ("mpjve", "MPJVE (mm)")):
        if key in a:
            d = b[key] - a[key]
            t.add_row(label, _fmt(a[key]), _fmt(b[key]), f"{d:+.1f}")
    if a.get("flops") and b.get("flops") is not None:
        pct = result["delta"].get("flops_pct")
        t.add_row("paper FLOPs / clip (G)", _fmt(a["flops"] / 1e9, 3), _fmt(b["flops"] / 1e9, 3), f"{pct:+.1f}%")
    for key, label in (("mpjpe", "MPJPE"), ("p_mpjpe", "P-MPJPE")):
        if f"{key}_selected" in b:
            t.add_row(f"{label} selected / pruned frames", "", f"{_fmt(b[key + '_selected'])} / "
                      f"{_fmt(b[key + '_pruned'])}", "")
    t.add_row("frames scored", str(a["frames"]), str(b["frames"]), "")
    return t
