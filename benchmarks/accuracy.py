"""Accuracy benchmark: HoT on a small MixSTE trained on real motion capture, on a 2-core CPU.

Trains a small MixSTE-style model (the ``mixste`` recipe, F=81, dim 32, 4 block pairs by
default) from scratch on the shared Bandai-Namco mocap clips (2D inputs projected through
virtual cameras), then reports MPJPE, P-MPJPE, MPJVE and paper-convention FLOPs for:

* the original, seq2seq and seq2frame;
* zero-retraining TPC seq2frame;
* zero-retraining seq2seq: TPC + nearest / linear recovery, and uniform sampling with the same;
* zero-retraining two-stage (hierarchical) TPC at about the FLOPs of the single cut, seq2frame
  and seq2seq with linear recovery;
* after the same short fine-tune: HoT (TPC + TRA), TPC + linear-TRA (linear recovery plus a
  learnable correction that starts at zero), TPC + linear (the interpolation control of the
  paper's Table 5) and the original itself (the fair control: the same extra training);

with selected vs pruned frame errors for the seq2seq rows (the paper's Tables 4 and 5), and
writes a Markdown table (a second one with ``--test-data FILE``: every row scored again on
that file's test clips, training unchanged) (``--out``, default ``benchmarks/results/accuracy.md``) with the
command and the machine. Trained weights go to ``--work`` (outside the repository: they are
derived from CC BY-NC data and must not be committed).

    python benchmarks/accuracy.py --threads 2          # the full run (about 25 min on 2 quiet cores)
    python benchmarks/accuracy.py --quick --out /tmp/a.md   # a smoke test (a minute)
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hotpatch
from hotpatch.atomic import atomic_write, write_text
from hotpatch.data import WindowDataset, load_clips
from hotpatch.evaluate import evaluate_model
from hotpatch.finetune import FinetuneConfig, finetune
from hotpatch.errors import ConfigError
from hotpatch.patch import parse_stages, stage_text
from hotpatch.models import get as get_recipe

try:  # run as a script (python benchmarks/accuracy.py) or imported as benchmarks.accuracy
    from benchmarks import merge_rows
except ImportError:
    import merge_rows

log = logging.getLogger("benchmarks.accuracy")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bandai_h36m17.npz"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "accuracy.md"

#: The paper's numbers this compares against (HoT, CVPR 2024, MixSTE on Human3.6M).
PAPER = {
    "table2": "zero-retraining TPC w. MixSTE (seq2frame, n=3, f=61 of 243): 40.7 → 41.2 mm (+0.5) at −46.8% FLOPs",
    "table4": "seq2seq selected frames: TPC 40.2 mm vs uniform sampling 41.4 mm (full 41.0 vs 41.4)",
    "table5": "after training, full / pruned / selected: TRA 41.0 / 41.3 / 40.2, linear 41.3 / 41.9 / 40.0, "
              "nearest 41.5 / 42.2 / 40.2",
}


def _stages(text: str) -> tuple[list[int], list[int]]:
    try:
        return parse_stages(text)
    except ConfigError as err:  # argparse shows an ArgumentTypeError's text, not a ValueError's
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="clips .npz (default: ../shared/data/bandai_h36m17.npz)")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--n", type=int, default=2, help="prune after the n-th temporal block (default: 2 of 4)")
    p.add_argument("--f", type=int, default=27, help="frames kept (default: 27 of 81, the paper's f/F = 1/3)")
    p.add_argument("--cameras", type=int, default=2, help="virtual cameras per training clip")
    p.add_argument("--noise-px", type=float, default=2.0, help="2D detector-like noise, pixels")
    p.add_argument("--train-steps", type=int, default=2200, help="optimiser steps training the original")
    p.add_argument("--batch", type=int, default=8, help="training and fine-tune batch (windows)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ft-steps", type=int, default=300, help="fine-tune steps (each of the four fine-tunes)")
    p.add_argument("--ft-lr", type=float, default=2e-4)
    p.add_argument("--new-lr-scale", type=float, default=10.0,
                   help="fine-tune LR multiplier of the new (hotpatch_*) parameters: TRA, the pos-embed")
    p.add_argument("--extra-n", type=int, default=1,
                   help="also zero-retraining TPC rows at this n (0: none); n=1 cuts FLOPs by about half")
    p.add_argument("--test-clips", type=int, default=48, help="test clips (style 'normal'), one camera each")
    p.add_argument("--test-data", default=None,
                   help="also evaluate every row on the test clips of this clips .npz (same layout, e.g. motion "
                        "capture from another studio, or benchmarks/derive_clips.py's shifted copy; all its clips if "
                        "none has style 'normal'); training stays on --data")
    p.add_argument("--stages", type=_stages, default=None, metavar="N,N:F,F",
                   help="the multi-stage rows' setting (default: cuts after blocks n-1 and n+1 at about the FLOPs of n, f)")
    p.add_argument("--s2f-stride", type=int, default=6, help="seq2frame: score every k-th frame")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--curve-points", type=int, default=8,
                   help="learning curve: evaluate the original this many times while it trains (0: never)")
    p.add_argument("--curve-windows", type=int, default=32,
                   help="learning curve: a fixed, evenly spread subset of this many seq2seq test windows")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine 2 threads stall each other)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/hotpatch-accuracy", help="trained weights (outside the repo)")
    p.add_argument("--reuse", action="store_true", help="reuse the trained original in --work if present")
    p.add_argument("--out", default=None, help=f"Markdown table (default: {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--json", default=None, help="also write all numbers as JSON here")
    p.add_argument("--quick", action="store_true", help="tiny settings, a smoke test of the script")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.dim, args.depth, args.heads, args.n, args.f = 27, 32, 4, 4, 2, 9
        args.train_steps, args.ft_steps, args.test_clips, args.cameras, args.s2f_stride = 20, 5, 4, 1, 3
        args.batch = 8
        if args.out is None:
            raise SystemExit("--quick needs --out (the committed table is only written by a full run)")
    args.out = args.out or str(DEFAULT_OUT)
    return args


class Clock:
    """Seconds spent per phase."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.phases: dict[str, float] = {}

    def phase(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        log.info("%s: %.0f s (total %.1f min)", name, seconds, self.total() / 60)

    def total(self) -> float:
        return time.perf_counter() - self.t0


def step_logger(name: str, every: int = 25):
    def progress(event: Any) -> None:
        if event.kind == "step" and (event.step % every == 0 or event.step == event.steps):
            log.info("%s: step %d/%d loss %.4f lr %.2e", name, event.step, event.steps, event.loss, event.lr)

    return progress


class LearningCurve:
    """A ``finetune`` progress callback: MPJPE on a fixed subset of test windows at ``count``
    evenly spaced steps, the last one included (see :func:`curve_points`).

    ``train_loss`` at a point is the mean step loss since the previous point. The seconds spent
    evaluating are kept in ``seconds`` (so the caller can keep them out of the training time).
    """

    def __init__(self, model: torch.nn.Module, data: WindowDataset, windows: np.ndarray, count: int,
                 batch: int) -> None:
        self.model, self.data, self.windows, self.batch, self.count = model, data, windows, batch, count
        self.points: set[int] | None = None
        self.rows: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._losses: list[float] = []

    def __call__(self, event: Any) -> None:
        if event.kind != "step":
            return
        if self.points is None:  # the loop's real number of steps (fewer than asked on a small file)
            self.points = set(curve_points(event.steps, self.count))
        self._losses.append(event.loss)
        if event.step not in self.points:
            return
        t0 = time.perf_counter()
        res = evaluate_model(self.model, self.data, batch_size=self.batch, windows=self.windows, flops=False)
        self.seconds += time.perf_counter() - t0
        self.rows.append({"step": event.step, "train_loss": sum(self._losses) / len(self._losses), "lr": event.lr,
                          "mpjpe": res["mpjpe"], "p_mpjpe": res["p_mpjpe"]})
        self._losses = []
        log.info("learning curve: step %d, test MPJPE (subset) %.1f mm", event.step, res["mpjpe"])


def curve_points(steps: int, count: int) -> list[int]:
    """``count`` evenly spaced steps ending at ``steps`` (fewer when ``steps`` is small)."""
    return sorted({max(1, round(steps * k / count)) for k in range(1, count + 1)}) if count > 0 else []


def train(model: torch.nn.Module, data: WindowDataset, steps: int, lr: float, batch: int, seed: int,
          name: str, warmup: int = 0, new_lr_scale: float = 1.0,
          on_step: Any = None) -> list[dict[str, Any]]:
    cfg = FinetuneConfig(epochs=1, steps_per_epoch=steps, batch_size=batch, lr=lr, weight_decay=0.1,
                         schedule="cosine", warmup_steps=warmup, seed=seed, grad_clip=1.0,
                         new_lr_scale=new_lr_scale)
    logger = step_logger(name)

    def progress(event: Any) -> None:
        logger(event)
        if on_step is not None:
            on_step(event)

    return finetune(model, data, cfg, progress=progress).history


def row(name: str, pipeline: str, prune: str, recover: str, training: str, res: dict[str, Any],
        base_flops: int | None) -> dict[str, Any]:
    out = {"row": name, "pipeline": pipeline, "prune": prune, "recover": recover, "training": training, **res}
    if base_flops and res.get("flops") is not None:
        out["flops_pct"] = 100.0 * (res["flops"] - base_flops) / base_flops
    return out


def same_cost_stages(frames: int, depth: int, n: int, f: int) -> tuple[list[int], list[int]] | None:
    """Two cuts around the single cut (n, f) with about its FLOPs: after blocks n-1 and n+1,
    the last keeping f, the first as many frames as makes n-1 full, 2 middle and L-n-1 last
    blocks cost what n full and L-n pruned blocks cost (block FLOPs grow with their tokens)."""
    n1, n2 = n - 1, n + 1
    if n1 < 1 or n2 >= depth:
        return None
    f1 = round((n * frames + (depth - n) * f - n1 * frames - (depth - n2) * f) / (n2 - n1))
    return ([n1, n2], [f1, f]) if f <= f1 <= frames else None


def weights_file(args: argparse.Namespace) -> Path:
    """Where the trained original of these settings is kept in ``--work`` (``--reuse`` reads it back)."""
    return Path(args.work) / (f"original_F{args.frames}_d{args.dim}_L{args.depth}_h{args.heads}_b{args.batch}"
                              f"_lr{args.lr:g}_c{args.cameras}_s{args.train_steps}.pt")


def _f(x: Any, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| # | model | pipeline | training | MPJPE | P-MPJPE | MPJVE | paper MFLOPs / clip | ΔFLOPs "
            "| MPJPE selected / pruned | Δ pruned − selected |")
    lines = [head, "|" + "---|" * 11]
    for i, r in enumerate(rows, 1):
        sel, pru = r.get("mpjpe_selected"), r.get("mpjpe_pruned")
        split = f"{_f(sel)} / {_f(pru)}" if sel is not None else "–"
        gap = _f(pru - sel) if sel is not None and pru is not None else "–"
        model = r["row"]
        pct = f"{r['flops_pct']:+.1f}%" if r.get("flops_pct") is not None else "–"
        lines.append(f"| {i} | {model} | {r['pipeline']} | {r['training']} | {_f(r['mpjpe'])} | {_f(r['p_mpjpe'])} "
                     f"| {_f(r.get('mpjve'), 2)} | {_f(r['flops'] / 1e6, 1)} | {pct} | {split} | {gap} |")
    return "\n".join(lines)


def curve_table(curve: list[dict[str, Any]] | None) -> str:
    if curve is None:
        return "(not recorded: the original's weights were reused with `--reuse` from a run that kept no curve)"
    if not curve:
        return "(not recorded: `--curve-points 0`)"
    lines = ["| step | train loss | test MPJPE (subset) |", "|---|---|---|"]
    lines += [f"| {c['step']} | {c['train_loss']:.4f} | {_f(c['mpjpe'])} |" for c in curve]
    return "\n".join(lines)


def claims(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Our numbers next to the paper's claims (plain differences, no verdict words)."""
    out = []
    o2f, t2f = rows.get("orig_s2f"), rows.get("tpc_s2f")
    if o2f and t2f:
        out.append(f"- Table 2 (zero-retraining TPC, seq2frame): {_f(o2f['mpjpe'])} → {_f(t2f['mpjpe'])} mm "
                   f"({t2f['mpjpe'] - o2f['mpjpe']:+.1f} mm) at {t2f['flops_pct']:+.1f}% FLOPs. "
                   f"Paper: {PAPER['table2']}.")
    for rec in ("nearest", "linear"):
        t, u = rows.get(f"tpc_{rec}"), rows.get(f"uniform_{rec}")
        if t and u:
            out.append(f"- Table 4 (TPC vs uniform, zero-retraining, {rec} recovery): full {_f(t['mpjpe'])} vs "
                       f"{_f(u['mpjpe'])} mm, selected frames {_f(t['mpjpe_selected'])} vs "
                       f"{_f(u['mpjpe_selected'])} mm, pruned {_f(t['mpjpe_pruned'])} vs {_f(u['mpjpe_pruned'])} mm. "
                       f"Paper: {PAPER['table4']}.")
    for one_key, two_key, what in (("tpc_s2f", "tpc2_s2f", "seq2frame"), ("tpc_linear", "tpc2_linear", "seq2seq, linear")):
        one, two = rows.get(one_key), rows.get(two_key)
        if one and two:
            gap = two["mpjpe"] - one["mpjpe"]
            best = "the same to 0.1 mm" if abs(gap) < 0.05 else f"{'two stages' if gap < 0 else 'one cut'} by {abs(gap):.1f} mm"
            out.append(f"- Two pruning stages vs one cut, zero-retraining ({what}): {two['row']} {_f(two['mpjpe'])} mm "
                       f"at {two['flops_pct']:+.1f}% FLOPs vs {one['row']} {_f(one['mpjpe'])} mm at "
                       f"{one['flops_pct']:+.1f}% FLOPs; lower error: {best}.")
    hot, lin = rows.get("hot_ft"), rows.get("linear_ft")
    if hot and lin:
        out.append(f"- Table 5 (recovery after the same fine-tune): TRA full / pruned / selected "
                   f"{_f(hot['mpjpe'])} / {_f(hot['mpjpe_pruned'])} / {_f(hot['mpjpe_selected'])} mm vs linear "
                   f"{_f(lin['mpjpe'])} / {_f(lin['mpjpe_pruned'])} / {_f(lin['mpjpe_selected'])} mm. "
                   f"Paper: {PAPER['table5']}.")
    ctl, ltra = rows.get("orig_ft"), rows.get("lineartra_ft")
    if ltra and lin and ctl:
        out.append(f"- Recovery that starts as interpolation (linear-TRA), same fine-tune: {_f(ltra['mpjpe'])} mm "
                   f"(pruned / selected {_f(ltra['mpjpe_pruned'])} / {_f(ltra['mpjpe_selected'])}) vs linear "
                   f"{_f(lin['mpjpe'])} mm and the fine-tuned original {_f(ctl['mpjpe'])} mm "
                   f"({100 * (ltra['mpjpe'] / ctl['mpjpe'] - 1):+.1f}%), at {ltra['flops_pct']:+.1f}% FLOPs.")
    if hot and ctl:
        out.append(f"- Fair control: the same fine-tune spent on the original gives {_f(ctl['mpjpe'])} mm; HoT "
                   f"{_f(hot['mpjpe'])} mm ({hot['mpjpe'] - ctl['mpjpe']:+.1f} mm) at {hot['flops_pct']:+.1f}% FLOPs.")
    return out


def machine(threads: int) -> str:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {cores} CPU cores (shared with other jobs), torch {torch.__version__} with {threads} "
            f"thread(s), Python {platform.python_version()}, {platform.system()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet, level, threads = logging.getLogger("hotpatch"), logging.getLogger("hotpatch").level, torch.get_num_threads()
    quiet.setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        quiet.setLevel(level)
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    clock = Clock()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    F, n, f = args.frames, args.n, args.f

    t = time.perf_counter()
    train_seqs = load_clips(args.data, cameras_per_clip=args.cameras, noise_px=args.noise_px, seed=args.seed,
                            max_clips=200 if args.quick else None)["train"]
    test_seqs = load_clips(args.data, cameras_per_clip=1, noise_px=args.noise_px, seed=args.seed + 1,
                           max_clips=args.test_clips)["test"]
    other = None  # --test-data: its test clips (all clips if none is 'normal'), seq2seq and seq2frame windows
    if args.test_data:
        splits = load_clips(args.test_data, cameras_per_clip=1, noise_px=args.noise_px, seed=args.seed + 1,
                            max_clips=args.test_clips)
        other_seqs = splits["test"] or splits["train"]
        other = (WindowDataset(other_seqs, F), WindowDataset(other_seqs, F, mode="seq2frame", stride=args.s2f_stride))
    train_data = WindowDataset(train_seqs, F, stride=F // 3, flip_prob=0.5, seed=args.seed)
    s2s = WindowDataset(test_seqs, F)
    s2f = WindowDataset(test_seqs, F, mode="seq2frame", stride=args.s2f_stride)
    test_frames = sum(map(len, test_seqs))
    clock.phase("data", time.perf_counter() - t)
    log.info("train: %d sequences, %d windows; test: %d sequences, %d frames (%d seq2seq windows, %d seq2frame)",
             len(train_seqs), len(train_data), len(test_seqs), test_frames, len(s2s), len(s2f))

    torch.manual_seed(args.seed)
    original = get_recipe("mixste").build(F, dim=args.dim, depth=args.depth, num_heads=args.heads,
                                          drop_path_rate=0.0)
    weights = weights_file(args)
    curve_file = weights.with_suffix(".curve.json")
    curve_idx = np.unique(np.linspace(0, len(s2s) - 1, min(args.curve_windows, len(s2s))).round().astype(np.int64))
    warmup = min(30, args.train_steps // 10)
    t = time.perf_counter()
    if args.reuse and weights.is_file():
        original.load_state_dict(torch.load(weights, weights_only=True))
        pretrain_history = None
        learning_curve = json.loads(curve_file.read_text()) if curve_file.is_file() else None
        log.info("reusing %s", weights)
        clock.phase("train original", time.perf_counter() - t)
    else:
        curve = LearningCurve(original, s2s, curve_idx, args.curve_points, args.eval_batch)
        pretrain_history = train(original, train_data, args.train_steps, args.lr, args.batch, args.seed,
                                 "train original", warmup=warmup, on_step=curve)
        with atomic_write(weights) as tmp:
            torch.save(original.state_dict(), tmp)
        learning_curve = curve.rows
        write_text(curve_file, json.dumps(learning_curve, indent=2))
        clock.phase("train original", time.perf_counter() - t - curve.seconds)
        clock.phase("learning curve", curve.seconds)
    original.eval()
    curve_frames = int(sum(v.sum() for v in (s2s[int(i)]["valid"].numpy() for i in curve_idx)))

    results: dict[str, dict[str, Any]] = {}
    results_other: dict[str, dict[str, Any]] = {}  # the same rows on --test-data

    def ev(key: str, model: torch.nn.Module, data: WindowDataset, *labels: str) -> None:
        t0 = time.perf_counter()
        res = evaluate_model(model, data, batch_size=args.eval_batch)
        base = results.get("orig_s2s", res)["flops"]
        results[key] = row(*labels, res, base)
        if other is not None:
            res2 = evaluate_model(model, other[0] if data is s2s else other[1], batch_size=args.eval_batch)
            results_other[key] = row(*labels, res2, base)
        clock.phase(f"eval {key}", time.perf_counter() - t0)
        log.info("%s: MPJPE %.1f mm, P-MPJPE %.1f mm", key, res["mpjpe"], res["p_mpjpe"])

    ev("orig_s2s", original, s2s, "MixSTE (original)", "seq2seq", "–", "–", "trained")
    ev("orig_s2f", original, s2f, "MixSTE (original)", "seq2frame", "–", "–", "trained")
    ev("tpc_s2f", hotpatch.apply(original, n, f, pipeline="seq2frame"), s2f,
       f"TPC (n={n}, f={f})", "seq2frame", "tpc", "–", "none (zero-retraining)")
    for prune, label in (("tpc", "TPC"), ("uniform", "uniform sampling")):
        for rec in ("nearest", "linear"):
            ev(f"{'tpc' if prune == 'tpc' else 'uniform'}_{rec}", hotpatch.apply(original, n, f, prune=prune,
               recover=rec), s2s, f"{label} + {rec}", "seq2seq", prune, rec, "none (zero-retraining)")

    extra = []
    if args.extra_n and args.extra_n != n:
        m = args.extra_n
        ev("tpc_s2f_extra", hotpatch.apply(original, m, f, pipeline="seq2frame"), s2f,
           f"TPC (n={m}, f={f})", "seq2frame", "tpc", "–", "none (zero-retraining)")
        ev("tpc_linear_extra", hotpatch.apply(original, m, f, recover="linear"), s2s,
           f"TPC + linear (n={m})", "seq2seq", "tpc", "linear", "none (zero-retraining)")
        extra = ["tpc_s2f_extra", "tpc_linear_extra"]

    stages = args.stages or same_cost_stages(F, args.depth, n, f)
    if stages is not None:
        ns, fs = stages
        what = f"n={stage_text(ns)}, f={stage_text(fs)}"
        count = {2: "two", 3: "three"}.get(len(ns), str(len(ns)))
        ev("tpc2_s2f", hotpatch.apply(original, ns, fs, pipeline="seq2frame"), s2f,
           f"TPC, {count} stages ({what})", "seq2frame", "tpc", "–", "none (zero-retraining)")
        ev("tpc2_linear", hotpatch.apply(original, ns, fs, recover="linear"), s2s,
           f"TPC + linear, {count} stages ({what})", "seq2seq", "tpc", "linear", "none (zero-retraining)")
        extra += ["tpc2_s2f", "tpc2_linear"]

    # token merging (issue 22): the variants at the single cut, then the winners at every level
    merge_keys = merge_rows.variant_rows(ev, original, n, f, s2s)
    weighting, unmerge = merge_rows.winners(results)
    log.info("merging: %s and %s have the lowest MPJPE at the single cut", weighting, unmerge)
    key = f"{weighting}_s2f"
    ev(key, hotpatch.apply(original, n, f, prune=weighting, pipeline="seq2frame"), s2f,
       f"{weighting} (n={n}, f={f})", "seq2frame", weighting, "–", merge_rows.ZR)
    merge_keys.append(key)
    levels = [(f"single cut (n={n}, f={f})", "tpc_linear", "uniform_linear", "")]
    if "tpc_linear_extra" in results:
        merge_keys += merge_rows.level_rows(ev, original, args.extra_n, f, f"n={args.extra_n}", "50", weighting,
                                            unmerge, s2s, s2f)
        levels.append((f"cut at n={args.extra_n}", "tpc_linear_extra", "uniform_linear_50", "50"))
    if stages is not None:
        merge_keys += merge_rows.level_rows(ev, original, ns, fs, what, "2st", weighting, unmerge, s2s, s2f)
        levels.append((f"two stages ({what})", "tpc2_linear", "uniform_linear_2st", "2st"))

    budget = f"+{args.ft_steps} steps"
    finetuned = {
        "hot_ft": ("HoT (TPC + TRA)", "tpc", "tra"),
        "lineartra_ft": ("TPC + linear-TRA", "tpc", "linear-tra"),
        "linear_ft": ("TPC + linear", "tpc", "linear"),
        "merge_ft": (merge_rows.label(weighting, unmerge), weighting, unmerge),
        "mergelinear_ft": (merge_rows.label(weighting, "linear"), weighting, "linear"),
        "uniform_ft": ("uniform sampling + linear", "uniform", "linear"),
        "orig_ft": ("MixSTE (original)", "–", "–"),
    }
    ft_history = {}
    for key, (label, prune, rec) in finetuned.items():
        torch.manual_seed(args.seed + 1)
        if key == "orig_ft":
            model = copy.deepcopy(original)
        else:
            model = hotpatch.apply(original, n, f, prune=prune, recover=rec, prune_pos_embed=prune != "uniform")
        t = time.perf_counter()
        ft_history[key] = train(model, train_data, args.ft_steps, args.ft_lr, args.batch, args.seed + 1,
                                f"fine-tune {key}", new_lr_scale=args.new_lr_scale)
        clock.phase(f"fine-tune {key}", time.perf_counter() - t)
        ev(key, model, s2s, label, "seq2seq", prune, rec, f"fine-tuned {budget}")

    order = ["orig_s2s", "orig_s2f", "tpc_s2f", "tpc_nearest", "tpc_linear", "uniform_nearest", "uniform_linear",
             *extra, "hot_ft", "lineartra_ft", "linear_ft", "orig_ft"]
    merge_order = ["orig_s2s", "orig_s2f", "tpc_s2f", "tpc_linear", "uniform_linear", *merge_keys,
                   *[k for k in ("tpc_s2f_extra", "tpc_linear_extra", "tpc2_s2f", "tpc2_linear") if k in results],
                   "linear_ft", "merge_ft", "mergelinear_ft", "uniform_ft", "orig_ft"]
    rows = [results[k] for k in order]
    table = markdown_table(rows)
    other_rows = [results_other[k] for k in order] if other is not None else []
    merge_table = markdown_table([results[k] for k in merge_order])
    levels.append(("after the same fine-tune", "linear_ft", "uniform_ft", "ft"))
    merge_claims = merge_rows.claims(results, levels, weighting, unmerge)
    total_min = clock.total() / 60
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:]))
    s2f_frames = results["orig_s2f"]["frames"]
    o2s, o2f, t2f = results["orig_s2s"], results["orig_s2f"], results["tpc_s2f"]
    merge_section = f"""
## Token merging: merge + unmerge against TPC and uniform sampling at the same FLOPs

`prune="merge"` keeps TPC's cluster centres but makes each kept token the weighted mean of its
cluster; `recover="unmerge"` gives each frame its cluster's token (`unmerge-linear`: halfway
towards linear interpolation in time). The variants were compared at the single cut; the winners
({weighting}, {unmerge}) were then used at the other levels, in seq2frame and in the fine-tunes.
The merge rows' "selected" frames are the cluster centres. Paper FLOPs count Linear layers
only: the merge's weighted mean (a (f × F) matrix product per sample) is not in them.

{merge_table}

{chr(10).join(merge_claims)}
"""
    test_file_note = ""
    other_section = ""
    if other is not None:
        test_file_note = (f"\n- `--test-data`: every row also scored on the test clips of `{args.test_data}` "
                          f"({len(other[0].sequences)} sequences, {sum(map(len, other[0].sequences))} frames; seq2frame "
                          f"rows on one frame in {args.s2f_stride}), with the same models (trained on the file above).")
        other_section = f"""
## The same rows on `--test-data` (`{args.test_data}`)

{markdown_table(other_rows)}

{chr(10).join(claims(results_other))}

Token merging on `--test-data` (the same models; the variants chosen on the shared split):

{markdown_table([results_other[k] for k in merge_order])}

{chr(10).join(merge_rows.claims(results_other, levels, weighting, unmerge))}
"""
    text = f"""# Accuracy: HoT on a small MixSTE trained on real motion capture

Command (from the repository root): `{command}`

Machine: {machine(args.threads)}. Total wall time {total_min:.1f} min.

{table}

Errors in mm on the test clips, paper FLOPs = 2 × MACs of Linear layers for one {F}-frame clip
(one forward: all {F} frames for seq2seq, the centre frame only for seq2frame). ΔFLOPs against the
original. "selected / pruned": MPJPE of the frames the pruner kept / dropped (the paper's Tables 4 and 5).

Paper claims, next to ours:

{chr(10).join(claims(results))}

Caveats: this is a small model trained for {args.train_steps} steps ({args.train_steps * args.batch / len(train_data):.2f}
epochs of the training windows) on 2 CPU cores: MPJPE {_f(o2s['mpjpe'])} mm seq2seq and {_f(o2f['mpjpe'])} mm seq2frame,
against about 41 mm for the paper's MixSTE on Human3.6M; zero-retraining TPC changes its seq2frame
MPJPE by {t2f['mpjpe'] - o2f['mpjpe']:+.1f} mm. The fine-tunes are {args.ft_steps} steps: TRA starts from zero
queries and random projections and must learn to place every recovered frame in time, while the
paper trains HoT from scratch for 160 epochs.

## Learning curve of the original

Test MPJPE (mm) on a fixed subset of {len(curve_idx)} of the {len(s2s)} seq2seq test windows ({curve_frames} frames,
evenly spread), measured while the original trains; train loss is the mean training loss (MixSTE's
combined loss) over the steps since the previous row.

{curve_table(learning_curve)}
{merge_section}
{other_section}
## Setup

- Data: Bandai-Namco-Research-Motiondataset 1 and 2 (CC BY-NC 4.0, Kobayashi et al., arXiv:2306.08861),
  17 Human3.6M joints, 30 fps; 2D inputs projected through virtual Human3.6M-like cameras with
  {args.noise_px:g} px Gaussian noise. Train: the {len(train_seqs) // max(1, args.cameras)} non-`normal` clips × {args.cameras} camera{"s" if args.cameras != 1 else ""}
  ({len(train_data)} windows of {F} frames, stride {F // 3}, random flips). Test: a subset of {len(test_seqs)} of the 485
  `normal`-style clips (evenly spread through the file), one camera each, {test_frames} frames. seq2seq rows score every
  test frame ({len(s2s)} non-overlapping windows, padding ignored); seq2frame rows score
  one frame in {args.s2f_stride} ({s2f_frames} frames, one {F}-frame window each) to fit the time budget, so their
  numbers are on a subsample of the same clips. No test-time flip augmentation.{test_file_note}
- Model: the `mixste` recipe with F={F}, dim={args.dim}, depth={args.depth} (block pairs), {args.heads} heads,
  MLP ratio 2, no stochastic depth ({sum(p.numel() for p in original.parameters())} parameters); trained from scratch for
  {args.train_steps} AdamW steps, batch {args.batch}, lr {args.lr:g} ({warmup} warm-up steps, then cosine
  decay to 0), weight decay 0.1, gradient clip 1, MixSTE's losses (weighted MPJPE + 0.5 TCLoss + 2.0 velocity).
- HoT settings: n={n}, f={f}{f" (and zero-retraining rows at n={args.extra_n})" if extra else ""}. With {args.depth} block pairs, n={n} keeps the first {n} pairs at full
  resolution (the paper's MixSTE default n=3 of 8 keeps 3/8) and f/F = {f}/{F} matches the paper's 81/243.
- Fine-tunes (the last four rows; the merging section adds three): the same {args.ft_steps} steps, batch {args.batch}, lr {args.ft_lr:g} cosine
  ({args.new_lr_scale:g}× that for the new TRA / positional-embedding parameters), the same
  batches in the same order, starting from the trained original; TRA's queries start at zero, and the patched
  models get the learnable (1, f, C) positional embedding after pruning (as the official HoT MixSTE).
- Time per phase (s): {", ".join(f"{k} {v:.0f}" for k, v in clock.phases.items())}.
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    print(text)
    if args.json:
        write_text(args.json, json.dumps({"rows": rows, "test_data_rows": other_rows,
                                               "merge_rows": [results[k] for k in merge_order],
                                               "merge_test_data_rows": [results_other[k] for k in merge_order]
                                               if other is not None else [],
                                               "merge_winners": [weighting, unmerge],
                                               "learning_curve": learning_curve, "pretrain": pretrain_history,
                                               "finetune": ft_history, "args": vars(args)}, indent=2, default=str))
    log.info("wrote %s (%.1f min)", out, total_min)
    return 0


if __name__ == "__main__":
    sys.exit(main())
