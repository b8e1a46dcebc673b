"""Frames of a keypoint track: the file's frame numbers, gaps filled over time, the frame size.

* :func:`video_frames` turns the frame numbers a file uses into a video's consecutive frames; a
  file whose numbers skip far more frames than it holds (COCO image ids taken for frame numbers)
  is refused, unless ``frame_numbers="index"`` takes its frames in order as consecutive frames.
* :func:`fill_gaps` interpolates joints that are missing or unsure linearly over time.
* :func:`frame_size` settles the video's frame size: given, the video's, the file's, else the
  smallest common landscape, portrait or square size holding every keypoint (with a warning);
  :func:`outside_frame` reports keypoints outside it (negative, or past the edges).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["COMMON_SIZES", "FRAME_NUMBERS", "H36M_NAMES", "fill_gaps", "frame_size", "outside_frame", "video_frames"]

FRAME_NUMBERS = ("file", "index")
#: Frame sizes tried, smallest area first, when neither the file nor the user gives one.
COMMON_SIZES = tuple(sorted(
    {(640, 480), (1280, 720), (1920, 1080), (3840, 2160),          # landscape
     (480, 640), (720, 1280), (1080, 1920), (1080, 1350), (2160, 3840),  # portrait (phones, 4:5)
     (720, 720), (1080, 1080)},                                     # square
    key=lambda s: (s[0] * s[1], -s[0])))
#: A file is refused when its frame numbers span more than GAP_FACTOR times (and GAP_MIN more
#: than) the frames it lists.
GAP_FACTOR, GAP_MIN = 10, 100
H36M_NAMES = ("pelvis", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle", "spine",
              "thorax", "neck/nose", "head", "left shoulder", "left elbow", "left wrist", "right shoulder",
              "right elbow", "right wrist")


def video_frames(frames: dict[int, Any], path: str | Path, mode: str = "file") -> tuple[list[Any], np.ndarray]:
    """The values of ``frames`` (frame number -> value) for every frame of the video, None where the
    file has none, and the frame numbers; ``mode="index"`` takes the file's frames in order."""
    numbers = sorted(frames)
    if mode == "index":
        return [frames[n] for n in numbers], np.asarray(numbers)
    if mode != "file":
        raise DataError(f"frame_numbers={mode!r}; use one of {FRAME_NUMBERS}")
    first, last = numbers[0], numbers[-1]
    span = last - first + 1
    if span > GAP_FACTOR * len(numbers) and span - len(numbers) > GAP_MIN:
        raise DataError(f"{path}: frame numbers run from {first} to {last} ({span:,} frames) but the file lists only "
                        f"{len(numbers):,}: gaps far larger than the detections, so these look like image ids rather "
                        "than a video's frame numbers. Pass --frame-numbers index to take the file's frames in order "
                        "as consecutive frames")
    return [frames.get(t) for t in range(first, last + 1)], np.arange(first, last + 1)


def fill_gaps(
    xy: np.ndarray, scores: np.ndarray, min_score: float, path: str | Path = "keypoints"
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate joints that are missing (NaN) or score below ``min_score`` linearly over time
    (held constant past the ends); return the filled (T, J, 2) keypoints and the (T, J) mask of
    filled values. A joint never found is an error naming it."""
    xy = np.array(xy, dtype=np.float64)
    bad = np.isnan(xy).any(axis=-1) | ~(np.nan_to_num(scores, nan=-1.0) >= min_score)
    t = np.arange(len(xy))
    for j in range(xy.shape[1]):
        good = ~bad[:, j]
        if not good.any():
            name = f" ({H36M_NAMES[j]})" if xy.shape[1] == len(H36M_NAMES) else ""
            seen = np.isfinite(xy[:, j]).any(axis=-1).sum()
            why = (f"it is found in {seen} frame(s), always with a score below {min_score}; lower --min-score"
                   if seen else "the detector never found it (outside the frame or hidden all along)")
            raise DataError(f"{path}: joint {j}{name} is never detected with a score >= {min_score}: {why}. A body "
                            "without it cannot be lifted; check that the file holds the person you want (--person)")
        if good.all():
            continue
        for c in range(2):
            xy[bad[:, j], j, c] = np.interp(t[bad[:, j]], t[good], xy[good, j, c])
    return xy, bad


def _fits(size: tuple[int, int], hi: np.ndarray) -> bool:
    return hi[0] <= size[0] and hi[1] <= size[1]


def frame_size(track: Any, given: tuple[int, int] | None = None, *,
               video: tuple[int, int] | None = None) -> tuple[int, int, str]:
    """The video's (width, height) and where it came from: ``given`` (``--size``), the ``video``'s
    frames, the keypoint file, else the smallest of :data:`COMMON_SIZES` (landscape, portrait or
    square) holding every keypoint, with a warning naming it, the others that fit and how to give
    the real one."""
    for size, how in ((given, "given"), (video, "the video"), ((track.width, track.height), "the keypoint file")):
        if size is not None and all(size):
            return int(size[0]), int(size[1]), how
    xy = np.asarray(track.xy, dtype=np.float64).reshape(-1, 2)
    hi = np.nanmax(xy, axis=0)
    fitting = [s for s in COMMON_SIZES if _fits(s, hi)]
    if fitting:
        (w, h), others = fitting[0], fitting[1:4]
    else:
        w, h, others = int(math.ceil(hi[0] / 16) * 16), int(math.ceil(hi[1] / 16) * 16), []
    kind = "square" if w == h else "portrait" if h > w else "landscape"
    also = f"; others that fit: {', '.join(f'{a}x{b}' for a, b in others)}" if others else ""
    log.warning("the keypoint file does not say the video's frame size; assuming %dx%d (%s: the smallest common size "
                "holding every keypoint, which reach x=%.0f, y=%.0f%s). Pass --size WxH or --video IN.mp4 if the video "
                "is another size.", w, h, kind, hi[0], hi[1], also)
    return w, h, "assumed"


def outside_frame(xy: np.ndarray, width: int, height: int) -> str | None:
    """One line about the keypoints that lie outside a ``width`` x ``height`` frame, or None."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if not len(xy):
        return None
    low = (xy < 0).any(axis=1)
    high = (xy[:, 0] > width) | (xy[:, 1] > height)
    if not (low.any() or high.any()):
        return None
    parts = []
    if low.any():
        parts.append(f"{int(low.sum())} left of or above it (down to x={xy[:, 0].min():.0f}, y={xy[:, 1].min():.0f}: "
                     "the detector placed unseen joints outside the image)")
    if high.any():
        parts.append(f"{int(high.sum())} right of or below it (up to x={xy[:, 0].max():.0f}, y={xy[:, 1].max():.0f})")
    hint = "; check the frame size (--size)" if high.any() else ""
    return f"{int((low | high).sum())} of {len(xy)} keypoint positions lie outside the {width}x{height} frame: " \
           f"{' and '.join(parts)}{hint}"
