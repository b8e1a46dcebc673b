"""2D joint layouts that detectors write, and how each becomes Human3.6M-17.

Several layouts share a joint count (17: COCO-17, PoseTrack-17 and Human3.6M-17; 25: OpenPose
BODY_25 and BODY_25B), so a reader names the layout where the file says it (joint names, a
layout name) or where the content tells (:mod:`hotpatch.keypoints.order`); :func:`layout_for`
gives the usual one for a count.

* ``coco17`` — COCO-17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles; left
  before right). It has no pelvis, neck or head-top joint: pelvis = mean of the hips, thorax =
  mean of the shoulders, spine = mean of pelvis and thorax, neck/nose = the nose, head = mean
  of the eyes.
* ``posetrack17`` — PoseTrack's COCO variant: joints 1 and 2 are the bottom and top of the head
  instead of the eyes; head = head top.
* ``halpe26`` — AlphaPose's default Halpe-26 (and MMPose/RTMPose ``body8-halpe26``): COCO-17
  then head (17), neck (18), hip (19) and six foot points. Its own joints are used: pelvis =
  hip (19), thorax = neck (18), head = head (17).
* ``halpe136`` / ``wholebody133`` — the 26 Halpe joints / COCO-17, then feet, face and hands
  (ignored).
* ``body25`` — OpenPose BODY_25: nose, neck (1), shoulders/elbows/wrists (right first), mid-hip
  (8), hips/knees/ankles, eyes, ears, feet. pelvis = mid-hip, thorax = neck, head = mean of the eyes.
* ``body25b`` — OpenPose's experimental BODY_25B: COCO-17, upper neck (17), head top (18), feet.
* ``coco18`` — OpenPose's COCO model: nose, neck, then the BODY_25 limbs without the mid-hip.
* ``mediapipe33`` — MediaPipe / BlazePose: nose, eye and ear points, mouth, shoulders (11, 12),
  elbows, wrists, hand points, hips (23, 24), knees, ankles, feet; trunk derived as for COCO-17.
* ``h36m17`` — Human3.6M-17 itself.

The limbs map one to one. A derived joint is the mean of its sources (missing if one is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hotpatch.errors import DataError

__all__ = ["LAYOUTS", "JointLayout", "layout_for", "to_h36m"]

#: Human3.6M-17 limb joints in order: right hip, knee, ankle; left hip, knee, ankle; left
#: shoulder, elbow, wrist; right shoulder, elbow, wrist.
_LIMB_JOINTS = (1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16)
#: The same limbs in COCO-17 order (the first 17 joints of several layouts).
_COCO_LIMBS = (12, 14, 16, 11, 13, 15, 5, 7, 9, 6, 8, 10)


@dataclass(frozen=True)
class JointLayout:
    """A detector's joint order: its name, joint count and, per Human3.6M-17 joint, the
    source joints it is the mean of."""

    name: str
    joints: int
    sources: tuple[tuple[int, ...], ...]
    description: str


def _sources(limbs: tuple[int, ...], pelvis: tuple[int, ...], thorax: tuple[int, ...], nose: tuple[int, ...],
             head: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    trunk = {0: pelvis, 7: pelvis + thorax, 8: thorax, 9: nose, 10: head}  # spine: pelvis and thorax alike
    one = dict(zip(_LIMB_JOINTS, limbs))
    return tuple(trunk[j] if j in trunk else (one[j],) for j in range(17))


_COCO = _sources(_COCO_LIMBS, pelvis=(11, 12), thorax=(5, 6), nose=(0,), head=(1, 2))
_HALPE = _sources(_COCO_LIMBS, pelvis=(19,), thorax=(18,), nose=(0,), head=(17,))
_OPENPOSE_LIMBS = (9, 10, 11, 12, 13, 14, 5, 6, 7, 2, 3, 4)

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout for layout in (
        JointLayout("coco17", 17, _COCO, "COCO-17"),
        JointLayout("halpe26", 26, _HALPE, "Halpe-26 (AlphaPose, RTMPose body8-halpe26)"),
        JointLayout("wholebody133", 133, _COCO, "COCO-WholeBody-133 (MMPose/RTMPose wholebody)"),
        JointLayout("halpe136", 136, _HALPE, "Halpe-136 (AlphaPose full body)"),
        JointLayout("body25", 25, _sources(_OPENPOSE_LIMBS, pelvis=(8,), thorax=(1,), nose=(0,), head=(15, 16)),
                    "OpenPose BODY_25"),
        JointLayout("coco18", 18, _sources((8, 9, 10, 11, 12, 13, 5, 6, 7, 2, 3, 4), pelvis=(8, 11), thorax=(1,),
                                           nose=(0,), head=(14, 15)), "OpenPose COCO-18"),
        JointLayout("mediapipe33", 33, _sources((24, 26, 28, 23, 25, 27, 11, 13, 15, 12, 14, 16), pelvis=(23, 24),
                                                thorax=(11, 12), nose=(0,), head=(2, 5)), "MediaPipe Pose-33"),
        JointLayout("body25b", 25, _sources(_COCO_LIMBS, pelvis=(11, 12), thorax=(5, 6), nose=(0,), head=(18,)),
                    "OpenPose BODY_25B"),
        JointLayout("posetrack17", 17, _sources(_COCO_LIMBS, pelvis=(11, 12), thorax=(5, 6), nose=(0,), head=(2,)),
                    "PoseTrack-17"),
        JointLayout("h36m17", 17, tuple((j,) for j in range(17)), "Human3.6M-17"),
    )
}
#: The layout a joint count means when nothing else says (the first of each count above).
_BY_COUNT: dict[int, JointLayout] = {}
for _layout in LAYOUTS.values():
    _BY_COUNT.setdefault(_layout.joints, _layout)


def layout_for(joints: int, where: str = "keypoints") -> JointLayout:
    """The usual layout with ``joints`` joints, else a ``DataError`` listing the ones read."""
    layout = _BY_COUNT.get(int(joints))
    if layout is None:
        known = ", ".join(f"{n.joints} ({n.description})" for n in _BY_COUNT.values())
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
