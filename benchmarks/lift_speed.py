"""Frames/s of ``hotpatch.lift`` on a long clip: the original vs the HoT-patched recipe, one run.

A synthetic 2D track of ``--length`` frames (smooth random motion, screen-normalised) is lifted
with sliding windows (``hotpatch.lift.lift``, the ``hotpatch lift`` path) by the original and by
the patched model, alternating ``--rounds`` times (ABAB...); the median frames/s of each is
reported with their ratio, next to ``hotpatch.profile.compare``'s latency speed-up of one
window batch and the paper-FLOPs ratio measured in the same run.

    python benchmarks/lift_speed.py [--model mixste|motionbert] [--length 1000] [--batch 8] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from hotpatch.atomic import write_text  # noqa: E402
from hotpatch.lift import lift  # noqa: E402
from hotpatch.profile import compare  # noqa: E402
from hotpatch.models import get  # noqa: E402

MODELS = {  # recipe -> (build overrides, patch settings): the paper's defaults at F=243
    "mixste": ({}, dict(n=3, f=81, recover="tra", prune_pos_embed=True)),
    "motionbert": ({"variant": "lite"}, dict(n=1, f=81, recover="tra", prune_pos_embed=True)),
}


def track(length: int, channels: int, seed: int = 0) -> np.ndarray:
    """(T, 17, C) smooth 2D motion in [-1, 1] (plus a score channel of 0.9 when C = 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None, None] / 30.0
    xy = 0.3 * rng.normal(size=(1, 17, 2)) + 0.1 * np.sin(2 * t + rng.normal(size=(1, 17, 2)))
    if channels == 3:
        xy = np.concatenate([xy, np.full((length, 17, 1), 0.9)], axis=-1)
    return xy.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=tuple(MODELS), default="mixste")
    ap.add_argument("--frames", type=int, default=243)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8, help="windows per forward")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    recipe = get(args.model)
    overrides, settings = MODELS[args.model]
    original = recipe.build(args.frames, **overrides).eval()
    channels = 3 if args.model == "motionbert" else 2
    patched = hotpatch.apply(original, example_input=torch.zeros(1, args.frames, 17, channels), **settings).eval()
    inputs = track(args.length, channels)
    fps: dict[str, list[float]] = {"original": [], "patched": []}
    for _ in range(args.rounds):
        for name, model in (("original", original), ("patched", patched)):
            result = lift(model, inputs, frames=args.frames, batch_size=args.batch)
            fps[name].append(result.fps)
    windows = result.windows
    example = torch.zeros(args.batch, args.frames, 17, channels)
    prof = compare(original, patched, example, counters=("paper",), repeats=5, warmup=1, threads=args.threads)
    row = {
        "model": args.model, "F": args.frames, "length": args.length, "windows": windows, "batch": args.batch,
        "settings": settings, "fps_original": statistics.median(fps["original"]),
        "fps_patched": statistics.median(fps["patched"]), "fps_rounds": fps,
        "profile_speedup": prof.speedup,
        "flops_ratio": prof.before.flops["paper"].value / prof.after.flops["paper"].value,
        "machine": {"processor": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
    }
    row["lift_speedup"] = row["fps_patched"] / row["fps_original"]
    print(f"{args.model} F={args.frames} {settings}: {args.length} frames in {windows} windows (batch {args.batch})")
    print(f"  lift frames/s  original {row['fps_original']:.1f}  patched {row['fps_patched']:.1f}  "
          f"speed-up {row['lift_speedup']:.2f}x  (rounds: {', '.join(f'{a:.1f}/{b:.1f}' for a, b in zip(*fps.values()))})")
    print(f"  profile latency speed-up (batch {args.batch}) {prof.speedup:.2f}x; paper FLOPs ratio {row['flops_ratio']:.2f}x")
    if args.json:
        write_text(args.json, json.dumps(row, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
