"""Accuracy of a lifting model on a :class:`~hotpatch.data.WindowDataset`, in millimetres.

* seq2seq: every window's F predictions count, padded frames are ignored (use the default,
  non-overlapping windows so each frame counts once; with overlap the last window wins).
* seq2frame: each window predicts its centre frame; the model may return (B, 1, J, 3) (a
  seq2frame-patched model) or (B, F, J, 3) (its centre frame is taken).

Errors are MPJPE (P1), P-MPJPE (P2) and MPJVE, computed per sequence in time order (a velocity
only between consecutive frames of one sequence). For a patched model (one with a
``hotpatch_prune`` submodule) the frames the pruner kept are recorded with a forward hook and
the errors are also split into ``*_selected`` / ``*_pruned`` frames (the HoT paper's Tables 4
and 5). ``flip=True`` averages each prediction with the un-flipped prediction of the flipped
input (MixSTE's test-time augmentation); selection is taken from the unflipped pass.

:func:`compare_models` evaluates an original and a patched model side by side, with their
paper-convention FLOPs per clip (:func:`hotpatch.profile.profile`, counter ``"paper"``); a patched
model whose TRA never learned is evaluated with linear recovery instead (zero retraining, said in
a warning; ``recovery="as-is"`` keeps it). Under ``torchrun`` (``dist``: a
:class:`~hotpatch.distributed.DistContext`) each process predicts every ``world_size``-th window
and the predictions are gathered before scoring, so every rank gets the numbers of one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from hotpatch.data import WindowDataset, flip_pose
from hotpatch.distributed import DistContext, gather
from hotpatch.errors import ConfigError, DataError
from hotpatch.metrics import M_TO_MM, evaluate, selection_mask
from hotpatch.untrained import zero_retraining

log = logging.getLogger(__name__)

__all__ = [
    "Predictions",
    "compare_models",
    "evaluate_model",
    "merge_predictions",
    "paper_flops",
    "pipeline_of",
    "predict",
    "score",
    "untrained_recovery",
]

ProgressFn = Callable[[int, int], None]


def pipeline_of(model: nn.Module) -> str:
    """``"seq2frame"`` for a seq2frame-patched model, else ``"seq2seq"``."""
    cfg = getattr(model, "hotpatch_config", None) or {}
    return "seq2frame" if cfg.get("pipeline") == "seq2frame" else "seq2seq"


def untrained_recovery(model: nn.Module) -> bool:
    """True if ``model`` holds a TRA whose learnable queries are still all zero (never trained)."""
    from hotpatch.recover import TRA

    return any(isinstance(m, TRA) and not bool(m.queries.detach().any()) for m in _unwrap(model).modules())


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


@dataclass
class Predictions:
    """Per-window predictions of a model on a dataset, in dataset window order.

    ``poses``: (W, T, J, 3) float32 metres, T = F (seq2seq) or 1 (seq2frame: the centre frame).
    ``selected``: (W, F) bool frames kept by the pruner, or None for an unpatched model.
    ``windows``: the dataset window indices predicted.
    """

    poses: np.ndarray
    selected: np.ndarray | None
    windows: np.ndarray
    mode: str


class _SelectionRecorder:
    """Forward hook on the last pruning stage that keeps its kept-frame indices (B, f): the
    original frames whose tokens reach the recovery."""

    def __init__(self, model: nn.Module) -> None:
        from hotpatch.engine.rewrite import stage_pruners

        self.index: torch.Tensor | None = None
        stages = stage_pruners(_unwrap(model))
        self.handle = stages[-1][1].register_forward_hook(self._hook) if stages else None

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self.index = output[-1].detach()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _forward(model: nn.Module, x: torch.Tensor, flip: bool, recorder: _SelectionRecorder) -> tuple:
    recorder.index = None
    out = _first(model(x))
    index = recorder.index
    if flip and isinstance(out, torch.Tensor):
        out = (out + flip_pose(_first(model(flip_pose(x))))) / 2
    return out, index


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: WindowDataset,
    *,
    batch_size: int = 64,
    flip: bool = False,
    windows: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> Predictions:
    """Run ``model`` (in eval mode, restored afterwards) over the windows of ``dataset``.

    The dataset should not flip windows itself (``flip_prob=0``). ``windows`` picks a subset
    of window indices (default: all). ``progress(done, total)`` is called after each batch.
    """
    if dataset.flip_prob > 0:
        raise ConfigError(
            f"the evaluation dataset flips windows at random (flip_prob={dataset.flip_prob}); "
            "expected flip_prob=0. Use flip=True for test-time flip augmentation instead."
        )
    idx = np.arange(len(dataset)) if windows is None else np.asarray(windows, dtype=np.int64)
    if len(idx) == 0:
        raise DataError("the evaluation dataset has no windows; expected at least one sequence.")
    was_training = model.training
    model.eval()
    device = _device_of(model)
    recorder = _SelectionRecorder(model)
    centre = dataset.frames // 2
    poses, selected = [], []
    try:
        for lo in range(0, len(idx), batch_size):
            batch = dataset.batch(idx[lo:lo + batch_size])
            out, index = _forward(model, batch["inputs"].to(device), flip, recorder)
            out = _output_tensor(out, len(batch["inputs"]), dataset.frames)
            if dataset.mode == "seq2frame":
                out = out[:, centre:centre + 1] if out.shape[1] == dataset.frames else out
            elif out.shape[1] != dataset.frames:
                raise DataError(
                    f"the model returned {out.shape[1]} frames for {dataset.frames}-frame seq2seq windows; "
                    "expected one prediction per input frame. Evaluate seq2frame models with mode='seq2frame'."
                )
            poses.append(out.float().cpu().numpy())
            if index is not None and dataset.mode == "seq2seq":
                selected.append(selection_mask(index.cpu(), dataset.frames).numpy())
            if progress is not None:
                progress(min(lo + batch_size, len(idx)), len(idx))
    finally:
        recorder.close()
        model.train(was_training)
    return Predictions(
        poses=np.concatenate(poses),
        selected=np.concatenate(selected) if selected else None,
        windows=idx,
        mode=dataset.mode,
    )


def merge_predictions(parts: list[Predictions]) -> Predictions:
    """Predictions of disjoint window subsets (one per process) as one, in window order."""
    windows = np.concatenate([p.windows for p in parts])
    order = np.argsort(windows, kind="stable")
    selected = None if parts[0].selected is None else np.concatenate([p.selected for p in parts])[order]
    return Predictions(np.concatenate([p.poses for p in parts])[order], selected, windows[order], parts[0].mode)


def _output_tensor(out: Any, batch: int, frames: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != batch or out.shape[-1] != 3:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"the model returned {shape}; expected 3D poses (B, {frames} or 1, J, 3) for a batch of {batch}."
        )
    return out


def score(dataset: WindowDataset, predictions: Predictions, *, scale: float = M_TO_MM) -> dict[str, float]:
    """MPJPE / P-MPJPE / MPJVE (and selected / pruned splits) of ``predictions`` on ``dataset``."""
    seq, t, pred, sel = _frame_rows(dataset, predictions)
    bounds = np.flatnonzero(np.diff(seq)) + 1
    target = np.concatenate([dataset.sequences[int(ss[0])].positions[tt]
                             for ss, tt in zip(np.split(seq, bounds), np.split(t, bounds))])
    # a gap row (valid=False) between rows that are not consecutive frames of one sequence, so
    # that velocities never span two sequences or skipped frames
    gap = np.concatenate([[0], ((seq[1:] != seq[:-1]) | (t[1:] != t[:-1] + 1)).astype(np.int64)])
    pos = np.arange(len(seq)) + np.cumsum(gap)

    def spread(rows: np.ndarray) -> torch.Tensor:
        full = np.zeros((int(pos[-1]) + 1,) + rows.shape[1:], rows.dtype)
        full[pos] = rows
        return torch.from_numpy(full)

    out = evaluate(spread(pred), spread(target.astype(np.float32)), valid=spread(np.ones(len(seq), bool)),
                   selected=None if sel is None else spread(sel), scale=scale)
    out["sequences"] = int(len(np.unique(seq)))
    return out


def _frame_rows(dataset: WindowDataset, predictions: Predictions) -> tuple:
    """One row per predicted real frame, sorted by (sequence, frame): sequence ids, frame
    indices, poses (N, J, 3) and the selected mask (or None). With overlapping windows the
    last window's prediction of a frame wins."""
    centre = dataset.frames // 2
    rows_seq, rows_t, rows_pred, rows_sel = [], [], [], []
    for k, w in enumerate(predictions.windows):
        s, start = (int(v) for v in dataset.windows[w])
        if predictions.mode == "seq2frame":
            t = np.array([start + centre])
            sel = None if predictions.selected is None else predictions.selected[k, centre:centre + 1]
        else:
            t = start + np.arange(dataset.frames)
            sel = None if predictions.selected is None else predictions.selected[k]
        keep = (t >= 0) & (t < len(dataset.sequences[s]))
        rows_seq.append(np.full(int(keep.sum()), s))
        rows_t.append(t[keep])
        rows_pred.append(predictions.poses[k][keep])
        if sel is not None:
            rows_sel.append(sel[keep])
    seq, t = np.concatenate(rows_seq), np.concatenate(rows_t)
    key = seq.astype(np.int64) * (1 << 32) + t
    _, last = np.unique(key[::-1], return_index=True)  # sorted by key, i.e. by (sequence, frame)
    order = len(key) - 1 - last
    sel = np.concatenate(rows_sel)[order] if rows_sel else None
    return seq[order], t[order], np.concatenate(rows_pred)[order], sel


def paper_flops(model: nn.Module, frames: int, joints: int = 17, channels: int = 2) -> int | None:
    """Paper-convention FLOPs (2 × MACs of Linear/Conv layers) of one forward on one clip."""
    from hotpatch.profile import profile

    device = _device_of(model)
    example = torch.zeros(1, frames, joints, channels, device=device)
    result = profile(model, example, counters=("paper",), fps=False, memory=False, device=device)
    return result.flops["paper"].value


def evaluate_model(
    model: nn.Module,
    dataset: WindowDataset,
    *,
    batch_size: int = 64,
    flip: bool = False,
    windows: np.ndarray | None = None,
    flops: bool = True,
    progress: ProgressFn | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Predict and score: a plain dict with ``mpjpe``, ``p_mpjpe``, ``mpjve`` (mm), ``frames``,
    ``*_selected`` / ``*_pruned`` for a patched model, ``flops`` (paper convention, per clip,
    if ``flops``; rank 0 only under ``dist``), ``pipeline``, ``flip`` and ``seconds``. ``dist``
    splits the windows across ``torchrun`` processes (see the module docstring)."""
    t0 = time.perf_counter()
    if dist is not None and dist.distributed:
        idx = np.arange(len(dataset)) if windows is None else np.asarray(windows, dtype=np.int64)
        mine = idx[dist.rank::dist.world_size]
        part = predict(model, dataset, batch_size=batch_size, flip=flip, windows=mine,
                       progress=progress) if len(mine) else None
        preds = merge_predictions([p for p in gather(part, dist) if p is not None])
    else:
        preds = predict(model, dataset, batch_size=batch_size, flip=flip, windows=windows, progress=progress)
    out: dict[str, Any] = {"pipeline": dataset.mode, "flip": flip, **score(dataset, preds)}
    out["windows"] = len(preds.windows)
    out["seconds"] = time.perf_counter() - t0
    if flops and (dist is None or dist.is_main):
        channels = dataset[0]["inputs"].shape[-1]
        out["flops"] = paper_flops(model, dataset.frames, channels=channels)
    return out


def compare_models(
    original: nn.Module,
    patched: nn.Module,
    sequences: list,
    *,
    frames: int | None = None,
    pipeline: str | None = None,
    batch_size: int = 64,
    flip: bool = False,
    stride: int | None = None,
    confidence: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    recovery: str = "parameter-free",
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Evaluate ``original`` and ``patched`` with the same windows (zero-retraining: weights as
    they are) and return ``{"original": {...}, "patched": {...}, "delta": {...}, "config": {...}}``.

    ``pipeline`` defaults to the patched model's: for seq2frame, both models are scored on the
    centre frame of every window. ``frames`` defaults to the patched model's F. ``delta``
    holds patched minus original for each error and the FLOPs change in percent. An untrained
    TRA is evaluated as linear recovery unless ``recovery="as-is"`` (``config["recovery_note"]``
    says which); ``dist`` splits the windows across ``torchrun`` processes.
    """
    cfg = dict(getattr(patched, "hotpatch_config", None) or {})
    frames = frames or cfg.get("frames")
    if not frames:
        raise ConfigError("compare_models needs frames=F (the patched model has no hotpatch_config['frames']).")
    mode = pipeline or pipeline_of(patched)
    patched, note = zero_retraining(patched, recovery)
    dataset = WindowDataset(sequences, frames, mode=mode, stride=stride, confidence=confidence)
    results: dict[str, Any] = {}
    for name, model in (("original", original), ("patched", patched)):
        cb = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        results[name] = evaluate_model(model, dataset, batch_size=batch_size, flip=flip, progress=cb, dist=dist)
    a, b = results["original"], results["patched"]
    delta = {k: b[k] - a[k] for k in ("mpjpe", "p_mpjpe", "mpjve") if k in a and k in b}
    if a.get("flops") and b.get("flops") is not None:
        delta["flops_pct"] = 100.0 * (b["flops"] - a["flops"]) / a["flops"]
    results["delta"] = delta
    results["config"] = {"frames": frames, "pipeline": mode, "windows": len(dataset), "flip": flip, **cfg,
                         **dict(getattr(patched, "hotpatch_config", None) or {})}
    if note:
        results["config"]["recovery_note"] = note
    return results
