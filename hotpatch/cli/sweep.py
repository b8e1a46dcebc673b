"""``hotpatch sweep TARGET --n 1,2,3 --f 27,41,61 [--stages 1,3:121,61]``: every setting measured, the
Pareto front plotted."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from typing import Any


from hotpatch.atomic import atomic_write, write_text
from hotpatch.cli._options import argument_type, check_outputs, check_png, consoles, nonnegative_int, positive_int
from hotpatch.cli._progress import Progress
from hotpatch.patch import parse_stages, stage_text
from hotpatch.errors import ConfigError
from hotpatch.keep import frames_for as keep_frames, parse as keep_parse
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def int_list(text: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3]: positive ints, each once, in increasing order."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 1,2,3")
    if values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: give each value once, in increasing order")
    return values


def name_list(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)} (comma-separated)")
        return names
    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hotpatch.cli._data import add_data_arguments

    p = subparsers.add_parser(
        "sweep", help="measure many HoT settings (FLOPs, latency, zero-retraining MPJPE) and plot the Pareto front",
        description="Trace TARGET once, patch it at every combination of --n, --f, --prune and --recover, and "
                    "report params, paper FLOPs, latency (timed interleaved with the original) and, with --data, "
                    "zero-retraining MPJPE / P-MPJPE.")
    add_target_arguments(p)
    g = p.add_argument_group("settings")
    g.add_argument("--n", type=int_list, default=[], metavar="N,N,..", help="cut positions, e.g. 1,2,3")
    g.add_argument("--f", type=int_list, default=[], metavar="F,F,..", help="kept frames, e.g. 27,41,61")
    g.add_argument("--keep", type=argument_type(keep_parse), metavar="K,K,..",
                   help="instead of --f: fractions of the F frames kept, e.g. 0.25,0.33 (f = K*F, rounded)")
    g.add_argument("--stages", type=argument_type(parse_stages), action="append", default=[], metavar="N,N:F,F",
                   help="a multi-stage setting, e.g. 1,3:121,61 (prune to 121 after block 1, to 61 after "
                        "block 3); repeat for more")
    g.add_argument("--prune", type=name_list(tuple(PRUNERS)), default=["tpc"], metavar="P,..",
                   help=f"pruners ({', '.join(PRUNERS)}) (default: tpc)")
    g.add_argument("--recover", type=name_list(tuple(RECOVERERS)), default=["linear"], metavar="R,..",
                   help=f"recoverers ({', '.join(RECOVERERS)}) (default: linear, meaningful without retraining)")
    g.add_argument("--pipeline", choices=("seq2seq", "seq2frame"),
                   help="seq2seq recovers all frames; seq2frame keeps the centre one "
                        "(default: the recipe's, else seq2seq)")
    g.add_argument("--prune-pos-embed", action=argparse.BooleanOptionalAction, default=None,
                   help="learnable (1, f, C) positional embedding after pruning (default: the recipe's)")
    add_data_arguments(p, required=False)
    from hotpatch.cli._options import add_batch_option, add_json_option, add_threads_option  # shared option definitions

    t = p.add_argument_group("timing")
    add_batch_option(t, 64)
    t.add_argument("--repeats", type=positive_int, default=5, metavar="R", help="timed forwards per model (default: 5)")
    t.add_argument("--warmup", type=nonnegative_int, default=1, metavar="W", help="untimed forwards first (default: 1)")
    add_threads_option(t)
    t.add_argument("--no-latency", dest="latency", action="store_false", help="skip timing (FLOPs and accuracy only)")
    o = p.add_argument_group("output")
    add_json_option(o)  # the rows and the front
    o.add_argument("--csv", metavar="PATH", help="rows as CSV")
    o.add_argument("--plot", metavar="PATH.png", help="error (MPJPE, or latency without --data) vs paper FLOPs")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from hotpatch.cli._data import check_data_files, load_splits
    from hotpatch.sweep import sweep

    out, err = consoles(args.quiet)
    check_outputs(args)
    check_png("--plot", args.plot)
    if args.f and args.keep is not None:
        raise ConfigError("pass --f or --keep, not both (--keep K keeps K*F frames)")
    if bool(args.n) != bool(args.f or args.keep) or not (args.n or args.stages):
        raise ConfigError("give --n and --f (every combination is measured), --stages N,N:F,F, or both")
    if args.data:
        check_data_files(args)
    target = load_target(args)
    if args.data and target.several_inputs:
        raise ConfigError(f"{describe(target)} takes several inputs; --data feeds (B, F, J, C) clips alone. Sweep "
                          "its cost without --data (params, FLOPs, latency)")
    if target.patched:
        raise ConfigError(f"{target.name} is already patched; sweep the original model (a recipe, module:Class or "
                          "a model file)")
    frames, joints, channels = target.input_shape()
    if args.keep is not None:
        args.f = sorted({keep_frames(k, frames) for k in (args.keep if isinstance(args.keep, list) else [args.keep])})
        log.info("--keep %s of F=%d frames: f=%s", args.keep, frames, ",".join(map(str, args.f)))
    d = target.defaults
    pipeline = target.pipeline(args.pipeline)
    pos_embed = bool(d.get("prune_pos_embed")) if args.prune_pos_embed is None else args.prune_pos_embed
    sequences = load_splits(args)["test"] if args.data else None
    with Progress(err, "sweep") as progress:
        result = sweep(target.model, n=args.n, f=args.f, stages=args.stages, prune=args.prune, recover=args.recover,
                       example_input=target.example_input(1), pipeline=pipeline,
                       prune_pos_embed=pos_embed, sequences=sequences, batch_size=args.batch,
                       latency=args.latency, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                       progress=lambda done, total, label: progress.update("sweep", done, total, label))
    rows = result.to_dicts()
    if args.csv:
        _write_csv(args.csv, rows)
    if args.plot:
        from hotpatch.viz import pareto_plot

        with atomic_write(args.plot) as tmp:
            pareto_plot(result, tmp, title=f"{describe(target)}: {pipeline}, F={frames}")
    if args.json:
        text = json.dumps({"target": describe(target), "error": result.error_name, "rows": rows,
                           "frontier": [r.label for r in result.frontier]}, indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    out.print(f"{describe(target)}: {len(result.rows)} settings, {pipeline}, F={frames}", highlight=False, markup=False)
    out.print(_table(result))
    for path in (args.json, args.csv, args.plot):
        if path:
            out.print(f"wrote {path}", highlight=False, markup=False)
    return 0


def _write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:  # stage lists as "1,3" (one cell)
            writer.writerow({k: stage_text(v) if isinstance(v, list) else v for k, v in r.items()})


def _table(result: Any) -> Any:
    from rich.table import Table

    has_acc = result.error_name == "mpjpe"
    timed = result.original.latency_ms is not None
    if has_acc:
        front = "* on the Pareto front (paper FLOPs vs MPJPE)"
    elif timed:
        front = "* on the Pareto front (paper FLOPs vs latency)"
    else:
        front = "no Pareto front: neither latency (--no-latency) nor accuracy (--data) was measured"
    caption = [front]
    if timed:
        caption.append("speed-up = original ms / latency ms of the same row: medians of the original and the setting "
                       "timed interleaved in one run; the original row shows the median of those paired original "
                       "times")
    t = Table(title="hotpatch sweep", caption="\n".join(caption), caption_justify="left")
    names = ["setting", "params M", "GFLOPs"]
    if timed:
        names += ["latency ms", "original ms", "speed-up"]
    names += ["MPJPE", "P-MPJPE", "sel/pruned"] if has_acc else []
    for name in names:
        t.add_column(name, justify="left" if name == "setting" else "right")
    for r in [result.original, *result.rows]:
        cells = [("* " if r.pareto else "  ") + r.label, f"{r.params / 1e6:.3f}",
                 "-" if r.flops is None else f"{r.flops / 1e9:.3f}"]
        if timed:
            cells += ["-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                      "-" if r.original_ms is None else f"{r.original_ms:.2f}",
                      "-" if r.speedup is None else f"{r.speedup:.2f}x"]
        if has_acc:
            m = r.metrics
            split = (f"{m['mpjpe_selected']:.1f} / {m['mpjpe_pruned']:.1f}" if "mpjpe_pruned" in m else "-")
            cells += [f"{m.get('mpjpe', float('nan')):.1f}", f"{m.get('p_mpjpe', float('nan')):.1f}", split]
        t.add_row(*cells)
    return t
