"""``hotpatch tune TARGET --data FILE (--budget 0.5 | --latency-ms X) -o tuned.pt``: search single and
two-stage schedules × pruners × recoveries by zero-retraining error (successive halving on calibration
windows of the training split) and save the chosen patched model."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from hotpatch.atomic import atomic_write, write_text
from hotpatch.autotune.halving import MIN_WINDOWS
from hotpatch.cli._options import (add_batch_option, add_json_option, add_threads_option, check_outputs, check_png,
                                   consoles, nonnegative_int, positive_float, positive_int)
from hotpatch.cli._progress import Progress
from hotpatch.cli._targets import add_target_arguments, describe, load_target
from hotpatch.cli.sweep import name_list
from hotpatch.errors import ConfigError, TargetError
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected a fraction such as 0.5") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: a fraction of the original's paper FLOPs, 0 < budget < 1")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hotpatch.cli._data import add_data_arguments

    p = subparsers.add_parser(
        "tune", help="choose n, f, stages, pruner and recovery for a FLOPs budget or a latency limit",
        description="Trace TARGET once, build every single cut and two-stage schedule that spends about the "
                    "budget, with every pruner and parameter-free recovery, and pick the one with the lowest "
                    "zero-retraining MPJPE by successive halving on calibration windows of the training split "
                    "of --data. Writes the chosen patched model (hotpatch.save).")
    add_target_arguments(p)
    add_data_arguments(p)
    g = p.add_argument_group("limit (one of)")
    lim = g.add_mutually_exclusive_group(required=True)
    lim.add_argument("--budget", type=_fraction, metavar="B", help="a fraction of the original's paper FLOPs, e.g. 0.5")
    lim.add_argument("--latency-ms", type=positive_float, metavar="MS",
                     help="a latency limit on this device (timed interleaved with the original)")
    s = p.add_argument_group("search")
    s.add_argument("--prune", type=name_list(tuple(PRUNERS)), metavar="P,..",
                   help="pruners to try (default: tpc, uniform, merge)")
    s.add_argument("--recover", type=name_list(tuple(RECOVERERS)), metavar="R,..",
                   help="recoverers to try, parameter-free ones (default: linear, unmerge)")
    s.add_argument("--pipeline", choices=("seq2seq", "seq2frame"),
                   help="seq2seq recovers all frames; seq2frame keeps the centre one "
                        "(default: the recipe's, else seq2seq)")
    s.add_argument("--single", action="store_true", help="single cuts only (no two-stage schedules)")
    s.add_argument("--pairs", type=positive_int, default=2, metavar="P",
                   help="(f1, f2) pairs tried per two-stage schedule (default: 2)")
    s.add_argument("--eta", type=positive_int, default=3, metavar="ETA",
                   help="keep 1/ETA of each round, with ETA times its windows (default: 3)")
    s.add_argument("--windows", type=positive_int, default=243, metavar="W",
                   help="calibration windows, evenly spread over the training split (default: 243)")
    s.add_argument("--first-windows", type=positive_int, metavar="W",
                   help="windows of round 0 (default: W / ETA^R, R the halvings that leave one candidate; "
                        "--windows here: the exhaustive grid)")
    s.add_argument("--min-windows", type=positive_int, default=MIN_WINDOWS, metavar="M",
                   help=f"the fewest windows any round ranks candidates on (default: {MIN_WINDOWS})")
    s.add_argument("--check-grid", action="store_true",
                   help="afterwards score every candidate on every window: the chosen setting's rank in the grid, "
                        "its gap to the best and the noise of that gap")
    t = p.add_argument_group("evaluation and timing")
    add_batch_option(t, 64)
    t.add_argument("--repeats", type=positive_int, default=5, metavar="R",
                   help="timed forwards per model (with --latency-ms) (default: 5)")
    t.add_argument("--warmup", type=nonnegative_int, default=1, metavar="W",
                   help="untimed forwards first (with --latency-ms) (default: 1)")
    add_threads_option(t)
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="the chosen patched model")
    add_json_option(o, deprecated=("--report",))  # everything tried
    o.add_argument("--markdown", metavar="PATH.md", help="the report as Markdown")
    o.add_argument("--plot", metavar="PATH.png", help="error (calibration MPJPE of every candidate) vs paper FLOPs")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from hotpatch.autotune import tune
    from hotpatch.cli._data import check_data_files, load_splits
    from hotpatch.saving import save

    out, err = consoles(args.quiet)
    check_outputs(args, {"--markdown": args.markdown} if args.markdown else None)
    check_png("--plot", args.plot)
    if args.plot:
        from hotpatch.render import pyplot

        pyplot()  # matplotlib missing: the plot extra's message now, before the search
    check_data_files(args)
    target = load_target(args)
    if target.patched:
        raise TargetError(f"{target.name} is already patched; tune the original model (a recipe, module:Class or "
                          "a model file)")
    if target.several_inputs:
        raise ConfigError(f"{describe(target)} takes several inputs; tune feeds (B, F, J, C) clips of --data alone")
    if target.source is None:
        raise TargetError(f"{target.name} does not say how it was built (no hotpatch_source), so the tuned file "
                          "could not be loaded again; pass a recipe name or package.module:Class")
    frames, _, _ = target.input_shape()
    pipeline = target.pipeline(args.pipeline)
    with Progress(err, "tune") as progress, _search_settings(getattr(args, "debug", False)):
        progress.status("loading data")
        calibration = load_splits(args)["train"]
        if not calibration:
            raise ConfigError(f"--data {args.data} has no training split to calibrate on")
        result = tune(target.model, calibration, budget=args.budget, latency_ms=args.latency_ms, prune=args.prune,
                      recover=args.recover, pipeline=pipeline, example_input=target.example_input(1),
                      two_stage=not args.single, pairs=args.pairs, eta=args.eta, max_windows=args.windows,
                      first_windows=args.first_windows, min_windows=args.min_windows, check_grid=args.check_grid,
                      batch_size=args.batch, repeats=args.repeats,
                      warmup=args.warmup, threads=args.threads,
                      progress=lambda task, done, total, detail: progress.update(task, done, total, detail))
    written = [str(save(result.model, args.output, source=target.source))]
    report = {"target": describe(target), "data": str(args.data), **result.to_dict()}
    if args.markdown:
        written.append(str(write_text(args.markdown, result.markdown())))
    if args.plot:
        from hotpatch.viz import tune_plot

        with atomic_write(args.plot) as tmp:
            tune_plot(result, tmp, title=f"hotpatch tune {target.name}: {pipeline}, F={frames}, "
                                         f"{len(result.candidates)} candidates")
        written.append(args.plot)
    if args.json:
        text = json.dumps(report, indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        written.append(str(write_text(args.json, text + "\n")))
    out.print(_summary(result), highlight=False, markup=False)
    if result.grid is not None:
        out.print(result.grid.summary(result.chosen.label), highlight=False, markup=False)
    for path in written:
        out.print(f"wrote {path}", highlight=False, markup=False)
    return 0


@contextlib.contextmanager
def _search_settings(debug: bool) -> Iterator[None]:
    """No log line per patch (a search makes dozens) unless ``debug`` (``--threads`` is set by the CLI's main)."""
    patch_log = logging.getLogger("hotpatch.patch")
    level = patch_log.level
    if not debug:
        patch_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        patch_log.setLevel(level)


def _summary(result: Any) -> str:
    c, o = result.chosen, result.original
    limit = (f"budget {result.budget:g} of {o['flops'] / 1e9:.3f} GFLOPs" if result.budget is not None
             else f"latency limit {result.latency_limit_ms:g} ms")
    timing = f", {c.latency_ms:.2f} ms (original {c.original_ms:.2f} ms)" if c.latency_ms is not None else ""
    return (f"chosen for a {limit}: {c.label} ({c.pipeline}), {c.flops / 1e9:.3f} GFLOPs "
            f"({100 * c.flops / o['flops']:.1f}%){timing}, calibration MPJPE {c.error:.2f} mm (original "
            f"{o['mpjpe']:.2f} mm); {len(result.candidates)} candidates, {len(result.rounds)} rounds, "
            f"{result.calibration['windows']} calibration windows, {result.seconds:.1f} s")
