"""Plausibility of lifted 3D poses: bone lengths, left/right asymmetry, body size, warnings.

Poses are Human3.6M-17, camera frame (x right, y down, z forward), in metres (what models
trained on Human3.6M or the shared clips output); every length reported is in millimetres.
A real body keeps its bone lengths over time and its halves alike; a lift that went wrong
(a wrong input convention, a model that never learned) shows as bones that stretch from frame
to frame, halves of different size, or a body collapsed into a line (:func:`pose_warnings`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BONES", "H36M_PARENTS", "pose_summary", "pose_warnings"]

#: Kinematic parent of each Human3.6M-17 joint (-1: the pelvis, the root).
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
#: Bone name -> (right joint, left joint) for paired bones, or (joint,) for the centre ones;
#: a bone joins a joint to its parent.
BONES: dict[str, tuple[int, ...]] = {
    "hip": (1, 4), "thigh": (2, 5), "shin": (3, 6),
    "shoulder": (14, 11), "upper arm": (15, 12), "forearm": (16, 13),
    "lower spine": (7,), "upper spine": (8,), "neck": (9,), "head": (10,),
}
#: Warn when a bone's length varies more than this (std / mean) over the frames.
MAX_BONE_SPREAD = 0.2
#: Warn when left and right differ more than this (|L - R| / mean).
MAX_ASYMMETRY = 0.2
#: Warn when the body's horizontal extent is below this fraction of its height.
MIN_WIDTH_RATIO = 0.12
#: Warn when the stature (head-to-ankle bone chain) lies outside this range (mm).
STATURE_MM = (1000.0, 2500.0)
#: Each paired bone's usual share of the stature (mean of Human3.6M's and the Bandai-Namco
#: skeleton's); a bone outside BONE_RATIO_RANGE times its share is absurd.
BONE_SHARE = {"hip": 0.065, "thigh": 0.285, "shin": 0.29, "shoulder": 0.085, "upper arm": 0.175, "forearm": 0.16}
BONE_RATIO_RANGE = (0.4, 2.5)
#: The bones of the head-to-ankle chain whose lengths add up to the stature (a leg: the mean of both).
_CHAIN = ((10,), (9,), (8,), (7,), (2, 5), (3, 6))


def _bone(poses: np.ndarray, joint: int) -> np.ndarray:
    return np.linalg.norm(poses[:, joint] - poses[:, H36M_PARENTS[joint]], axis=-1) * 1000.0


def pose_summary(poses: np.ndarray) -> dict[str, Any]:
    """Bone lengths (mean, sd over frames; right/left for paired bones), the left/right
    asymmetry of each pair (%), the body's median width (horizontal extent, the larger of x and
    depth) and height (vertical extent), and its stature (the median length of the bone chain
    from the head down the spine and a leg to the ankle, whatever the pose), all in mm."""
    p = np.asarray(poses, dtype=np.float64)
    bones: dict[str, Any] = {}
    for name, joints in BONES.items():
        lengths = [_bone(p, j) for j in joints]
        entry: dict[str, Any] = {}
        for side, values in zip(("right", "left") if len(joints) == 2 else ("centre",), lengths):
            entry[side] = {"mean_mm": float(values.mean()), "sd_mm": float(values.std())}
        if len(joints) == 2:
            r, left = entry["right"]["mean_mm"], entry["left"]["mean_mm"]
            entry["asymmetry_pct"] = 100.0 * abs(r - left) / ((r + left) / 2) if r + left > 0 else 0.0
        bones[name] = entry
    extent = p.max(axis=1) - p.min(axis=1)  # (T, 3)
    stature = sum(np.mean([_bone(p, j) for j in joints], axis=0) for joints in _CHAIN)
    return {
        "units": "mm",
        "frames": len(p),
        "finite": bool(np.isfinite(p).all()),
        "bones": bones,
        "width_mm": float(np.median(np.maximum(extent[:, 0], extent[:, 2])) * 1000.0),
        "height_mm": float(np.median(extent[:, 1]) * 1000.0),
        "stature_mm": float(np.median(stature)),
    }


def pose_warnings(summary: dict[str, Any]) -> list[str]:
    """One line per implausible property of a :func:`pose_summary`."""
    if not summary["finite"]:
        return ["the 3D poses hold NaN or infinite values: the model or its input is broken"]
    out = []
    width, height = summary["width_mm"], summary["height_mm"]
    if height <= 1.0:
        out.append(f"the 3D body is {height:.1f} mm tall: the poses are (nearly) all at the root; the model may be "
                   "untrained or its input convention wrong")
    elif width < MIN_WIDTH_RATIO * height:
        out.append(f"degenerate 3D poses: the body is {width:.0f} mm wide and {height:.0f} mm tall (median over "
                   "frames), nearly a vertical line in every frame; check the input convention (--normalize, "
                   "--size) and the checkpoint")
    stretchy = [f"{name} {side} ({v['sd_mm'] / v['mean_mm']:.0%})" for name, bone in summary["bones"].items()
                for side, v in bone.items() if isinstance(v, dict) and v["mean_mm"] > 0
                and v["sd_mm"] > MAX_BONE_SPREAD * v["mean_mm"]]
    if stretchy:
        out.append(f"bone lengths vary over time (sd / mean above {MAX_BONE_SPREAD:.0%}): {', '.join(stretchy[:6])}; "
                   "a real body keeps them")
    stature = summary.get("stature_mm", 0.0)
    lo, hi = STATURE_MM
    if height > 1.0 and not lo <= stature <= hi:
        out.append(f"the 3D body is {stature / 1000:.2f} m tall (head-to-ankle bone chain), outside a person's "
                   f"{lo / 1000:.1f}-{hi / 1000:.1f} m: the model may be untrained or its input convention wrong "
                   "(--normalize, --size)")
    if stature > 0:
        absurd = []
        for name, share in BONE_SHARE.items():
            for side, v in summary["bones"][name].items():
                ratio = v["mean_mm"] / stature / share if isinstance(v, dict) else 1.0
                if not BONE_RATIO_RANGE[0] <= ratio <= BONE_RATIO_RANGE[1]:
                    absurd.append(f"{name} {side} {v['mean_mm']:.0f} mm ({v['mean_mm'] / stature:.0%} of the stature, "
                                  f"usually {share:.0%})")
        if absurd:
            out.append(f"absurd bone proportions: {', '.join(absurd[:4])}; a real body is not built so")
    lopsided = [f"{name} ({bone['asymmetry_pct']:.0f}%)" for name, bone in summary["bones"].items()
                if bone.get("asymmetry_pct", 0.0) > 100 * MAX_ASYMMETRY]
    if lopsided:
        out.append(f"left and right differ by more than {MAX_ASYMMETRY:.0%}: {', '.join(lopsided)}")
    return out
