"""Tune benchmark: ``hotpatch.tune`` (successive halving) against the exhaustive grid, same budget.

On the accuracy benchmark's model (the ``mixste`` recipe, F=81, dim 32, depth 4, 4 heads, trained by
``benchmarks/accuracy.py``; ``--weights`` its file, else trained here with that script's functions and
defaults), for each budget (default 0.67 and 0.5 of the original's paper FLOPs) the same candidates
(single and two-stage schedules at the budget × pruners × parameter-free recoveries) are searched twice
on the same calibration windows (evenly spread over the training clips, one virtual camera each):

* the grid: every candidate scored on every calibration window (``tune(..., first_windows=W)``);
* tune: successive halving (``eta`` = 3): few windows for every candidate, more for the finalists.

Reported: the grid's best, tune's pick, the pick's full-calibration MPJPE (from the grid) minus the
grid best's (goal: <= 0.3 mm), both picks' MPJPE on the test clips (the accuracy benchmark's test
set), and the wall time of each search: predicting and scoring windows (the evaluation; goal: tune
<= 1/3 of the grid) and in all (with patching and FLOP counting). Writes a Markdown table (``--out``,
default ``benchmarks/results/tune.md``) with the command and the machine.

    python benchmarks/tune.py --threads 1 --weights /path/original_F81_d32_L4_h4_b8_lr0.003_c2_s2200.pt
    python benchmarks/tune.py --quick --out /tmp/t.md      # a smoke test (a minute)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import accuracy  # noqa: E402
from hotpatch.atomic import atomic_write, write_text  # noqa: E402
from hotpatch.autotune import tune  # noqa: E402
from hotpatch.data import WindowDataset, load_clips  # noqa: E402
from hotpatch.evaluate import evaluate_model  # noqa: E402
from hotpatch.models import get as get_recipe  # noqa: E402

log = logging.getLogger("benchmarks.tune")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "tune.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(accuracy.DEFAULT_DATA), help="clips .npz (default: the accuracy benchmark's)")
    p.add_argument("--weights", help="the trained original (benchmarks/accuracy.py's original_*.pt); else trained here")
    p.add_argument("--work", default="/tmp/hotpatch-accuracy", help="where a model trained here is kept")
    p.add_argument("--budgets", default="0.67,0.5", help="fractions of the original's paper FLOPs (default: 0.67,0.5)")
    p.add_argument("--windows", type=int, default=243, help="calibration windows (default: 243 = 3^5)")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--prune", default=None, help="pruners (comma-separated; default: tune's)")
    p.add_argument("--recover", default=None, help="recoveries (comma-separated; default: tune's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--out", default=None, help=f"Markdown table (default: {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--json", default=None, help="also write all numbers as JSON here")
    p.add_argument("--quick", action="store_true", help="tiny settings (F=27, 20 training steps), a smoke test")
    args, rest = p.parse_known_args(argv)
    args.acc = accuracy.parse_args(rest + (["--quick", "--out", "-"] if args.quick else []))  # model and data settings
    if args.quick:
        args.windows = min(args.windows, 27)
        if args.out is None:
            raise SystemExit("--quick needs --out (the committed table is only written by a full run)")
    args.out = args.out or str(DEFAULT_OUT)
    args.budgets = [float(b) for b in args.budgets.split(",")]
    return args


def load_model(args: argparse.Namespace, acc: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    """The accuracy benchmark's original: from ``--weights``, else trained as that script trains it."""
    torch.manual_seed(acc.seed)
    model = get_recipe("mixste").build(acc.frames, dim=acc.dim, depth=acc.depth, num_heads=acc.heads,
                                       drop_path_rate=0.0)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, weights_only=True))
        return model.eval(), f"`{args.weights}` (trained by benchmarks/accuracy.py)"
    seqs = load_clips(acc.data, cameras_per_clip=acc.cameras, noise_px=acc.noise_px, seed=acc.seed,
                      max_clips=200 if acc.quick else None)["train"]
    data = WindowDataset(seqs, acc.frames, stride=acc.frames // 3, flip_prob=0.5, seed=acc.seed)
    accuracy.train(model, data, acc.train_steps, acc.lr, acc.batch, acc.seed, "train original",
                   warmup=min(30, acc.train_steps // 10))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    path = Path(args.work) / f"tune_original_F{acc.frames}_d{acc.dim}_L{acc.depth}_s{acc.train_steps}.pt"
    with atomic_write(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return model.eval(), f"trained here with benchmarks/accuracy.py's train() and defaults ({acc.train_steps} steps)"


def compare_at(model: torch.nn.Module, calib: list, test: WindowDataset, budget: float,
               args: argparse.Namespace) -> dict[str, Any]:
    """The grid and tune at one budget, and what the brief asks about them."""
    frames = args.acc.frames
    common = dict(budget=budget, example_input=torch.zeros(1, frames, 17, 2), max_windows=args.windows,
                  eta=args.eta, prune=args.prune.split(",") if args.prune else None,
                  recover=args.recover.split(",") if args.recover else None)

    def report(task: str, done: int, total: int, detail: str) -> None:
        if done == total or done % 10 == 0:
            log.info("budget %g: %s %d/%d %s", budget, task, done, total, detail)

    grid = tune(model, calib, first_windows=args.windows, progress=report, **common)
    halving = tune(model, calib, progress=report, **common)
    # the same halving with one round more, so that its last round scores the finalists on every window
    first = math.ceil(grid.calibration["windows"] / args.eta ** max(0, len(halving.rounds) - 1))
    longer = tune(model, calib, first_windows=first, progress=report, **common)
    full = {c.label: c.error for c in grid.candidates}
    for res in (halving, longer):
        if sorted(full) != sorted(c.label for c in res.candidates):
            raise RuntimeError("the grid and tune built different candidates; they must search the same ones")
    tests = {}
    for name, res in (("grid", grid), ("tune", halving)):
        tests[name] = evaluate_model(res.model, test, batch_size=64, flops=False)["mpjpe"]
    pick = halving.chosen.label
    return {
        "budget": budget, "candidates": len(grid.candidates), "windows": grid.calibration["windows"],
        "grid_best": grid.chosen.label, "grid_best_mpjpe": grid.chosen.error, "tune_pick": pick,
        "tune_pick_full_mpjpe": full[pick], "gap_mm": full[pick] - grid.chosen.error,
        "rank_in_grid": sorted(full.values()).index(full[pick]) + 1,
        "original_calib_mpjpe": grid.original["mpjpe"],
        "grid_test_mpjpe": tests["grid"], "tune_test_mpjpe": tests["tune"],
        "grid_eval_s": grid.eval_seconds, "tune_eval_s": halving.eval_seconds,
        "grid_total_s": grid.seconds, "tune_total_s": halving.seconds,
        "grid_flops_pct": 100 * grid.chosen.flops / grid.original["flops"],
        "tune_flops_pct": 100 * halving.chosen.flops / halving.original["flops"],
        "rounds": [(r.windows, r.candidates) for r in halving.rounds],
        "longer_pick": longer.chosen.label, "longer_gap_mm": full[longer.chosen.label] - grid.chosen.error,
        "longer_eval_s": longer.eval_seconds, "longer_total_s": longer.seconds,
        "longer_rounds": [(r.windows, r.candidates) for r in longer.rounds],
        "skipped": halving.skipped, "grid": grid.to_dict(), "tune": halving.to_dict(), "longer": longer.to_dict(),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| budget | candidates | grid best (calib MPJPE) | tune pick | pick's full-calib MPJPE − best "
            "(rank) | test MPJPE grid / tune | eval s grid / tune (ratio) | total s grid / tune (ratio) | tune rounds |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        rounds = ", ".join(f"{c}×{w}" for w, c in r["rounds"])
        lines.append(
            f"| {r['budget']:g} | {r['candidates']} | {r['grid_best']} ({r['grid_best_mpjpe']:.2f}, "
            f"{r['grid_flops_pct']:.1f}% FLOPs) | {r['tune_pick']} ({r['tune_flops_pct']:.1f}% FLOPs) | "
            f"{r['gap_mm']:+.2f} mm ({r['rank_in_grid']} of {r['candidates']}) | {r['grid_test_mpjpe']:.2f} / "
            f"{r['tune_test_mpjpe']:.2f} | {r['grid_eval_s']:.0f} / {r['tune_eval_s']:.0f} "
            f"({r['tune_eval_s'] / r['grid_eval_s']:.2f}) | {r['grid_total_s']:.0f} / {r['tune_total_s']:.0f} "
            f"({r['tune_total_s'] / r['grid_total_s']:.2f}) | {rounds} |")
    return "\n".join(lines)


def longer_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| budget | pick | full-calib MPJPE − grid best | eval s (/ grid) | total s (/ grid) | rounds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        rounds = ", ".join(f"{c}×{w}" for w, c in r["longer_rounds"])
        lines.append(f"| {r['budget']:g} | {r['longer_pick']} | {r['longer_gap_mm']:+.2f} mm | "
                     f"{r['longer_eval_s']:.0f} ({r['longer_eval_s'] / r['grid_eval_s']:.2f}) | "
                     f"{r['longer_total_s']:.0f} ({r['longer_total_s'] / r['grid_total_s']:.2f}) | {rounds} |")
    return "\n".join(lines)


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """The brief's two goals, as measured (plain numbers, one line per budget)."""
    return [f"- Budget {r['budget']:g}: tune's pick is {r['gap_mm']:.2f} mm above the grid's best on the full "
            f"calibration (goal <= 0.3 mm: {'met' if r['gap_mm'] <= 0.3 else 'not met'}); its evaluation took "
            f"{r['tune_eval_s'] / r['grid_eval_s']:.2f} of the grid's (goal <= 0.33: "
            f"{'met' if r['tune_eval_s'] <= r['grid_eval_s'] / 3 else 'not met'}), its whole search "
            f"{r['tune_total_s'] / r['grid_total_s']:.2f}; test MPJPE {r['tune_test_mpjpe'] - r['grid_test_mpjpe']:+.2f} mm "
            f"against the grid's pick." for r in rows]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    library = logging.getLogger("hotpatch")  # one INFO line per patch otherwise
    saved = library.level, torch.get_num_threads()
    library.setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        library.setLevel(saved[0])
        torch.set_num_threads(saved[1])


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    t0, acc = time.perf_counter(), args.acc
    acc.data = args.data
    model, origin = load_model(args, acc)
    calib = load_clips(acc.data, cameras_per_clip=1, noise_px=acc.noise_px, seed=acc.seed,
                       max_clips=200 if acc.quick else None)["train"]
    test_seqs = load_clips(acc.data, cameras_per_clip=1, noise_px=acc.noise_px, seed=acc.seed + 1,
                           max_clips=acc.test_clips)["test"]
    test = WindowDataset(test_seqs, acc.frames)
    original_test = evaluate_model(model, test, batch_size=64, flops=False)["mpjpe"]
    rows = [compare_at(model, calib, test, b, args) for b in args.budgets]
    for r in rows:
        log.info("budget %g: grid %s, tune %s, gap %+.2f mm, eval %.0f / %.0f s", r["budget"], r["grid_best"],
                 r["tune_pick"], r["gap_mm"], r["grid_eval_s"], r["tune_eval_s"])
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:]))
    prunes = sorted({c["prune"] for c in rows[0]["grid"]["candidates"]})
    recovers = sorted({str(c["recover"]) for c in rows[0]["grid"]["candidates"]})
    text = f"""# Tune: successive halving against the exhaustive grid

Command (from the repository root): `{command}`

Machine: {accuracy.machine(args.threads)}. The machine is shared with other jobs: wall times carry their noise.
Total wall time {(time.perf_counter() - t0) / 60:.1f} min.

{markdown(rows)}

{chr(10).join(goals(rows))}

The same halving with one round more (round 0 on {rows[0]['longer_rounds'][0][0]} windows at the first budget), so
that the last round scores the finalists on every calibration window (tune's default makes its last choice on
about a third of them):

{longer_table(rows)}

- Model: the `mixste` recipe, F={acc.frames}, dim {acc.dim}, depth {acc.depth}, {acc.heads} heads: {origin}.
  Test MPJPE of the original {original_test:.2f} mm.
- Candidates: single cuts and two-stage schedules at the budget (every candidate within it, the last stage's f
  the largest that fits) × pruners {", ".join(prunes)} × recoveries {", ".join(recovers)} (seq2seq, zero retraining).
  Pairings the engine refuses are left out: {"; ".join(rows[0]["skipped"]) or "none"}.
- Calibration: {rows[0]['windows']} non-overlapping {acc.frames}-frame windows evenly spread over the training clips of
  `{Path(acc.data).name}` (one virtual camera each, {acc.noise_px:g} px noise); the grid scores every candidate on all of
  them, tune (eta {args.eta}) on "candidates×windows" per round as listed. Test: the accuracy benchmark's test clips
  ({len(test_seqs)} sequences), seq2seq windows.
- "pick's full-calib MPJPE − best": tune's pick scored by the grid on every calibration window, minus the grid's
  best (goal <= 0.3 mm); rank among all candidates by that error. "eval s": seconds predicting and scoring
  windows (goal: tune <= 1/3 of the grid); "total s": the whole search (patching, FLOP counts, evaluation).
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    print(text)
    if args.json:
        write_text(args.json, json.dumps({"rows": rows, "original_test_mpjpe": original_test}, indent=2,
                                  default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
