"""Tune on a small trained model: tune's pick against the exhaustive grid at three budgets.

The model is the test suite's small trained lifter (``tests/models/tinypose.py``:
``trained_lifter``, a temporal-only transformer, F=27, 4 blocks, trained for a few seconds on
synthetic walks with pauses and bursts), calibrated on 72 windows of other walks: the small-calibration case where a
search that ranks candidates on too few windows in its first round picks a worse setting. For
each budget: the grid (every candidate on every window), tune's pick (successive halving), the
pick's rank in the grid, its gap to the grid's best, and the noise of that gap (two standard
errors of the per-window difference between the two settings' MPJPE).

    python benchmarks/tune_small.py                       # prints the table
    python benchmarks/tune_small.py --out /tmp/small.md   # and writes it
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))  # the test suite's small model and synthetic walks

import tinypose  # noqa: E402
from hotpatch.atomic import write_text  # noqa: E402
from hotpatch.autotune import tune  # noqa: E402
from hotpatch.data import WindowDataset  # noqa: E402
from hotpatch.evaluate import Predictions, predict, score  # noqa: E402

FRAMES = 27


def calibration() -> list:
    return tinypose.walks((80,) * 24, seed=7)


def window_errors(model: torch.nn.Module, data: WindowDataset) -> np.ndarray:
    """MPJPE (mm) of ``model`` on each window of ``data``."""
    preds = predict(model, data, batch_size=64)
    return np.array([score(data, Predictions(preds.poses[k:k + 1], None if preds.selected is None else
                                             preds.selected[k:k + 1], preds.windows[k:k + 1], preds.mode))["mpjpe"]
                     for k in range(len(preds.windows))])


def compare(model: torch.nn.Module, budget: float, **search) -> dict:
    """The grid and tune at one budget."""
    calib = calibration()
    common = dict(budget=budget, example_input=torch.zeros(1, FRAMES, 17, 2), **search)
    grid = tune(model, calib, first_windows=10_000, **common)
    half = tune(model, calib, **common)
    full = {c.label: c.error for c in grid.candidates}
    best, pick = grid.chosen, half.chosen.label
    errors = sorted(full.values())
    data = WindowDataset(calib, FRAMES)
    diff = window_errors(half.model, data) - window_errors(grid.model, data)
    return {"budget": budget, "candidates": len(full), "windows": grid.calibration["windows"],
            "best": best.label, "best_mpjpe": best.error, "pick": pick, "rank": errors.index(full[pick]) + 1,
            "gap": full[pick] - best.error, "noise": 2 * diff.std(ddof=1) / np.sqrt(len(diff)),
            "spread": errors[-1] - errors[0], "rounds": [(r.candidates, r.windows) for r in half.rounds],
            "warnings": getattr(half, "warnings", [])}


def table(rows: list[dict]) -> str:
    lines = ["| budget | candidates × windows | grid best (MPJPE mm) | tune pick | rank | gap mm | noise mm (2 SE) "
             "| spread mm | tune rounds (candidates×windows) |", "|" + "---|" * 9]
    for r in rows:
        rounds = ", ".join(f"{c}×{w}" for c, w in r["rounds"])
        lines.append(f"| {r['budget']:g} | {r['candidates']} × {r['windows']} | {r['best']} ({r['best_mpjpe']:.2f}) | "
                     f"{r['pick']} | {r['rank']} of {r['candidates']} | {r['gap']:+.3f} | {r['noise']:.3f} | "
                     f"{r['spread']:.2f} | {rounds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", default="0.65,0.5,0.4", help="fractions of the original's paper FLOPs")
    p.add_argument("--steps", type=int, default=400, help="training steps of the small model (default: the tests')")
    p.add_argument("--out", help="also write the table (Markdown) here")
    args = p.parse_args(argv)
    logging.getLogger("hotpatch").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = tinypose.trained_lifter(FRAMES, steps=args.steps)
    rows = [compare(model, float(b)) for b in args.budgets.split(",")]
    text = (f"{table(rows)}\n\nSmall trained lifter (tests/models/tinypose.py, {args.steps} steps), calibration "
            f"{rows[0]['windows']} windows; {time.perf_counter() - t0:.0f} s on torch {torch.__version__}, 1 thread.\n")
    for r in rows:
        text += "".join(f"- budget {r['budget']:g}: warning: {w}\n" for w in r["warnings"])
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
