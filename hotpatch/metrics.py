"""Pose errors: MPJPE (P1), P-MPJPE (P2), MPJVE, also split into frames a pruner kept / dropped.

Poses are (..., J, 3) torch tensors or numpy arrays; for MPJVE the time axis is the one before
the joints, (..., T, J, 3). ``frame_*`` functions return one error per frame in the input's type
(differentiable for tensors); ``mpjpe`` / ``p_mpjpe`` / ``mpjve`` return a float mean in the input
units; :func:`evaluate` returns all of them, optionally split by a selected-frame mask (the HoT
paper's Tables 4 and 5), e.g. in millimetres with ``scale=M_TO_MM``.

Masks are boolean (..., T): ``valid`` marks real frames (False on edge padding; ignored
frames count nowhere), ``selected`` marks frames the pruner kept (the rest are "pruned").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from hotpatch.data import DataShapeError

__all__ = [
    "M_TO_MM",
    "SplitErrors",
    "evaluate",
    "frame_mpjpe",
    "frame_mpjve",
    "frame_p_mpjpe",
    "mpjpe",
    "mpjve",
    "p_mpjpe",
    "procrustes_align",
    "selection_mask",
    "split_by_selection",
    "to_mm",
]

M_TO_MM = 1000.0
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
Array = np.ndarray | torch.Tensor


def to_mm(value_m: float) -> float:
    """Metres → millimetres."""
    return value_m * M_TO_MM


def _tensor(x: Array) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _like(x: torch.Tensor, ref: Array) -> Array:
    return x if isinstance(ref, torch.Tensor) else x.detach().cpu().numpy()


def _check_pair(pred: Array, target: Array) -> None:
    if tuple(pred.shape) != tuple(target.shape) or len(pred.shape) < 2:
        raise DataShapeError(
            f"pred has shape {tuple(pred.shape)} and target {tuple(target.shape)}; expected equal shapes (..., J, D)."
        )


def frame_mpjpe(pred: ArrayT, target: ArrayT) -> ArrayT:
    """Mean Euclidean joint error per frame: (..., J, D) → (...,)."""
    _check_pair(pred, target)
    p = _tensor(pred)
    t = _tensor(target).to(p.device)
    return _like(torch.linalg.vector_norm(p - t, dim=-1).mean(-1), pred)


def procrustes_align(pred: ArrayT, target: ArrayT) -> ArrayT:
    """``pred`` (..., J, D) moved onto ``target`` by the per-frame similarity transform
    (rotation, uniform scale, translation) with least squared error. Reflections are never used.
    Computed in float64, returned in ``pred``'s dtype.
    """
    _check_pair(pred, target)
    p = _tensor(pred).double()
    t = _tensor(target).double().to(p.device)
    mu_p, mu_t = p.mean(-2, keepdim=True), t.mean(-2, keepdim=True)
    p0, t0 = p - mu_p, t - mu_t
    norm_p = torch.linalg.matrix_norm(p0).clamp_min(1e-12)[..., None, None]
    norm_t = torch.linalg.matrix_norm(t0)[..., None, None]
    p0, t0 = p0 / norm_p, t0 / norm_t.clamp_min(1e-12)
    u, s, vh = torch.linalg.svd(p0.transpose(-1, -2) @ t0)  # cross-covariance, D x D
    # Best rotation is u @ vh; if that is a reflection, flip the weakest singular direction.
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(s)
    d[..., -1] = sign
    rotation = (u * d[..., None, :]) @ vh
    scale = (s * d).sum(-1)[..., None, None]
    aligned = scale * norm_t * (p0 @ rotation) + mu_t
    return _like(aligned.to(_tensor(pred).dtype), pred)


def frame_p_mpjpe(pred: ArrayT, target: ArrayT) -> ArrayT:
    """Per-frame MPJPE after Procrustes alignment (P2): (..., J, D) → (...,)."""
    return frame_mpjpe(procrustes_align(pred, target), target)


def frame_mpjve(pred: ArrayT, target: ArrayT) -> ArrayT:
    """Per-frame velocity error: MPJPE of first differences in time, (..., T, J, D) → (..., T - 1).

    Entry ``t - 1`` is the error of the velocity from frame ``t - 1`` to frame ``t``.
    """
    _check_pair(pred, target)
    if len(pred.shape) < 3 or pred.shape[-3] < 2:
        raise DataShapeError(f"MPJVE needs (..., T, J, D) with T >= 2; got shape {tuple(pred.shape)}.")
    p, t = _tensor(pred), _tensor(target)
    return _like(frame_mpjpe(p[..., 1:, :, :] - p[..., :-1, :, :], t[..., 1:, :, :] - t[..., :-1, :, :]), pred)


def _mask(mask: Array | None, shape: tuple[int, ...], name: str) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    m = _tensor(mask).cpu()
    try:
        return torch.broadcast_to(m.bool(), shape)
    except RuntimeError as e:
        raise DataShapeError(
            f"{name} mask has shape {tuple(m.shape)}; expected a boolean mask broadcastable to the frames {shape}."
        ) from e


def _velocity_masks(valid: Array | None, selected: Array | None, shape: tuple[int, ...]) -> tuple:
    """Masks of the velocity errors of a (..., T) frame layout: a velocity is valid if both its
    frames are, and selected if its later frame is."""
    v = _mask(valid, shape, "valid")
    s = None if selected is None else _mask(selected, shape, "selected")[..., 1:]
    return v[..., 1:] & v[..., :-1], s


def _mean(errors: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    n = int(mask.sum())
    return (float(errors.detach().cpu().double()[mask].mean()) if n else float("nan")), n


def mpjpe(pred: Array, target: Array, valid: Array | None = None) -> float:
    """MPJPE (P1) over the valid frames, in the input units."""
    e = _tensor(frame_mpjpe(pred, target))
    return _mean(e, _mask(valid, tuple(e.shape), "valid"))[0]


def _valid_p_mpjpe(pred: Array, target: Array, valid: torch.Tensor) -> torch.Tensor:
    """Per-frame P-MPJPE computed on the valid frames only (an SVD each), zero elsewhere."""
    _check_pair(pred, target)
    p = _tensor(pred)
    t = _tensor(target).to(p.device)
    errors = torch.zeros(valid.shape, dtype=torch.float64)
    errors[valid] = frame_p_mpjpe(p[valid.to(p.device)], t[valid.to(p.device)]).detach().double().cpu()
    return errors


def p_mpjpe(pred: Array, target: Array, valid: Array | None = None) -> float:
    """P-MPJPE (P2, per-frame Procrustes-aligned MPJPE) over the valid frames, in the input units."""
    v = _mask(valid, tuple(pred.shape[:-2]), "valid")
    return _mean(_valid_p_mpjpe(pred, target, v), v)[0]


def mpjve(pred: Array, target: Array, valid: Array | None = None) -> float:
    """MPJVE over (..., T, J, 3): mean velocity error (per frame step) of velocities between valid frames."""
    e = _tensor(frame_mpjve(pred, target))
    v, _ = _velocity_masks(valid, None, tuple(pred.shape[:-2]))
    return _mean(e, v)[0]


@dataclass(frozen=True)
class SplitErrors:
    """Mean error over all valid frames, over the selected ones and over the pruned ones, with counts.
    ``all == (n_selected * selected + n_pruned * pruned) / n_all`` (NaN for an empty group)."""

    all: float
    selected: float
    pruned: float
    n_all: int
    n_selected: int
    n_pruned: int


def split_by_selection(errors: Array, selected: Array, valid: Array | None = None) -> SplitErrors:
    """Split per-frame errors (...,) into frames kept by the pruner (``selected``) and the rest."""
    e = _tensor(errors)
    shape = tuple(e.shape)
    v, s = _mask(valid, shape, "valid"), _mask(selected, shape, "selected")
    (a, n), (sel, n_sel), (pru, n_pru) = _mean(e, v), _mean(e, v & s), _mean(e, v & ~s)
    return SplitErrors(a, sel, pru, n, n_sel, n_pru)


def selection_mask(indices: Array, frames: int) -> torch.Tensor:
    """Indices of kept frames (..., f) → boolean mask (..., frames), e.g. from TPC's top-f."""
    idx = _tensor(indices).long().cpu()
    if idx.numel() and (idx.min() < 0 or idx.max() >= frames):
        raise DataShapeError(
            f"selected frame indices span {int(idx.min())}..{int(idx.max())}; expected 0..{frames - 1}."
        )
    return torch.zeros(tuple(idx.shape[:-1]) + (frames,), dtype=torch.bool).scatter_(-1, idx, True)


def evaluate(
    pred: Array,
    target: Array,
    *,
    valid: Array | None = None,
    selected: Array | None = None,
    scale: float = 1.0,
) -> dict[str, float]:
    """MPJPE, P-MPJPE and MPJVE of (..., T, J, 3) poses, multiplied by ``scale`` (``M_TO_MM`` for mm).

    Keys: ``mpjpe``, ``p_mpjpe``, ``mpjve`` (when T >= 2), ``frames``; with ``selected``, also
    ``<metric>_selected`` / ``<metric>_pruned`` and ``frames_selected`` / ``frames_pruned``.
    """
    _check_pair(pred, target)
    shape = tuple(pred.shape[:-2])
    out: dict[str, float] = {}
    per_frame = {"mpjpe": (frame_mpjpe(pred, target), valid, selected),
                 "p_mpjpe": (_valid_p_mpjpe(pred, target, _mask(valid, shape, "valid")), valid, selected)}
    if len(shape) >= 1 and shape[-1] >= 2:
        v, s = _velocity_masks(valid, selected, shape)
        per_frame["mpjve"] = (frame_mpjve(pred, target), v, s)
    for name, (errors, v, s) in per_frame.items():
        split = split_by_selection(errors, s if s is not None else True, v)
        out[name] = split.all * scale
        if name == "mpjpe":
            out["frames"] = split.n_all
        if selected is not None:
            out[f"{name}_selected"] = split.selected * scale
            out[f"{name}_pruned"] = split.pruned * scale
            if name == "mpjpe":
                out["frames_selected"], out["frames_pruned"] = split.n_selected, split.n_pruned
    return out
