"""Telling joint orders apart from the keypoints themselves, where the file does not name its layout.

* OpenPose's 25-joint models: BODY_25 puts a neck (1) between the shoulders (2, 5) and a mid-hip
  (8) between the hips (9, 12); BODY_25B's joints 1, 2, 5, 8, 9, 12 are an eye, an eye, a shoulder,
  an elbow, a wrist and a hip, far from any such midpoint.
* Arrays of 17 joints (a ``.npy`` saved by a script): Human3.6M-17 puts the pelvis (0) between the
  hips (1, 4), and its paired bones (thigh, shin, upper arm, forearm) come out alike on both sides;
  COCO-17 puts both eyes (1, 2) next to the nose (0). :func:`array_order` weighs both.

Each test works on the median over the detections where the joints it needs were found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotpatch.joint_layouts import LAYOUTS, JointLayout, to_h36m

__all__ = ["OrderEvidence", "array_order", "midpoint_residual", "openpose25_layout"]

#: A joint is "between" two others when it lies within this fraction of their distance of their midpoint.
BETWEEN = 0.25
#: (right, left) Human3.6M-17 bones (joint, parent) compared for left/right symmetry.
_PAIRED = (((2, 1), (5, 4)), ((3, 2), (6, 5)), ((15, 14), (12, 11)), ((16, 15), (13, 12)))


def midpoint_residual(kp: np.ndarray, joint: int, a: int, b: int) -> float:
    """Median over rows of |kp[joint] - mid(kp[a], kp[b])| / |kp[a] - kp[b]| (NaN rows skipped;
    NaN if no row has all three)."""
    xy = np.asarray(kp, dtype=np.float64)[..., :2].reshape(-1, kp.shape[-2], 2)
    span = np.linalg.norm(xy[:, a] - xy[:, b], axis=-1)
    off = np.linalg.norm(xy[:, joint] - (xy[:, a] + xy[:, b]) / 2, axis=-1)
    ok = np.isfinite(off) & (span > 1e-6)
    return float(np.median(off[ok] / span[ok])) if ok.any() else float("nan")


def openpose25_layout(kp: np.ndarray) -> tuple[JointLayout, str]:
    """BODY_25 or BODY_25B for (N, 25, 3) OpenPose keypoints, and how it was told."""
    residuals = [r for r in (midpoint_residual(kp, 1, 2, 5), midpoint_residual(kp, 8, 9, 12)) if np.isfinite(r)]
    if not residuals:
        return LAYOUTS["body25"], "joint count (25: BODY_25; too few joints to check, pass --layout body25b if not)"
    worst = max(residuals)
    if worst <= BETWEEN:
        return LAYOUTS["body25"], "the content (neck and mid-hip lie between the shoulders and the hips: BODY_25)"
    return LAYOUTS["body25b"], (f"the content (joints 1 and 8 are not between 2/5 and 9/12, off by {worst:.0%} of "
                                "their distance: not BODY_25, read as BODY_25B)")


@dataclass(frozen=True)
class OrderEvidence:
    """What (T, 17, 2|3) keypoints say about their order: ``pelvis_off`` how far joint 0 is from the
    midpoint of joints 1 and 4 (Human3.6M: ~0); ``eyes_off`` the distance of joints 1 and 2 from
    joint 0 over the torso length read as COCO (COCO: small); ``asymmetry_h36m`` /
    ``asymmetry_coco`` the median left/right difference of paired bones read either way."""

    pelvis_off: float
    eyes_off: float
    asymmetry_h36m: float
    asymmetry_coco: float

    @property
    def looks_coco(self) -> bool:
        return (self.eyes_off < 0.3 and not self.pelvis_off <= BETWEEN
                and not self.asymmetry_coco >= self.asymmetry_h36m)

    def describe(self) -> str:
        return (f"joint 0 lies {self.pelvis_off:.0%} of the hip width off the hips' midpoint (Human3.6M: about 0); "
                f"joints 1 and 2 lie within {self.eyes_off:.0%} of the torso of joint 0 (COCO's eyes beside the "
                f"nose); left/right bones differ by {self.asymmetry_h36m:.0%} read as Human3.6M-17, "
                f"{self.asymmetry_coco:.0%} read as COCO-17")


def _asymmetry(h36m: np.ndarray) -> float:
    xy = h36m[..., :2]
    diffs = []
    for (rj, rp), (lj, lp) in _PAIRED:
        r = np.linalg.norm(xy[:, rj] - xy[:, rp], axis=-1)
        left = np.linalg.norm(xy[:, lj] - xy[:, lp], axis=-1)
        mean = (r + left) / 2
        ok = np.isfinite(mean) & (mean > 1e-6)
        if ok.any():
            diffs.append(np.median(np.abs(r[ok] - left[ok]) / mean[ok]))
    return float(np.median(diffs)) if diffs else float("nan")


def array_order(kp: np.ndarray) -> OrderEvidence:
    """The :class:`OrderEvidence` of (T, 17, C) keypoints whose order is not named."""
    kp = np.asarray(kp, dtype=np.float64)
    xy = kp[..., :2]
    torso = np.linalg.norm((xy[:, 11] + xy[:, 12]) / 2 - (xy[:, 5] + xy[:, 6]) / 2, axis=-1)
    eyes = (np.linalg.norm(xy[:, 1] - xy[:, 0], axis=-1) + np.linalg.norm(xy[:, 2] - xy[:, 0], axis=-1)) / 2
    ok = np.isfinite(eyes) & (torso > 1e-6)
    eyes_off = float(np.median(eyes[ok] / torso[ok])) if ok.any() else float("nan")
    return OrderEvidence(midpoint_residual(kp, 0, 1, 4), eyes_off, _asymmetry(kp),
                         _asymmetry(to_h36m(kp, LAYOUTS["coco17"])))
