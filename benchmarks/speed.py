"""Original vs patched latency of the MixSTE and MotionBERT-Lite recipes at F=243.

For each model and batch size, three models are timed interleaved in one run
(``hotpatch.profile.profile_many``: ABBA order, fixed threads, warm-up, median of the
repeats): the original, a hand-written HoT of it (``benchmarks/hand_hot.py``, the reference
a researcher would write) and the model patched by ``hotpatch.apply``. Speed-ups are printed
next to the paper-FLOPs ratio. The measurement is repeated in ``--rounds`` rounds, each on
fresh copies of the three models (where a copy's weights land in memory changes its speed
by several percent on a busy VM); the median over rounds is reported with its range. A
second pass times the patched forward with hooks on the pruning (TPC) and recovery (TRA)
wrappers and reports their share of the forward.

    python benchmarks/speed.py [--batch 1 8] [--rounds 3] [--repeats 10] [--threads 2] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from benchmarks.hand_hot import hand_written  # noqa: E402
from hotpatch.atomic import write_text  # noqa: E402
from hotpatch.profile import profile_many  # noqa: E402
from hotpatch.models import get  # noqa: E402

MODELS = {  # recipe -> (build overrides, patch settings): the paper's defaults
    "mixste": ({}, dict(n=3, f=81, pipeline="seq2seq", recover="tra", prune_pos_embed=True)),
    "motionbert": ({"variant": "lite"}, dict(n=1, f=81, pipeline="seq2seq", recover="tra", prune_pos_embed=True)),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def module_shares(patched: torch.nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, float]:
    """Median share (%) of one forward spent in the pruning and the recovery wrappers."""
    spent: dict[str, float] = {}
    starts: dict[str, float] = {}
    hooks = []
    for name, module in patched.named_children():
        if name.startswith(("hotpatch_prune", "hotpatch_recover")):
            key = "TPC" if name.startswith("hotpatch_prune") else "TRA"

            def pre(_m, _a, key=key):
                _sync(device)
                starts[key] = time.perf_counter()

            def post(_m, _a, _o, key=key):
                _sync(device)
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - starts[key]

            hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    shares: dict[str, list[float]] = {}
    with torch.no_grad():
        for i in range(repeats + 2):
            spent.clear()
            _sync(device)
            t0 = time.perf_counter()
            patched(x)
            _sync(device)
            total = time.perf_counter() - t0
            if i >= 2:
                for key, seconds in spent.items():
                    shares.setdefault(key, []).append(100 * seconds / total)
    for h in hooks:
        h.remove()
    return {k: statistics.median(v) for k, v in shares.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--memory", action="store_true", help="also report peak memory of one forward")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    rows = []
    for name in args.models:
        build, settings = MODELS[name]
        recipe = get(name)
        d = recipe.DEFAULTS
        model = recipe.build(**build).eval()
        example = torch.randn(1, d["frames"], d["joints"], d["channels"])
        patched = hotpatch.apply(model, example_input=example, **settings).eval()
        hand = hand_written(name, model, patched, settings["n"], settings["f"])
        for batch in args.batch:
            x = torch.randn(batch, d["frames"], d["joints"], d["channels"])
            runs = [
                profile_many([model, hand, patched], x, counters=("paper",) if r == 0 else (), repeats=args.repeats,
                             warmup=args.warmup, threads=threads, device=device, memory=args.memory and r == 0)
                for r in range(args.rounds)
            ]
            before, by_hand, after = runs[0]
            flops_ratio = before.flops["paper"].value / after.flops["paper"].value
            ms = [[p.latency.median_ms for p in run] for run in runs]  # per round: original, hand, patched
            shares = module_shares(patched.to(device), x.to(device), min(args.repeats, 10), device)
            patched.cpu()
            row = {
                "model": name, "batch": batch, "threads": threads, "device": str(device),
                "original_ms": statistics.median(m[0] for m in ms), "hand_ms": statistics.median(m[1] for m in ms),
                "patched_ms": statistics.median(m[2] for m in ms),
                "hand_speedup": statistics.median(m[0] / m[1] for m in ms),
                "speedup": statistics.median(m[0] / m[2] for m in ms),
                "speedup_range": [min(m[0] / m[2] for m in ms), max(m[0] / m[2] for m in ms)],
                "hand_speedup_range": [min(m[0] / m[1] for m in ms), max(m[0] / m[1] for m in ms)],
                "rounds_ms": ms, "paper_flops_ratio": flops_ratio,
                "tpc_share_pct": shares.get("TPC"), "tra_share_pct": shares.get("TRA"),
            }
            if args.memory:
                row["original_peak_mib"] = before.memory.forward_peak_bytes / 2**20
                row["patched_peak_mib"] = after.memory.forward_peak_bytes / 2**20
            rows.append(row)
            lo, hi = row["speedup_range"]
            hlo, hhi = row["hand_speedup_range"]
            print(f"{name:<10} B={batch:<2} original {row['original_ms']:8.1f} ms  hand-written HoT "
                  f"{row['hand_ms']:8.1f} ms ({row['hand_speedup']:.2f}x, {hlo:.2f}-{hhi:.2f})  patched "
                  f"{row['patched_ms']:8.1f} ms  speed-up {row['speedup']:.2f}x ({lo:.2f}-{hi:.2f})  "
                  f"(paper-FLOPs ratio {flops_ratio:.2f}x)  "
                  f"TPC {row['tpc_share_pct']:.1f}%  TRA {row['tra_share_pct']:.1f}% of the patched forward"
                  + (f"  peak memory {row['original_peak_mib']:.0f} -> {row['patched_peak_mib']:.0f} MiB"
                     if args.memory else ""), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    print(f"machine: {machine}")
    if args.json:
        write_text(args.json, json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
