"""2D keypoint files as detectors write them, turned into Human3.6M-17 tracks, one per person.

Formats (``detect_format`` tells them by content; ``format=`` / ``--format`` overrides):

* ``openpose`` — OpenPose ``--write_json`` output: a folder of per-frame ``*_keypoints.json`` or
  one of them (BODY_25, BODY_25B, COCO-18; :mod:`~hotpatch.keypoints.openpose`);
* ``coco`` / ``alphapose`` / ``mmpose`` — detector result lists (:mod:`~hotpatch.keypoints.results`);
* ``annotations`` — COCO / PoseTrack / MMPose annotation files with ``images`` and
  ``annotations`` (:mod:`~hotpatch.keypoints.annotations`);
* ``mediapipe`` — MediaPipe Pose landmark dumps, 33 joints, normalised (:mod:`~hotpatch.keypoints.mediapipe`);
* ``videopose3d`` / ``array`` — VideoPose3D's ``data_2d_custom`` npz and plain (T, J, 2|3) arrays
  (:mod:`~hotpatch.keypoints.arrays`).

Every reader gives the file's detections by frame in its own joint layout
(:mod:`hotpatch.joint_layouts`); undetected joints (``0, 0, 0``, NaN) are missing, never places.
:func:`read_people` then numbers the video's frames (:mod:`~hotpatch.keypoints.frames`), tells
people apart (the file's track ids, else :mod:`~hotpatch.keypoints.tracking`), maps each chosen
person to Human3.6M-17 and fills missing frames and joints by interpolation over time.
:func:`read_keypoints` is the one-person form.
"""

from __future__ import annotations

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, to_h36m
from hotpatch.keypoints.frames import COMMON_SIZES, FRAME_NUMBERS, fill_gaps, frame_size, outside_frame
from hotpatch.keypoints.model import Detection, Detections
from hotpatch.keypoints.read import (FORMATS, KeypointTrack, check_keypoint_file, detect_format, load_detections,
                                     read_keypoints, read_people)

__all__ = ["COCO_TO_H36M", "COMMON_SIZES", "FORMATS", "FRAME_NUMBERS", "Detection", "Detections", "KeypointTrack",
           "check_keypoint_file", "coco_to_h36m", "detect_format", "fill_gaps", "frame_size", "load_detections",
           "outside_frame", "read_keypoints", "read_people"]

COCO_JOINTS = 17
#: Human3.6M-17 joint -> the COCO-17 joints it is the mean of.
COCO_TO_H36M = LAYOUTS["coco17"].sources


def coco_to_h36m(coco: np.ndarray) -> np.ndarray:
    """(..., 17, C) COCO-17 joints (any channels: x, y, score) -> (..., 17, C) Human3.6M-17."""
    coco = np.asarray(coco, dtype=np.float64)
    if coco.shape[-2] != COCO_JOINTS:
        raise DataError(f"COCO keypoints have {coco.shape[-2]} joints; expected {COCO_JOINTS}.")
    return to_h36m(coco, LAYOUTS["coco17"])
