"""GPU latency of original vs patched models: eager, ``torch.compile``, CUDA graphs, onnxruntime CUDA.

Run by ``benchmarks/gpu.sh`` (which checks the machine first). For each model (the paper's
settings: MixSTE F=243 n=3 f=81, MotionBERT full and Lite F=243 n=1 f=81) and batch size, the
original and the patched model are timed interleaved (ABBA order, warm-up first) in each mode:

* ``eager`` — the models as they are;
* ``compiled`` — ``torch.compile(fullgraph=True)`` (default mode; compilation untimed);
* ``cudagraph`` — one forward captured in a ``torch.cuda.CUDAGraph`` and replayed (static input);
* ``ort-cuda`` — exported ONNX in onnxruntime's CUDA execution provider, inputs and outputs bound
  on the GPU (only if that provider is installed).

A time budget (``--budget`` seconds) is checked before every measurement: what does not fit is
listed as skipped, and the results file is rewritten after every row, so a run that is cut off
still leaves what it measured. Not-available modes (no CUDA, no provider) are listed with the
reason. ``--device cpu --quick`` runs the same code on tiny models on a CPU (the test suite does).

    python benchmarks/gpu.py --budget 420 --out benchmarks/results/gpu.md
    python benchmarks/gpu.py --dry-run                  # the plan, nothing run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import benchmark_run, command_line, names, original_and_patched  # noqa: E402
from hotpatch.profile.timing import time_interleaved  # noqa: E402

log = logging.getLogger("benchmarks.gpu")
ROOT = Path(__file__).resolve().parents[1]
MODES = ("eager", "compiled", "cudagraph", "ort-cuda")


def models(quick: bool) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    hot = dict(pipeline="seq2seq", recover="tra", prune_pos_embed=True)
    if quick:
        return {"mixste": ("mixste", dict(frames=27, dim=32, depth=4, num_heads=4), dict(n=2, f=9, **hot)),
                "motionbert-lite": ("motionbert", dict(frames=27, dim=32, depth=2, dim_rep=32, num_heads=4),
                                    dict(n=1, f=9, **hot))}
    return {"mixste": ("mixste", {}, dict(n=3, f=81, **hot)),
            "motionbert": ("motionbert", {"variant": "full"}, dict(n=1, f=81, **hot)),
            "motionbert-lite": ("motionbert", {"variant": "lite"}, dict(n=1, f=81, **hot))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a test of the script)")
    p.add_argument("--models", default=None, help="comma-separated (default: mixste, motionbert, motionbert-lite)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {', '.join(MODES)}")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run (default: 420)")
    p.add_argument("--out", default=None, help="results file (default: benchmarks/results/gpu-<GPU>.md)")
    p.add_argument("--work", default="/tmp/hotpatch-gpu", help="exported ONNX files")
    p.add_argument("--quick", action="store_true", help="tiny models")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is available; run nothing")
    args = p.parse_args(argv)
    known = models(args.quick)
    args.models = names(p, args.models or ",".join(known), known, "--models")
    args.modes = names(p, args.modes, MODES, "--modes")
    return args


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device here"
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def unavailable(mode: str, dev: torch.device) -> str | None:
    """Why ``mode`` cannot run here, or None."""
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device here"
    if mode == "cudagraph" and dev.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if mode == "ort-cuda":
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        if dev.type != "cuda":
            return "the CUDA provider needs a CUDA device"
    return None


class CudaGraph:
    """One forward of ``model`` on a static input, captured once and replayed."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor) -> None:
        self.static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                model(self.static_x)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.static_out = model(self.static_x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_x.copy_(x)
        self.graph.replay()
        return self.static_out


class OrtCuda:
    """An exported ONNX file in onnxruntime's CUDA provider, input and output bound on the GPU."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
        import onnxruntime as ort

        from hotpatch.export import export_onnx

        export_onnx(model.cpu(), path, example=x.cpu())  # checked on the CPU provider
        model.to(x.device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CUDAExecutionProvider"])
        self.binding = self.session.io_binding()
        self.x = x.contiguous()
        name = self.session.get_inputs()[0].name
        self.binding.bind_input(name, "cuda", x.device.index or 0, np_float32(), list(self.x.shape), self.x.data_ptr())
        self.binding.bind_output(self.session.get_outputs()[0].name, "cuda", x.device.index or 0)

    def __call__(self, x: torch.Tensor) -> None:
        self.x.copy_(x)
        self.session.run_with_iobinding(self.binding)


def np_float32() -> Any:
    import numpy as np

    return np.float32


def runner(mode: str, model: torch.nn.Module, x: torch.Tensor, path: Path) -> Any:
    if mode == "eager":
        return model
    if mode == "compiled":
        compiled = torch.compile(model, fullgraph=True)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled(x)  # compile outside the timing
        return compiled
    if mode == "cudagraph":
        return CudaGraph(model, x)
    return OrtCuda(model, x, path)


def write(args: argparse.Namespace, rows: list[dict[str, Any]], notes: list[str], dev: torch.device,
          started: float, command: str) -> None:
    from hotpatch.atomic import write_text

    lines = ["| model | batch | mode | original ms | patched ms | patched speed-up | original frames/s | patched frames/s |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['mode']} | {r['original_ms']:.2f} | {r['patched_ms']:.2f} "
                     f"| {r['speedup']:.2f}× | {r['original_fps']:.0f} | {r['patched_fps']:.0f} |")
    text = f"""# GPU latency: original vs patched ({device_name(dev)})

Command (from the repository root): `{command}`

Device: {device_name(dev)}; torch {torch.__version__}{f', CUDA {torch.version.cuda}' if dev.type == 'cuda' else ''};
{time.strftime('%Y-%m-%d %H:%M')}; {(time.perf_counter() - started):.0f} s of a {args.budget:.0f} s budget.
Random weights, fp32; {args.repeats} timed forwards after {args.warmup} warm-up, original and patched
interleaved (ABBA); median of one forward of the whole batch. frames/s = batch × F / latency.

{chr(10).join(lines)}

{chr(10).join('- ' + n for n in notes)}
"""
    write_text(args.out, text)
    write_text(Path(args.out).with_suffix(".json"), json.dumps({"rows": rows, "notes": notes}, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with benchmark_run(None):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    started = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available() and not args.dry_run:
        print(f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False); run with --device cpu "
              "to test the script", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    if args.out is None and not torch.cuda.is_available() and dev.type == "cuda":
        args.out = str(ROOT / "benchmarks" / "results" / "gpu-<GPU name>.md")
    if args.out is None:
        slug = "".join(c if c.isalnum() else "-" for c in device_name(dev).lower()).strip("-")
        args.out = str(ROOT / "benchmarks" / "results" / f"gpu-{slug}.md")
    plan = [(m, b, mode) for b in sorted(args.batches) for m in args.models for mode in args.modes]  # small batches first
    notes = [f"{mode}: not run ({why})" for mode in args.modes if (why := unavailable(mode, dev))]
    if args.dry_run:
        print(f"device: {device_name(dev)}; results to {args.out}")
        for m, b, mode in plan:
            print(f"  {m} batch {b} {mode}: {unavailable(mode, dev) or 'would run'}")
        return 0
    command = command_line(__file__, argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    spent: dict[tuple[str, str], tuple[int, float]] = {}  # (model, mode) -> (batch, seconds) of its last measurement
    for name, batch, mode in plan:
        if unavailable(mode, dev):
            continue
        last_batch, last_seconds = spent.get((name, mode), (batch, 0.0))
        guess = last_seconds * batch / last_batch  # pessimistic: a GPU's time grows more slowly than the batch
        left = args.budget - (time.perf_counter() - started)
        if guess > left or left <= 0:
            notes.append(f"{name} batch {batch} {mode}: skipped (about {guess:.0f} s needed, {max(0, left):.0f} s left)")
            continue
        t0 = time.perf_counter()
        try:
            row = measure(name, batch, mode, dev, args, work)
        except Exception as exc:  # one failing mode must not lose the rest of the run
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            notes.append(f"{name} batch {batch} {mode}: failed ({type(exc).__name__}: {first[:200]})")
            log.warning("%s batch %d %s failed: %s", name, batch, mode, first)
        else:
            rows.append(row)
            log.info("%s batch %d %s: %.2f / %.2f ms (%.2fx)", name, batch, mode, row["original_ms"],
                     row["patched_ms"], row["speedup"])
        spent[(name, mode)] = (batch, time.perf_counter() - t0)
        write(args, rows, notes, dev, started, command)
    write(args, rows, notes, dev, started, command)
    print(Path(args.out).read_text())
    return 0


def measure(name: str, batch: int, mode: str, dev: torch.device, args: argparse.Namespace, work: Path) -> dict:
    recipe, overrides, hot = models(args.quick)[name]
    original, patched, frames, channels = original_and_patched(recipe, overrides, hot)
    original, patched = original.to(dev), patched.to(dev)
    x = torch.randn(batch, frames, 17, channels, device=dev)
    works = [runner(mode, m, x, work / f"{name}-{which}-b{batch}.onnx")
             for which, m in (("original", original), ("patched", patched))]
    samples = time_interleaved(works, (x,), dev, args.repeats, args.warmup, None)
    o, p = (1e3 * statistics.median(s) for s in samples)
    return {"model": name, "batch": batch, "mode": mode, "original_ms": o, "patched_ms": p, "speedup": o / p,
            "original_fps": batch * frames / o * 1e3, "patched_fps": batch * frames / p * 1e3, "setting": hot}


if __name__ == "__main__":
    sys.exit(main())
