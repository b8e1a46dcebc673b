"""MediaPipe Pose (BlazePose) landmarks dumped to JSON: 33 landmarks per pose.

MediaPipe gives ``x, y`` as fractions of the frame's width and height (``z`` a relative depth,
ignored) and a ``visibility``. Dumps take several shapes; read are a JSON list with one entry
per frame — a list of 33 ``{"x", "y", "z"?, "visibility"?}`` landmarks, a list of such lists (the
Tasks API's several poses), or an object holding them under ``pose_landmarks``, ``landmarks``,
``landmark`` or ``keypoints`` with an optional ``frame`` / ``frame_id`` / ``frame_index`` —
an empty or null entry for a frame without a pose; ``{"frames": [...]}`` around such a list (with
an optional ``width`` / ``height``); and the solution tests' ``{"predictions": (T, 33, 3)}`` in
pixels. Fractions become pixels with the frame size (``--size``, ``--video`` or the file's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS
from hotpatch.keypoints.model import Detection, Detections, missing_to_nan
from hotpatch.keypoints.results import size_in

__all__ = ["is_mediapipe", "read_mediapipe"]

JOINTS = 33
_KEYS = ("pose_landmarks", "landmarks", "landmark", "keypoints")
_FRAME_KEYS = ("frame", "frame_id", "frame_index", "frame_number")


def _is_landmark(value: Any) -> bool:
    return isinstance(value, dict) and "x" in value and "y" in value


def _poses(entry: Any) -> list[list[dict]] | None:
    """The poses (lists of 33 landmark dicts) of one frame's entry; None if it is not one."""
    if entry is None or entry == [] or entry == {}:
        return []
    if isinstance(entry, dict):
        for key in _KEYS:
            if key in entry:
                return _poses(entry[key])
        return [] if set(entry) <= {*_FRAME_KEYS, "timestamp_ms"} else None
    if isinstance(entry, list) and entry and all(_is_landmark(v) for v in entry):
        return [entry]
    if isinstance(entry, list) and all(isinstance(v, list) and all(_is_landmark(x) for x in v) for v in entry):
        return list(entry)
    return None


def _frames(data: Any) -> list | None:
    if isinstance(data, dict):
        data = data.get("frames")
    return data if isinstance(data, list) else None


def is_mediapipe(data: Any) -> bool:
    """Whether a parsed JSON document is a MediaPipe Pose dump (see the module docstring)."""
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        shape = np.shape(data["predictions"])
        return len(shape) == 3 and shape[1] == JOINTS
    frames = _frames(data)
    if not frames:
        return False
    poses = [_poses(e) for e in frames[:50]]
    found = [p for p in poses if p]
    return bool(found) and None not in poses and len(found[0][0]) == JOINTS


def read_mediapipe(data: Any, path: Path) -> Detections:
    """The detections of a MediaPipe Pose dump (normalised unless it is the pixel ``predictions`` form)."""
    width, height = size_in(data)
    if isinstance(data, dict) and "predictions" in data:
        arr = np.asarray(data["predictions"], dtype=np.float64)
        frames = {t: [Detection(missing_to_nan(np.concatenate([arr[t, :, :2], np.ones((JOINTS, 1))], 1)), 1.0)]
                  for t in range(len(arr))}
        return Detections(path, "mediapipe", frames, LAYOUTS["mediapipe33"], "joint count (33: MediaPipe)",
                          width, height, normalized=False)
    frames: dict[int, list[Detection]] = {}
    for index, entry in enumerate(_frames(data) or []):
        number = next((int(entry[k]) for k in _FRAME_KEYS if isinstance(entry, dict) and
                       isinstance(entry.get(k), (int, float))), index)
        people = frames.setdefault(number, [])
        for pose in _poses(entry) or []:
            if len(pose) != JOINTS:
                raise DataError(f"{path}: frame {number} has a pose of {len(pose)} landmarks; MediaPipe Pose has "
                                f"{JOINTS}. Dump results.pose_landmarks of mediapipe's Pose solution")
            kp = np.array([[lm["x"], lm["y"], lm.get("visibility", lm.get("presence", 1.0))] for lm in pose],
                          dtype=np.float64)
            people.append(Detection(missing_to_nan(kp), float(np.mean(kp[:, 2]))))
    xy = np.concatenate([d.keypoints[:, :2] for dets in frames.values() for d in dets] or [np.zeros((0, 2))])
    finite = xy[np.isfinite(xy).all(axis=1)]
    normalized = bool(len(finite)) and float(np.abs(finite).max()) <= 2.0
    return Detections(path, "mediapipe", frames, LAYOUTS["mediapipe33"], "joint count (33: MediaPipe)",
                      width, height, normalized=normalized)
