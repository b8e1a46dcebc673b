"""``hotpatch lift`` over many files: one call for all of them against one call per file (wall time).

Copies a real detector file (``tests/data/detectors/alphapose_halpe26_multi.json`` by default)
``--files`` times, then times ``hotpatch lift TARGET FILE... -o DIR/`` once and ``hotpatch lift
TARGET FILE -o OUT.npz`` per file, each a fresh process as a user would run them (half the
single calls before the one call, half after). TARGET is the
full-size MixSTE recipe (F=243) patched with the paper's n=3, f=81, on random weights unless
``--checkpoint`` is given (the time is start-up, building and loading, reading and lifting; the
weights do not change it).

    python benchmarks/lift_many.py [--files 20] [--checkpoint CK.bin] [--out benchmarks/results/lift_many.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hotpatch.atomic import write_text

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "data" / "detectors" / "alphapose_halpe26_multi.json"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hotpatch", "--quiet", *argv], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"hotpatch lift failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--source", default=str(SOURCE), help="the keypoint file to copy")
    ap.add_argument("--checkpoint", help="MixSTE weights (F=243) to lift with instead of random ones")
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args()
    target = ["mixste", "--n", "3", "--f", "81"]
    target += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = []
        for i in range(args.files):
            path = folder / f"video{i:02d}.json"
            shutil.copy(args.source, path)
            inputs.append(str(path))
        def single(i: int) -> float:
            return timed(["lift", *target, inputs[i], "-o", str(folder / f"single{i:02d}.npz")])

        # half the single calls, the one call, the other half: a load that drifts over the run
        # (a shared machine) weighs on both alike
        half = args.files // 2
        load = os.getloadavg()[0]
        many = sum(single(i) for i in range(half))
        one = timed(["lift", *target, *inputs, "-o", f"{folder}/one/"])
        many += sum(single(i) for i in range(half, args.files))
        load = f"load average (1 min) {load:.1f} before and {os.getloadavg()[0]:.1f} after the timing"
    lines = [f"{args.files} copies of {Path(args.source).name}; TARGET mixste (F=243) HoT n=3 f=81, "
             f"{'--checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'}; "
             f"{platform.machine()}, {os.cpu_count()} CPUs, {load}.", "",
             "| how | calls | wall time (s) | per file (s) |", "| --- | ---: | ---: | ---: |",
             f"| one call, all files (`lift TARGET FILE... -o DIR/`) | 1 | {one:.1f} | {one / args.files:.2f} |",
             f"| one call per file | {args.files} | {many:.1f} | {many / args.files:.2f} |",
             "", f"one call is {many / one:.1f}x faster"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
