"""2D joint layouts that detectors write, and how each becomes Human3.6M-17.

A layout is recognised by its joint count (:func:`layout_for`):

* ``coco17`` — COCO-17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles; left
  before right). It has no pelvis, neck or head-top joint: pelvis = mean of the hips, thorax =
  mean of the shoulders, spine = mean of pelvis and thorax, neck/nose = the nose, head = mean
  of the eyes.
* ``halpe26`` — AlphaPose's default Halpe-26 (and MMPose/RTMPose ``body8-halpe26``): COCO-17
  then head (17), neck (18), hip (19) and six foot points. Its own joints are used: pelvis =
  hip (19), thorax = neck (18), head = head (17), spine = mean of hip and neck.
* ``halpe136`` — AlphaPose's full-body Halpe-136: the 26 body joints above, then face and
  hands (ignored).
* ``wholebody133`` — COCO-WholeBody-133 (MMPose/RTMPose ``wholebody``, AlphaPose's whole-body
  model): COCO-17 then feet, face and hands (ignored); the trunk is derived as for COCO-17.

The limbs map one to one in every layout. A derived joint's score is the mean of its sources'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotpatch.errors import DataError

__all__ = ["LAYOUTS", "JointLayout", "layout_for", "to_h36m"]

#: Human3.6M-17 limb joints -> COCO-17 index (shared by every layout above).
_LIMBS = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}


@dataclass(frozen=True)
class JointLayout:
    """A detector's joint order: its name, joint count and, per Human3.6M-17 joint, the
    source joints it is the mean of."""

    name: str
    joints: int
    sources: tuple[tuple[int, ...], ...]
    description: str


def _sources(pelvis: tuple[int, ...], thorax: tuple[int, ...], head: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    trunk = {0: pelvis, 7: pelvis + thorax, 8: thorax, 9: (0,), 10: head}  # spine: pelvis and thorax alike
    return tuple(trunk[j] if j in trunk else (_LIMBS[j],) for j in range(17))


_COCO_TRUNK = _sources(pelvis=(11, 12), thorax=(5, 6), head=(1, 2))
_HALPE_TRUNK = _sources(pelvis=(19,), thorax=(18,), head=(17,))

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout for layout in (
        JointLayout("coco17", 17, _COCO_TRUNK, "COCO-17"),
        JointLayout("halpe26", 26, _HALPE_TRUNK, "Halpe-26 (AlphaPose, RTMPose body8-halpe26)"),
        JointLayout("wholebody133", 133, _COCO_TRUNK, "COCO-WholeBody-133 (MMPose/RTMPose wholebody)"),
        JointLayout("halpe136", 136, _HALPE_TRUNK, "Halpe-136 (AlphaPose full body)"),
    )
}
_BY_COUNT = {layout.joints: layout for layout in LAYOUTS.values()}


def layout_for(joints: int, where: str = "keypoints") -> JointLayout:
    """The layout with ``joints`` joints, else a ``DataError`` listing the ones read."""
    layout = _BY_COUNT.get(int(joints))
    if layout is None:
        known = ", ".join(f"{n.joints} ({n.description})" for n in LAYOUTS.values())
        raise DataError(f"{where} has {joints} joints per person; hotpatch reads {known}. Export the detector's "
                        "output in one of those layouts.")
    return layout


def to_h36m(keypoints: np.ndarray, layout: JointLayout | None = None) -> np.ndarray:
    """(..., J, C) keypoints in ``layout`` (default: by J) -> (..., 17, C) Human3.6M-17."""
    kp = np.asarray(keypoints, dtype=np.float64)
    layout = layout or layout_for(kp.shape[-2])
    if kp.shape[-2] != layout.joints:
        raise DataError(f"{layout.description} keypoints have {layout.joints} joints; got {kp.shape[-2]}.")
    return np.stack([kp[..., list(src), :].mean(axis=-2) for src in layout.sources], axis=-2)
