"""MixSTE's training losses: weighted MPJPE + temporal consistency (TCLoss) + velocity (MPJVE).

MixSTE (Zhang et al., CVPR 2022) trains with ``L = L_wmpjpe + 0.5 · L_tc + 2.0 · L_vel``:

* ``L_wmpjpe`` — mean over frames and joints of ``w_j · ||pred - target||``, with per-joint
  weights :data:`H36M_JOINT_WEIGHTS` (feet, wrists and elbows count more);
* ``L_tc`` — mean over consecutive frame pairs, joints and coordinates of
  ``w_j · (pred_t - pred_{t-1})²`` (the prediction alone: it penalises jitter);
* ``L_vel`` — mean over frame pairs and joints of ``||Δpred - Δtarget||`` (MPJVE).

The HoT paper trains its MixSTE models with the same losses. Poses are (B, T, J, 3). Every
loss takes an optional ``valid`` (B, T) mask (False on edge padding): a frame term counts if
its frame is valid, a pair term if both frames are. :func:`loss_sums` returns the sums and
counts behind each mean, which lets a distributed run normalise by the global count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hotpatch.errors import DataError

__all__ = [
    "H36M_JOINT_WEIGHTS",
    "TC_WEIGHT",
    "VELOCITY_WEIGHT",
    "LossTerms",
    "combine",
    "loss_sums",
    "mixste_loss",
    "temporal_consistency",
    "velocity_error",
    "weighted_mpjpe",
]

#: MixSTE's per-joint weights of the Human3.6M-17 joints (hip, RHip, RKnee, RFoot, LHip, LKnee,
#: LFoot, Spine, Thorax, Neck, Head, LShoulder, LElbow, LWrist, RShoulder, RElbow, RWrist).
H36M_JOINT_WEIGHTS: tuple[float, ...] = (1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4)
#: MixSTE's weights of the temporal consistency and velocity terms.
TC_WEIGHT = 0.5
VELOCITY_WEIGHT = 2.0

_TERMS = ("wmpjpe", "tc", "velocity")


@dataclass
class LossTerms:
    """The total loss and its (unweighted) terms, as tensors."""

    total: torch.Tensor
    wmpjpe: torch.Tensor
    tc: torch.Tensor
    velocity: torch.Tensor


def _check(pred: torch.Tensor, target: torch.Tensor | None, valid: torch.Tensor | None) -> torch.Tensor:
    if pred.dim() != 4 or (target is not None and target.shape != pred.shape):
        got = tuple(pred.shape) if target is None else f"{tuple(pred.shape)} and {tuple(target.shape)}"
        raise DataError(f"losses got poses of shape {got}; expected equal (B, T, J, 3) tensors.")
    if valid is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if tuple(valid.shape) != tuple(pred.shape[:2]):
        raise DataError(f"valid mask has shape {tuple(valid.shape)}; expected (B, T) = {tuple(pred.shape[:2])}.")
    return valid.to(device=pred.device, dtype=torch.bool)


def _weights(weights: torch.Tensor | tuple[float, ...] | None, pred: torch.Tensor) -> torch.Tensor:
    j = pred.shape[-2]
    if weights is None:
        weights = H36M_JOINT_WEIGHTS if j == len(H36M_JOINT_WEIGHTS) else (1.0,) * j
    w = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    if w.shape != (j,):
        raise DataError(f"joint weights have shape {tuple(w.shape)}; expected ({j},), one per joint.")
    return w


def loss_sums(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    weights: torch.Tensor | tuple[float, ...] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{term: (sum, count)}`` of the three MixSTE terms; each loss is ``sum / count``.

    Counts are element counts of the mean (frames·joints, pairs·joints·3, pairs·joints) as
    float tensors. With T == 1 the two temporal terms are (0, 0).
    """
    v = _check(pred, target, valid)
    w = _weights(weights, pred)
    j = pred.shape[-2]
    fv = v.to(pred.dtype)
    err = torch.linalg.vector_norm(pred - target, dim=-1)  # (B, T, J)
    sums = {"wmpjpe": (((err * w).sum(-1) * fv).sum(), fv.sum() * j)}
    if pred.shape[1] >= 2:
        pv = (v[:, 1:] & v[:, :-1]).to(pred.dtype)
        dp = pred[:, 1:] - pred[:, :-1]
        dt = target[:, 1:] - target[:, :-1]
        tc = (dp.square().sum(-1) * w).sum(-1)
        vel = torch.linalg.vector_norm(dp - dt, dim=-1).sum(-1)
        sums["tc"] = ((tc * pv).sum(), pv.sum() * j * pred.shape[-1])
        sums["velocity"] = ((vel * pv).sum(), pv.sum() * j)
    else:
        zero = pred.sum() * 0
        sums["tc"] = (zero, zero.detach())
        sums["velocity"] = (zero, zero.detach())
    return sums


def _mean(s: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return s / n.clamp_min(1)


def weighted_mpjpe(pred: torch.Tensor, target: torch.Tensor, weights=None, valid=None) -> torch.Tensor:
    """Mean of ``w_j · ||pred - target||`` over valid frames and joints (MixSTE's ``weighted_mpjpe``)."""
    return _mean(*loss_sums(pred, target, valid, weights)["wmpjpe"])


def temporal_consistency(pred: torch.Tensor, weights=None, valid=None) -> torch.Tensor:
    """Mean of ``w_j · (pred_t - pred_{t-1})²`` over valid frame pairs, joints and coordinates (TCLoss)."""
    return _mean(*loss_sums(pred, pred.detach(), valid, weights)["tc"])


def velocity_error(pred: torch.Tensor, target: torch.Tensor, valid=None) -> torch.Tensor:
    """Mean of ``||Δpred - Δtarget||`` over valid frame pairs and joints (MPJVE as a loss)."""
    return _mean(*loss_sums(pred, target, valid)["velocity"])


def combine(
    sums: dict[str, tuple[torch.Tensor, torch.Tensor]],
    tc_weight: float = TC_WEIGHT,
    velocity_weight: float = VELOCITY_WEIGHT,
    counts: dict[str, torch.Tensor] | None = None,
) -> LossTerms:
    """Turn :func:`loss_sums` into :class:`LossTerms`; ``counts`` replaces the denominators
    (a distributed run passes global count / world size)."""
    terms = {k: _mean(s, (counts or {}).get(k, n)) for k, (s, n) in sums.items()}
    total = terms["wmpjpe"] + tc_weight * terms["tc"] + velocity_weight * terms["velocity"]
    return LossTerms(total=total, **terms)


def mixste_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    weights: torch.Tensor | tuple[float, ...] | None = None,
    tc_weight: float = TC_WEIGHT,
    velocity_weight: float = VELOCITY_WEIGHT,
) -> LossTerms:
    """MixSTE's loss: ``weighted_mpjpe + tc_weight · TCLoss + velocity_weight · MPJVE``."""
    return combine(loss_sums(pred, target, valid, weights), tc_weight, velocity_weight)
