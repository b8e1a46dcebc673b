"""Deployed speed: original vs HoT-patched models in ONNX Runtime (fp32 and int8) and PyTorch eager.

For each model (MixSTE F=243 n=3 f=81, MotionBERT full and Lite F=243 n=1 f=81, and a two-stage
MixSTE schedule at about the single cut's FLOPs) and batch size, the original and the patched model
are exported to ONNX (``hotpatch.export``) and run in onnxruntime's CPU execution provider with all
graph optimisations, in fp32 and in several int8 variants, next to PyTorch eager (fp32, and int8
through ``torch.ao`` dynamic quantization). Every variant of one model and batch is timed
interleaved in one process (ABBA order, fixed thread count, warm-up first): latency, frames/s,
the patched speed-up and each row's ratio to the original fp32 ONNX model.

Variants: ``fp32``; ``fp32-fused`` (onnxruntime's transformer optimizer first); ``int8`` (the
generic ``quantize_dynamic``: int8 weights per tensor, activations quantized at run time);
``int8-pc`` (per-channel weights); ``int8-fused`` (fusions, then dynamic); ``int8-static-qdq`` and
``int8-static-qop`` (activation ranges calibrated, every MatMul in int8, QDQ or QOperator form).

Accuracy: the accuracy benchmark's small MixSTE (``benchmarks/accuracy.py``, trained on the shared
mocap clips; its weights are reused from ``--acc-work`` or trained there) and its zero-retraining
HoT settings, scored in every variant on the shared test clips and on the shifted copy
(``benchmarks/derive_clips.py``): MPJPE change against the same model in eager fp32.

    python benchmarks/deploy.py --threads 2                                  # everything (hours on 2 cores)
    python benchmarks/deploy.py --batches 1 --models mixste --repeats 3      # one model, batch 1
    python benchmarks/deploy.py --quick --out /tmp/d.md                      # a smoke test (tiny models)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hotpatch  # noqa: E402
from benchmarks import accuracy  # noqa: E402
from benchmarks.common import benchmark_run, command_line, names, original_and_patched  # noqa: E402
from hotpatch.evaluate import evaluate_model, paper_flops  # noqa: E402
from hotpatch.export import OnnxModel, export_onnx, fuse_onnx, quantize_onnx  # noqa: E402
from hotpatch.models import get as get_recipe  # noqa: E402
from hotpatch.profile.timing import time_interleaved  # noqa: E402

log = logging.getLogger("benchmarks.deploy")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "deploy.md"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bandai_h36m17.npz"

#: variant -> (runtime, precision as printed)
VARIANTS: dict[str, tuple[str, str]] = {
    "eager": ("PyTorch eager", "fp32"),
    "eager-int8": ("PyTorch eager", "int8 dynamic (torch.ao)"),
    "fp32": ("ONNX Runtime", "fp32"),
    "fp32-fused": ("ONNX Runtime", "fp32, transformer fusions"),
    "int8": ("ONNX Runtime", "int8 dynamic, per-tensor (generic)"),
    "int8-pc": ("ONNX Runtime", "int8 dynamic, per-channel"),
    "int8-fused": ("ONNX Runtime", "int8 dynamic after fusions"),
    "int8-static-qdq": ("ONNX Runtime", "int8 static (calibrated), QDQ, per-channel"),
    "int8-static-qop": ("ONNX Runtime", "int8 static (calibrated), QOperator, per-channel"),
}
BASE = "fp32"  # every ratio is to the original model in this variant


def _two_stage(frames: int, depth: int, n: int, f: int) -> dict[str, Any]:
    stages = accuracy.same_cost_stages(frames, depth, n, f)
    if stages is None:
        raise SystemExit(f"no two-stage schedule at the FLOPs of n={n}, f={f} for depth {depth}")
    return dict(n=stages[0], f=stages[1])


def speed_models(quick: bool) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """name -> (recipe, build overrides, HoT settings): the paper's settings (TRA, pruned pos-embed)."""
    hot = dict(pipeline="seq2seq", recover="tra", prune_pos_embed=True)
    if quick:
        tiny = dict(frames=27, dim=32, depth=4, num_heads=4)
        return {
            "mixste": ("mixste", tiny, dict(n=2, f=9, **hot)),
            "motionbert-lite": ("motionbert", dict(frames=27, dim=32, depth=2, dim_rep=32, num_heads=4),
                                dict(n=1, f=9, **hot)),
            "mixste-2stage": ("mixste", tiny, dict(**_two_stage(27, 4, 2, 9), **hot)),
        }
    return {
        "mixste": ("mixste", {}, dict(n=3, f=81, **hot)),
        "motionbert": ("motionbert", {"variant": "full"}, dict(n=1, f=81, **hot)),
        "motionbert-lite": ("motionbert", {"variant": "lite"}, dict(n=1, f=81, **hot)),
        "mixste-2stage": ("mixste", {}, dict(**_two_stage(243, 8, 3, 81), **hot)),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated (default: all of mixste, motionbert, "
                                                  "motionbert-lite, mixste-2stage)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--batch-variants", default="eager,fp32,int8,int8-pc",
                   help="variants timed at batches above 1 (default: eager,fp32,int8,int8-pc; 'all' for --variants)")
    p.add_argument("--repeats", type=int, default=5, help="timed forwards per variant (median reported)")
    p.add_argument("--batch-repeats", type=int, default=None, help="the same at batches above 1 (default: --repeats)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    p.add_argument("--calibration", type=int, default=32,
                   help="training windows calibrating the static variants of the accuracy model (default: 32)")
    p.add_argument("--work", default="/tmp/hotpatch-deploy", help="exported files (reused with --reuse)")
    p.add_argument("--reuse", action="store_true", help="reuse exported files found in --work")
    p.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                   help="score every variant on the accuracy benchmark's model and test sets (default: on)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="clips .npz of the accuracy benchmark")
    p.add_argument("--test-data", default=None,
                   help="the shifted test clips (default: derived into --acc-work by benchmarks/derive_clips.py)")
    p.add_argument("--acc-work", default="/tmp/hotpatch-accuracy",
                   help="the accuracy benchmark's --work: its trained original is reused (trained there if missing)")
    p.add_argument("--out", default=None, help=f"Markdown (default: {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--json", default=None, help="also write every number as JSON here")
    p.add_argument("--note", default="", help="a line about the machine's state, printed under the table")
    p.add_argument("--append", action="store_true",
                   help="add this run to --out as a section after what is there (e.g. a batch-64 run of some models)")
    p.add_argument("--quick", action="store_true", help="tiny models and data settings: a smoke test of the script")
    args = p.parse_args(argv)
    known = speed_models(args.quick)
    args.models = names(p, args.models or ",".join(known), known, "--models")
    args.variants = names(p, args.variants, VARIANTS, "--variants")
    args.batch_variants = args.variants if args.batch_variants == "all" else \
        [v for v in names(p, args.batch_variants, VARIANTS, "--batch-variants") if v in args.variants]
    if BASE not in args.variants:
        p.error(f"--variants must include {BASE}: every ratio is to the original fp32 ONNX model")
    if args.quick and args.out is None:
        p.error("--quick needs --out (the committed table is only written by a full run)")
    args.out = args.out or str(DEFAULT_OUT)
    return args


# ------------------------------------------------------------------------------------ variants


def _torch_int8(model: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def make_variant(variant: str, model: torch.nn.Module, x: torch.Tensor, stem: Path, calibration: list[np.ndarray],
                 threads: int, made: set[Path], reuse: bool = False) -> Any:
    """A callable running ``model`` as ``variant`` (ONNX files STEM-VARIANT.onnx, written unless in ``made``, the
    files this run wrote, or, with ``reuse``, already there)."""
    if variant == "eager":
        return model
    if variant == "eager-int8":
        return _torch_int8(model)
    fp32 = stem.with_name(f"{stem.name}-fp32.onnx")
    if fp32 not in made and not (reuse and fp32.is_file()):
        export_onnx(model, fp32, example=x)
    made.add(fp32)
    path = stem.with_name(f"{stem.name}-{variant}.onnx")
    if path not in made and not (reuse and path.is_file()):
        t0 = time.perf_counter()
        if variant == "fp32-fused":
            fuse_onnx(fp32, path)
        else:
            static = variant.startswith("int8-static")
            quantize_onnx(fp32, path, method="static" if static else "dynamic",
                          per_channel=variant in ("int8-pc", "int8-static-qdq", "int8-static-qop"),
                          fmt="qoperator" if variant == "int8-static-qop" else "qdq",
                          calibration=calibration if static else None, fuse=variant == "int8-fused")
        log.info("%s: %.0f s", path.name, time.perf_counter() - t0)
    made.add(path)
    return OnnxModel(path, threads=threads)


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Latency rows. Each variant is timed in its own group with the fp32 ONNX pair (original, patched,
    interleaved ABBA): every ratio to the original fp32 ONNX model is measured in the same run, and
    only four runners are in memory at a time. The fp32 row pools the fp32 samples of every group."""
    rows = []
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    made: set[Path] = set()
    for name in args.models:
        recipe, overrides, hot = speed_models(args.quick)[name]
        original, patched, frames, channels = original_and_patched(recipe, overrides, hot)
        ratio = paper_flops(original, frames, channels=channels) / paper_flops(patched, frames, channels=channels)
        for batch in args.batches:
            variants = args.variants if batch == 1 else args.batch_variants
            repeats = args.repeats if batch == 1 or args.batch_repeats is None else args.batch_repeats
            x = torch.randn(batch, frames, 17, channels, generator=torch.Generator().manual_seed(1))
            calib = [0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + i)).numpy()
                     for i in range(2)]  # the ranges do not change the speed; calibration holds every activation

            def runners(variant: str) -> list[Any]:
                log.info("%s batch %d: preparing %s", name, batch, variant)
                return [make_variant(variant, model, x, work / f"{name}-{which}-b{batch}", calib, args.threads, made,
                                     args.reuse) for which, model in (("original", original), ("patched", patched))]

            base = runners(BASE)
            pooled: list[list[float]] = [[], []]
            timed = {}
            for variant in [v for v in variants if v != BASE] or [BASE]:
                works = base + (runners(variant) if variant != BASE else [])
                log.info("%s batch %d: timing %s with fp32 ONNX (%d runners x %d repeats)", name, batch, variant,
                         len(works), repeats)
                samples = time_interleaved(works, (x,), torch.device("cpu"), repeats, args.warmup, None)
                pooled[0] += samples[0]
                pooled[1] += samples[1]
                timed[variant] = [1e3 * statistics.median(s) for s in samples]
                del works
                gc.collect()
            timed[BASE] = [1e3 * statistics.median(s) for s in pooled] * 2
            for variant in variants:
                b, _, o, p = timed[variant]
                rows.append({"model": name, "batch": batch, "variant": variant, "original_ms": o, "patched_ms": p,
                             "speedup": o / p, "original_fps": batch * frames / o * 1e3,
                             "patched_fps": batch * frames / p * 1e3, "original_x": b / o, "patched_x": b / p,
                             "base_ms": b,
                             "flops_ratio": ratio, "setting": hot})
                log.info("%s b%d %s: %.1f / %.1f ms (%.2fx; patched %.2fx of the original fp32 ONNX)", name, batch,
                         variant, o, p, o / p, b / p)
            del base
            gc.collect()
    return rows


# ------------------------------------------------------------------------------------ accuracy


def accuracy_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """MPJPE of each variant of the accuracy benchmark's original and patched models on both test sets."""
    from hotpatch.data import WindowDataset, load_clips

    quick = ["--quick", "--out", "-"] if args.quick else []
    acc = accuracy.parse_args(["--data", args.data, "--work", args.acc_work, *quick])
    F = acc.frames
    original = get_recipe("mixste").build(F, dim=acc.dim, depth=acc.depth, num_heads=acc.heads, drop_path_rate=0.0)
    weights = accuracy.weights_file(acc)
    if weights.is_file():
        original.load_state_dict(torch.load(weights, weights_only=True))
        log.info("accuracy model: reusing %s", weights)
    else:
        log.info("accuracy model: training it (%d steps; saved to %s)", acc.train_steps, weights)
        train = load_clips(acc.data, cameras_per_clip=acc.cameras, noise_px=acc.noise_px, seed=acc.seed,
                           max_clips=200 if args.quick else None)["train"]
        torch.manual_seed(acc.seed)
        accuracy.train(original, WindowDataset(train, F, stride=F // 3, flip_prob=0.5, seed=acc.seed),
                       acc.train_steps, acc.lr, acc.batch, acc.seed, "train original",
                       warmup=min(30, acc.train_steps // 10))
        weights.parent.mkdir(parents=True, exist_ok=True)
        from hotpatch.atomic import atomic_write

        with atomic_write(weights) as tmp:
            torch.save(original.state_dict(), tmp)
    original.eval()
    test = load_clips(acc.data, cameras_per_clip=1, noise_px=acc.noise_px, seed=acc.seed + 1,
                      max_clips=acc.test_clips)["test"]
    shifted_path = Path(args.test_data) if args.test_data else Path(args.acc_work) / "bandai_shifted.npz"
    if not shifted_path.is_file():
        from benchmarks import derive_clips

        derive_clips.main([acc.data, str(shifted_path), "--fps", "50"])
    splits = load_clips(shifted_path, cameras_per_clip=1, noise_px=acc.noise_px, seed=acc.seed + 1,
                        max_clips=acc.test_clips)
    sets = {"test": WindowDataset(test, F), "shifted": WindowDataset(splits["test"] or splits["train"], F)}
    calib_seqs = load_clips(acc.data, cameras_per_clip=1, noise_px=acc.noise_px, seed=acc.seed,
                            max_clips=8)["train"]
    calib_data = WindowDataset(calib_seqs, F)
    pick = np.linspace(0, len(calib_data) - 1, min(args.calibration, len(calib_data))).round().astype(int)
    calibration = [calib_data[int(i)]["inputs"][None].numpy() for i in pick]
    stages = _two_stage(F, acc.depth, acc.n, acc.f)
    models = {
        "original": original,
        f"TPC + linear (n={acc.n}, f={acc.f})": hotpatch.apply(original, acc.n, acc.f, recover="linear"),
        f"two stages + linear (n={stages['n']}, f={stages['f']})": hotpatch.apply(original, recover="linear", **stages),
    }
    work = Path(args.work) / "accuracy"
    work.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(calibration[0])
    rows: list[dict[str, Any]] = []
    made: set[Path] = set()
    for k, (label, model) in enumerate(models.items()):
        ref = {key: evaluate_model(model, data, batch_size=64, flops=False)["mpjpe"] for key, data in sets.items()}
        for variant in args.variants:
            row: dict[str, Any] = {"model": label, "variant": variant}
            if variant == "eager":
                row.update(ref)
            else:
                runner = make_variant(variant, model, x, work / f"acc{k}", calibration, args.threads, made)
                row.update({key: evaluate_model(runner, data, batch_size=64, flops=False)["mpjpe"]
                            for key, data in sets.items()})
            row.update({f"{key}_change": row[key] - ref[key] for key in sets})
            log.info("accuracy %s %s: %s", label, variant, {key: round(row[key], 2) for key in sets})
            rows.append(row)
    setup = {"frames": F, "dim": acc.dim, "depth": acc.depth, "weights": str(weights),
             "test_sequences": len(sets["test"].sequences), "shifted_sequences": len(sets["shifted"].sequences),
             "shifted": str(shifted_path), "calibration_windows": len(calibration)}
    return rows, setup


# ------------------------------------------------------------------------------------ report


def machine(threads: int) -> str:
    import onnxruntime

    return (f"{accuracy.machine(threads).split(', torch')[0]}, torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, {threads} thread(s) for torch and onnxruntime (intra-op)")


def speed_table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | batch | runtime | precision | original ms | patched ms | patched speed-up | original frames/s "
            "| patched frames/s | original × fp32 ONNX | patched × fp32 ONNX |")
    lines = [head, "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runtime, precision = VARIANTS[r["variant"]]
        lines.append(f"| {r['model']} | {r['batch']} | {runtime} | {precision} | {r['original_ms']:.1f} "
                     f"| {r['patched_ms']:.1f} | {r['speedup']:.2f}× | {r['original_fps']:.0f} | {r['patched_fps']:.0f} "
                     f"| {r['original_x']:.2f}× | {r['patched_x']:.2f}× |")
    return "\n".join(lines)


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | runtime | precision | MPJPE test | Δ test | MPJPE shifted | Δ shifted |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        runtime, precision = VARIANTS[r["variant"]]
        lines.append(f"| {r['model']} | {runtime} | {precision} | {r['test']:.2f} | {r['test_change']:+.2f} "
                     f"| {r['shifted']:.2f} | {r['shifted_change']:+.2f} |")
    return "\n".join(lines)


def goals(rows: list[dict[str, Any]], acc_rows: list[dict[str, Any]]) -> list[str]:
    """The issue's goals, each with the numbers that decide it."""
    out = []
    worst = {}  # variant -> worst MPJPE change of a patched model over both test sets
    for r in acc_rows:
        if r["model"] != "original":
            change = max(r["test_change"], r["shifted_change"])
            worst[r["variant"]] = max(worst.get(r["variant"], change), change)
    for model in dict.fromkeys(r["model"] for r in rows):
        b1 = [r for r in rows if r["model"] == model and r["batch"] == 1]
        int8 = [r for r in b1 if r["variant"].startswith("int8")]
        if int8:
            ok = [r for r in int8 if worst.get(r["variant"], 0.0) <= 1.0] if acc_rows else int8
            best = max(ok or int8, key=lambda r: r["patched_x"])
            generic = next((r for r in int8 if r["variant"] == "int8"), None)
            acc = f", MPJPE change at most {worst[best['variant']]:+.2f} mm" if best["variant"] in worst else ""
            line = (f"- {model}, patched + int8 in onnxruntime at batch 1: best {best['variant']} at "
                    f"{best['patched_x']:.2f}× the original fp32 ONNX frames/s{acc} (goal ≥ 4×, ≤ +1 mm): "
                    f"{'met' if best['patched_x'] >= 4 and best in ok else 'not met'}")
            if generic is not None and generic is not best:
                line += f"; the generic dynamic quantization gives {generic['patched_x']:.2f}×"
            out.append(line)
        low = min((r for r in rows if r["model"] == model), key=lambda r: r["speedup"])
        out.append(f"- {model}, patched vs original at every runtime, precision and batch: lowest "
                   f"{low['speedup']:.2f}× ({VARIANTS[low['variant']][0]} {low['variant']}, batch {low['batch']}) "
                   f"(goal ≥ 1.6×): {'met' if low['speedup'] >= 1.6 else 'not met'}")
        for r in (r for r in rows if r["model"] == model and r["variant"] in ("fp32", "eager")):
            share = r["speedup"] / r["flops_ratio"]
            out.append(f"- {model}, {VARIANTS[r['variant']][0]} fp32 batch {r['batch']}: {r['speedup']:.2f}× of a "
                       f"{r['flops_ratio']:.2f}× FLOPs ratio = {100 * share:.0f}% (goal ≥ 90%): "
                       f"{'met' if share >= 0.9 else 'not met'}")
    return out


def options_summary(rows: list[dict[str, Any]]) -> list[str]:
    """How much each option changes the patched (and original) latency against its plain counterpart."""
    pairs = [("fp32-fused", "fp32", "transformer fusions, fp32"), ("int8", "fp32", "dynamic int8 vs fp32"),
             ("int8-pc", "int8", "per-channel vs per-tensor weights"), ("int8-fused", "int8", "fusions before int8"),
             ("int8-static-qdq", "int8", "static QDQ vs dynamic"), ("int8-static-qop", "int8", "static QOperator vs dynamic"),
             ("eager-int8", "eager", "torch.ao int8 vs eager fp32")]
    out = []
    for new, old, what in pairs:
        for model in dict.fromkeys(r["model"] for r in rows):
            for batch in sorted({r["batch"] for r in rows}):
                get = {r["variant"]: r for r in rows if r["model"] == model and r["batch"] == batch}
                if new in get and old in get:
                    o = get[old]["original_ms"] / get[new]["original_ms"]
                    p = get[old]["patched_ms"] / get[new]["patched_ms"]
                    out.append(f"- {what}: {model} batch {batch}: original {o:.2f}×, patched {p:.2f}× as fast")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with benchmark_run(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    rows = speed(args)
    load_after = os.getloadavg()
    acc_rows, setup = accuracy_rows(args) if args.accuracy else ([], {})
    command = command_line(__file__, argv)
    settings = "; ".join(f"{m}: {speed_models(args.quick)[m][2]}" for m in args.models)
    acc_text = "(not measured: `--no-accuracy`)"
    if acc_rows:
        acc_text = f"""The accuracy benchmark's MixSTE (F={setup['frames']}, dim {setup['dim']}, {setup['depth']} block pairs, trained
on the shared mocap clips: `{setup['weights']}`), original and zero-retraining HoT, each exported at batch 1 and
scored window by window; Δ is the change against the same model in eager fp32 (mm). "test": the
accuracy benchmark's {setup['test_sequences']} test sequences; "shifted": {setup['shifted_sequences']} sequences of
`{setup['shifted']}` (50 fps, other body proportions). Static variants calibrated on
{setup['calibration_windows']} training windows.

{accuracy_table(acc_rows)}"""
    text = f"""# Deployed speed: original vs patched in ONNX Runtime (fp32, int8) and PyTorch

Command (from the repository root): `{command}`

Machine: {machine(args.threads)}. Load average (1 min) {load_before[0]:.1f} before and {load_after[0]:.1f} after
the timing{'; ' + args.note if args.note else ''}. Total wall time {(time.perf_counter() - t0) / 60:.1f} min.

Settings: {settings}. Random weights for speed (int8 speed does not depend on their values); each
variant timed {args.repeats} times{f' (at batch 1; {args.batch_repeats} at larger batches)' if args.batch_repeats else ''} after {args.warmup} warm-up, all variants of one model and batch interleaved
(ABBA) in one process; median latency of one forward of the whole batch. frames/s = batch × F / latency
(every frame of every clip is predicted). "× fp32 ONNX": frames/s over the original model's in
onnxruntime fp32 at the same batch.

{speed_table(rows)}

## Goals

{chr(10).join(goals(rows, acc_rows))}

## What each option changes (latency ratio against its plain counterpart, same run)

{chr(10).join(options_summary(rows))}

## Accuracy cost of each variant

{acc_text}
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from hotpatch.atomic import write_text

    if args.append and out.is_file():
        text = out.read_text().rstrip() + "\n\n" + text.replace("# Deployed speed:", "## Another run: deployed speed:", 1)
    write_text(out, text)
    print(text)
    if args.json:
        write_text(args.json, json.dumps({"speed": rows, "accuracy": acc_rows, "setup": setup, "args": vars(args)},
                                         indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
