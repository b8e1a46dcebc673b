"""What the readers return: every detection of a file, by frame, in the file's own joint layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import JointLayout

__all__ = ["Detection", "Detections", "FIX", "missing_to_nan", "track_id"]

#: The usual advice when a file cannot be read as the format it seems to be.
FIX = "export the detector's output again, or pass --format"


@dataclass
class Detection:
    """One person in one frame: ``keypoints`` (J, 3) x, y, score with NaN where a joint was not
    detected; ``score`` the detection's; ``track`` the file's track id (None if it has none)."""

    keypoints: np.ndarray
    score: float
    track: Any = None


@dataclass
class Detections:
    """Every detection of one video's keypoint file.

    ``frames``: frame number (as the file numbers it) -> the detections of that frame (an empty
    list for a frame the file lists without anyone in it); ``layout``: the joints' layout and
    ``layout_from`` how it was told (``"joint count"``, ``"joint names"``, ``"the content: ..."``,
    ``"--layout"``); ``normalized``: x, y are fractions of the frame (MediaPipe) rather than pixels;
    ``width`` / ``height``: the frame size where the file says it.
    """

    path: Path
    format: str
    frames: dict[int, list[Detection]]
    layout: JointLayout
    layout_from: str = "joint count"
    width: int | None = None
    height: int | None = None
    normalized: bool = False
    has_scores: bool = True
    notes: list[str] = field(default_factory=list)

    def keypoints(self) -> np.ndarray:
        """(N, J, 3) every detection's keypoints, in frame order."""
        rows = [d.keypoints for t in sorted(self.frames) for d in self.frames[t]]
        return np.stack(rows) if rows else np.zeros((0, self.layout.joints, 3))

    def count(self) -> int:
        return sum(len(d) for d in self.frames.values())


def missing_to_nan(kp: np.ndarray) -> np.ndarray:
    """(..., J, 3) keypoints with undetected joints as NaN: detectors write them as ``0, 0, 0``
    (OpenPose), ``0, 0`` with visibility 0 (COCO annotations) or NaN; none of those is a place."""
    kp = np.array(kp, dtype=np.float64)
    if kp.shape[-1] < 2:
        raise DataError(f"keypoints have {kp.shape[-1]} value(s) per joint; expected x, y[, score]")
    undetected = (kp[..., 0] == 0) & (kp[..., 1] == 0)
    undetected |= np.isnan(kp[..., :2]).any(axis=-1)
    kp[undetected] = np.nan
    return kp


def track_id(value: Any) -> Any:
    """A track id as a hashable value: nested lists (AlphaPose re-identification) give their
    first number, integral floats become ints; negative ids (OpenPose's ``person_id: [-1]``)
    mean none."""
    while isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value < 0:
        return None
    return value if isinstance(value, (int, float, str)) else str(value)
