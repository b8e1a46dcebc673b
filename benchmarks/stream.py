"""Live lifting speed: per-frame latency and sustained frames/s of ``hotpatch.Stream``, original vs patched.

For each recipe (MixSTE F=243 n=3 f=81, MotionBERT full and Lite F=243 n=1 f=81: seq2seq; MHFormer
F=351 n=1 f=117: seq2frame) the original and the patched model stream the same frames at the same
``delay`` and ``hop`` (seq2seq: a forward every ``hop`` frames; seq2frame: one per frame), in
PyTorch eager and optionally through exported ONNX files (fp32 and int8, onnxruntime CPU). The two
alternate run by run (ABBA) in one process with a fixed thread count. Each run pushes enough
frames for ``--forwards`` forwards after a warm-up forward and times every ``push``: the median and
the worst push (a push that runs a forward), and the sustained frames/s = frames / total time.

Real time means sustaining 25-30 fps. A seq2seq stream needs ``hop >= 25 × forward time``, so
the table also gives, per model, the smallest delay (``hop - 1``) at which it keeps up with 25 fps;
the latency a viewer sees is then ``delay / 25`` seconds plus one forward.

    python benchmarks/stream.py --threads 2                         # every recipe, eager
    python benchmarks/stream.py --models mixste --runtimes eager,onnx-int8
    python benchmarks/stream.py --quick --out /tmp/s.md             # a smoke test (tiny models)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from benchmarks.common import benchmark_run, command_line, names, original_and_patched  # noqa: E402
from benchmarks.deploy import machine  # noqa: E402

log = logging.getLogger("benchmarks.stream")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "stream.md"
REAL_TIME = 25.0  # frames/s


def recipes(quick: bool) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """name -> (recipe, build overrides, HoT settings)."""
    s2s = dict(pipeline="seq2seq", recover="tra", prune_pos_embed=True)
    if quick:
        return {
            "mixste": ("mixste", dict(frames=27, dim=32, depth=4, num_heads=4), dict(n=2, f=9, **s2s)),
            "mhformer": ("mhformer", dict(frames=27, dim=16, d_hid=32, depth=3), dict(n=1, f=9, pipeline="seq2frame")),
        }
    return {
        "mixste": ("mixste", {}, dict(n=3, f=81, **s2s)),
        "motionbert": ("motionbert", {"variant": "full"}, dict(n=1, f=81, **s2s)),
        "motionbert-lite": ("motionbert", {"variant": "lite"}, dict(n=1, f=81, **s2s)),
        "mhformer": ("mhformer", {}, dict(n=1, f=117, pipeline="seq2frame")),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated (default: every recipe)")
    p.add_argument("--delays", default="0,30,max",
                   help="seq2seq delays in frames, 'max' = F-1 (default: 0,30,max); seq2frame models use their "
                        "default (the frames after the centre)")
    p.add_argument("--hop", default="max", help="seq2seq hop: 'max' (delay + 1, the fewest forwards) or a number")
    p.add_argument("--runtimes", default="eager", help="comma-separated of eager, onnx, onnx-int8 (default: eager)")
    p.add_argument("--forwards", type=int, default=3, help="timed forwards per run (after one warm-up forward)")
    p.add_argument("--rounds", type=int, default=2, help="runs per model (original and patched alternate)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/hotpatch-stream", help="exported ONNX files")
    p.add_argument("--out", default=None, help=f"Markdown (default: {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--json", default=None)
    p.add_argument("--note", default="", help="a line about the machine's state, printed under the table")
    p.add_argument("--quick", action="store_true", help="tiny models: a smoke test of the script")
    args = p.parse_args(argv)
    known = recipes(args.quick)
    args.models = names(p, args.models or ",".join(known), known, "--models")
    args.runtimes = names(p, args.runtimes, ("eager", "onnx", "onnx-int8"), "--runtimes")
    if args.quick and args.out is None:
        p.error("--quick needs --out (the committed table is only written by a full run)")
    args.out = args.out or str(DEFAULT_OUT)
    return args


def runner(model: torch.nn.Module, runtime: str, path: Path, threads: int, example: torch.Tensor) -> Any:
    """``model`` as ``runtime`` (ONNX files exported at batch 1 to ``path``)."""
    if runtime == "eager":
        return model
    from hotpatch.export import OnnxModel, export_onnx

    export_onnx(model, path, example=example, quantize="int8" if runtime == "onnx-int8" else None)
    return OnnxModel(path, threads=threads)


def run_stream(model: Any, frames: int, channels: int, pipeline: str, delay: int, hop: int | None,
               forwards: int) -> dict[str, Any]:
    """Push enough frames for one warm-up and ``forwards`` timed forwards; time every push after the warm-up."""
    stream = hotpatch.Stream(model, delay=delay, hop=hop, frames=frames, pipeline=pipeline)
    per_forward = stream.hop
    warm = delay + 1  # the first pose (and the first forward) comes with frame `delay`
    count = warm + forwards * per_forward
    clip = np.random.default_rng(0).normal(0, 0.3, size=(count, 17, channels)).astype(np.float32)
    for frame in clip[:warm]:
        stream.push(frame)
    stream.forwards, stream.seconds = 0, 0.0
    times = []
    t0 = time.perf_counter()
    for frame in clip[warm:]:
        t = time.perf_counter()
        stream.push(frame)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {"frames": len(times), "forwards": stream.forwards, "seconds": total, "fps": len(times) / total,
            "median_ms": 1e3 * statistics.median(times), "max_ms": 1e3 * max(times),
            "forward_ms": 1e3 * stream.seconds / max(1, stream.forwards)}


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        recipe, overrides, hot = recipes(args.quick)[name]
        original, patched, frames, channels = original_and_patched(recipe, overrides, hot)
        seq2frame = hot["pipeline"] == "seq2frame"
        example = torch.randn(1, frames, 17, channels)
        for runtime in args.runtimes:
            models = {which: runner(model, runtime, work / f"{name}-{which}-{runtime}.onnx", args.threads, example)
                      for which, model in (("original", original), ("patched", patched))}
            delays = [frames - 1 - frames // 2] if seq2frame else \
                sorted({frames - 1 if d == "max" else min(int(d), frames - 1) for d in args.delays.split(",")})
            for delay in delays:
                hop = None if seq2frame or args.hop == "max" else min(int(args.hop), delay + 1)
                got: dict[str, list[dict[str, Any]]] = {"original": [], "patched": []}
                for r in range(args.rounds):
                    for which in (("original", "patched") if r % 2 == 0 else ("patched", "original")):
                        got[which].append(run_stream(models[which], frames, channels, hot["pipeline"], delay, hop,
                                                          args.forwards))
                row: dict[str, Any] = {"model": name, "runtime": runtime, "pipeline": hot["pipeline"],
                                       "frames": frames, "delay": delay, "hop": 1 if seq2frame else (hop or delay + 1)}
                for which, runs in got.items():
                    row[which] = {k: statistics.median(run[k] for run in runs)
                                  for k in ("fps", "median_ms", "max_ms", "forward_ms")}
                row["speedup"] = row["patched"]["fps"] / row["original"]["fps"]
                rows.append(row)
                log.info("%s %s delay %d hop %d: %.1f vs %.1f fps (%.2fx)", name, runtime, delay, row["hop"],
                         row["original"]["fps"], row["patched"]["fps"], row["speedup"])
    return rows


def min_real_time_delay(row: dict[str, Any], which: str) -> str:
    """The smallest seq2seq delay sustaining 25 fps (hop = delay + 1 >= 25 × the time one forward's frames
    took, bookkeeping included), or why none."""
    fwd = row["hop"] / row[which]["fps"]
    if row["pipeline"] == "seq2frame":
        return "any (if it keeps up)" if fwd * REAL_TIME <= 1 else "none (one forward per frame)"
    hop = math.ceil(REAL_TIME * fwd)
    return f"{hop - 1} frames ({(hop - 1) / REAL_TIME:.1f} s)" if hop <= row["frames"] else "none (hop > F)"


def _fps(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"  # three digits: ratios of printed values stay within 1%


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | runtime | pipeline | delay | hop | original fps | patched fps | speed-up | original push "
             "median / worst ms | patched push median / worst ms | real time (≥ 25 fps) original / patched |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        o, p = r["original"], r["patched"]
        rt = " / ".join("yes" if x["fps"] >= REAL_TIME else "no" for x in (o, p))
        lines.append(f"| {r['model']} | {r['runtime']} | {r['pipeline']} | {r['delay']} | {r['hop']} | {_fps(o['fps'])} "
                     f"| {_fps(p['fps'])} | {r['speedup']:.2f}× | {o['median_ms']:.2f} / {o['max_ms']:.0f} "
                     f"| {p['median_ms']:.2f} / {p['max_ms']:.0f} | {rt} |")
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for runtime in dict.fromkeys(r["runtime"] for r in rows if r["model"] == model):
            mine = [r for r in rows if r["model"] == model and r["runtime"] == runtime]
            r = mine[-1]
            lo = min(x["speedup"] for x in mine)
            out.append(f"- {model} ({runtime}): one forward {r['original']['forward_ms']:.0f} ms original, "
                       f"{r['patched']['forward_ms']:.0f} ms patched; smallest delay for 25 fps: "
                       f"{min_real_time_delay(r, 'original')} original, {min_real_time_delay(r, 'patched')} patched; "
                       f"patched/original sustained fps at the same delay ≥ {lo:.2f}× (goal ≥ 1.5×: "
                       f"{'met' if lo >= 1.5 else 'not met'}); at delay {r['delay']}: {r['patched']['fps']:.1f} fps "
                       f"patched ({'real time' if r['patched']['fps'] >= REAL_TIME else 'not real time'}), "
                       f"{r['original']['fps']:.1f} fps original "
                       f"({'real time' if r['original']['fps'] >= REAL_TIME else 'not real time'})")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with benchmark_run(args.threads):
        t0, load = time.perf_counter(), os.getloadavg()[0]
        rows = measure(args)
        text = f"""# Live lifting: `hotpatch.Stream`, original vs patched at the same delay

Command (from the repository root): `{command_line(__file__, argv)}`

Machine: {machine(args.threads)}. Load average (1 min) {load:.1f} before and {os.getloadavg()[0]:.1f} after{'; ' + args.note if args.note else ''}.
Total wall time {(time.perf_counter() - t0) / 60:.1f} min.

Random weights; {args.forwards} timed forwards per run after a warm-up, {args.rounds} runs per model (original
and patched alternating), medians over runs. fps: frames pushed / wall time (the model's forwards
and the stream's bookkeeping; no I/O). Push median / worst: a push that runs no forward costs
microseconds, one that runs a forward costs the forward.

{table(rows)}

{chr(10).join(verdicts(rows))}
"""
        from hotpatch.atomic import write_text

        write_text(args.out, text)
        print(text)
        if args.json:
            write_text(args.json, json.dumps({"rows": rows, "args": vars(args)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
