"""2D keypoint files as detectors write them, turned into one Human3.6M-17 track.

Formats read (``detect_format`` picks one from the file; ``format=`` overrides):

* ``coco`` — COCO results JSON: a list of ``{"image_id": int, "keypoints": [x, y, v] * 17,
  "score": s}``, several people per image; the frame is ``image_id`` (frames between the
  first and the last id with no detection count as missing).
* ``alphapose`` — AlphaPose's ``alphapose-results.json``: the same list, but ``image_id`` is the
  frame's file name (``"12.jpg"``; the frame number is read from its digits) and ``idx`` is
  the track id when AlphaPose ran with pose tracking.
* ``mmpose`` — MMPose predictions: ``{"instance_info": [{"frame_id": t, "instances": [
  {"keypoints": [[x, y], ...], "keypoint_scores": [...], "track_id"?: id}]}]}`` (what its
  demos save with ``--save-predictions``), or a bare list of such frames, or a list with
  one list of instances per frame.
* ``h36m`` — ``.npy`` / ``.npz`` of (T, 17, 2 | 3) Human3.6M-17 keypoints in pixels, an
  optional third channel of scores (an ``.npz`` holds it as its only array or under
  ``keypoints``; ``width`` / ``height`` in the ``.npz`` give the image size).

COCO-17 joints become Human3.6M-17 (:func:`coco_to_h36m`): pelvis = mean of the hips,
thorax = mean of the shoulders, spine = mean of pelvis and thorax, neck/nose = the nose,
head = mean of the eyes; the limbs map one to one. A derived joint's score is the mean of
its sources' scores. One person is kept per frame (the highest-scoring detection, or the
track ``person``); missing frames and joints scoring below ``min_score`` are filled by
linear interpolation over time (held constant past the ends) and counted.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.data import NUM_JOINTS as H36M_JOINTS
from hotpatch.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "KeypointTrack", "coco_to_h36m", "detect_format", "fill_gaps", "read_keypoints"]

FORMATS = ("coco", "alphapose", "mmpose", "h36m")
COCO_JOINTS = 17

#: Human3.6M-17 joint -> the COCO-17 joints it is the mean of.
COCO_TO_H36M: tuple[tuple[int, ...], ...] = (
    (11, 12),          # 0 pelvis: mean of the hips
    (12,),             # 1 right hip
    (14,),             # 2 right knee
    (16,),             # 3 right ankle
    (11,),             # 4 left hip
    (13,),             # 5 left knee
    (15,),             # 6 left ankle
    (11, 12, 5, 6),    # 7 spine: mean of pelvis and thorax (each a mean of two)
    (5, 6),            # 8 thorax: mean of the shoulders
    (0,),              # 9 neck/nose: the nose
    (1, 2),            # 10 head: mean of the eyes
    (5,),              # 11 left shoulder
    (7,),              # 12 left elbow
    (9,),              # 13 left wrist
    (6,),              # 14 right shoulder
    (8,),              # 15 right elbow
    (10,),             # 16 right wrist
)


@dataclass
class KeypointTrack:
    """One person's 2D keypoints over a video, Human3.6M-17 order, in pixels.

    ``xy``: (T, 17, 2) float32, gaps filled; ``scores``: (T, 17) float32 (0 where a frame had
    no detection); ``filled``: (T, 17) bool, True where the value was interpolated;
    ``missing_frames``: frames with no detection of the person; ``width``/``height``: the image
    size when the file gives it.
    """

    xy: np.ndarray
    scores: np.ndarray
    filled: np.ndarray
    missing_frames: int
    format: str
    width: int | None = None
    height: int | None = None

    def __len__(self) -> int:
        return len(self.xy)


def coco_to_h36m(coco: np.ndarray) -> np.ndarray:
    """(..., 17, C) COCO-17 joints (any channels: x, y, score) -> (..., 17, C) Human3.6M-17."""
    coco = np.asarray(coco, dtype=np.float64)
    if coco.shape[-2] != COCO_JOINTS:
        raise DataError(f"COCO keypoints have {coco.shape[-2]} joints; expected {COCO_JOINTS}.")
    return np.stack([coco[..., list(src), :].mean(axis=-2) for src in COCO_TO_H36M], axis=-2)


# ----------------------------------------------------------------------------- reading


def detect_format(path: str | Path, data: Any = None) -> str:
    """The format of ``path`` (see the module docstring), from its suffix and contents."""
    path = Path(path)
    if path.suffix.lower() in (".npy", ".npz"):
        return "h36m"
    data = _read_json(path) if data is None else data
    if isinstance(data, dict) and "instance_info" in data:
        return "mmpose"
    if isinstance(data, list) and data:
        first = data[0]
        if isinstance(first, list) or (isinstance(first, dict) and "instances" in first):
            return "mmpose"
        if isinstance(first, dict) and "keypoints" in first and "image_id" in first:
            return "coco" if isinstance(first["image_id"], (int, float)) else "alphapose"
    raise DataError(
        f"{path}: cannot tell the keypoint format (expected a COCO / AlphaPose results list, MMPose "
        f"predictions or a (T, 17, 2|3) .npy/.npz); pass --format one of {', '.join(FORMATS)}."
    )


def read_keypoints(
    path: str | Path,
    *,
    format: str | None = None,
    person: int | None = None,
    min_score: float = 0.3,
) -> KeypointTrack:
    """Read a keypoint file into one filled Human3.6M-17 track (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"keypoint file {str(path)!r} does not exist; pass the path of a detector's output.")
    if format is not None and format not in FORMATS:
        raise DataError(f"format={format!r} is unknown; use one of {', '.join(FORMATS)}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a detector's keypoint output.")
    if format == "h36m" or (format is None and path.suffix.lower() in (".npy", ".npz")):
        kp, width, height = _read_array(path)
        fmt = "h36m"
        if person is not None:
            log.warning("--person is ignored: %s holds one person", path)
    else:
        data = _read_json(path)
        fmt = format or detect_format(path, data)
        frames = _frames_from_json(data, fmt, path)
        kp = coco_to_h36m(_pick_people(frames, person, path))
        width = height = None
    xy, scores = kp[..., :2], kp[..., 2] if kp.shape[-1] == 3 else np.ones(kp.shape[:2])
    missing = np.isnan(xy).any(axis=(1, 2))
    xy, filled = fill_gaps(xy, scores, min_score, path)
    scores = np.where(np.isnan(scores), 0.0, scores)
    if filled.any():
        log.warning("%s: filled %d missing frame(s) and %d low-score joint(s) (score < %g) by interpolation",
                    path.name, int(missing.sum()), int(filled[~missing].sum()), min_score)
    return KeypointTrack(xy.astype(np.float32), scores.astype(np.float32), filled, int(missing.sum()), fmt,
                         width, height)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}); expected a detector's keypoint output "
                        "(COCO / AlphaPose results, MMPose predictions) or a .npy/.npz array.") from exc


def _read_array(path: Path) -> tuple[np.ndarray, int | None, int | None]:
    width = height = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy/.npz array ({exc}).") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            arrays = [k for k in keys if loaded[k].ndim == 3]
            key = "keypoints" if "keypoints" in keys else arrays[0] if len(arrays) == 1 else None
            if key is None:
                raise DataError(f"{path} holds {keys}; expected one (T, 17, 2|3) array or one named 'keypoints'.")
            kp = loaded[key]
            width = int(loaded["width"]) if "width" in keys else None
            height = int(loaded["height"]) if "height" in keys else None
    else:
        kp = loaded
    kp = np.asarray(kp, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != H36M_JOINTS or kp.shape[2] not in (2, 3) or len(kp) == 0:
        raise DataError(f"{path} holds an array of shape {kp.shape}; expected (T, 17, 2) or (T, 17, 3) "
                        "Human3.6M-17 keypoints in pixels (x, y[, score]) with T >= 1.")
    return kp, width, height


def _frames_from_json(data: Any, fmt: str, path: Path) -> list[list[tuple[np.ndarray, float, Any]]]:
    """Per frame, the detections as (keypoints (17, 3), score, track id)."""
    by_frame: dict[int, list] = {}
    if fmt in ("coco", "alphapose"):
        if not isinstance(data, list):
            raise DataError(f"{path}: a {fmt} results file is a JSON list of detections; got {type(data).__name__}.")
        for det in data:
            if not isinstance(det, dict) or "keypoints" not in det:
                raise DataError(f"{path}: a detection without 'keypoints': {str(det)[:80]}")
            frame = _frame_number(det.get("image_id"), path)
            kp = _coco_array(det["keypoints"], path)
            score = float(det.get("score", kp[:, 2].mean()))
            track = det.get("idx", det.get("track_id"))
            by_frame.setdefault(frame, []).append((kp, score, _track(track)))
    else:
        frames = data["instance_info"] if isinstance(data, dict) else data
        if not isinstance(frames, list):
            raise DataError(f"{path}: MMPose predictions hold a list of frames; got {type(frames).__name__}.")
        for t, frame in enumerate(frames):
            instances = frame if isinstance(frame, list) else frame.get("instances", [])
            number = t if isinstance(frame, list) else int(frame.get("frame_id", t))
            for inst in instances:
                if "keypoints" not in inst:
                    raise DataError(f"{path}: an MMPose instance without 'keypoints' in frame {number}.")
                xy = np.asarray(inst["keypoints"], dtype=np.float64).reshape(-1, 2)
                sc = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64).reshape(-1)
                if len(xy) != COCO_JOINTS or len(sc) != COCO_JOINTS:
                    raise DataError(f"{path}: frame {number} has {len(xy)} keypoints; expected {COCO_JOINTS} "
                                    "(COCO-17).")
                kp = np.concatenate([xy, sc[:, None]], axis=1)
                score = float(np.mean(inst.get("bbox_score", sc.mean())))
                by_frame.setdefault(number, []).append((kp, score, _track(inst.get("track_id"))))
    if not by_frame:
        raise DataError(f"{path} holds no keypoints; expected at least one detected person.")
    first, last = min(by_frame), max(by_frame)
    return [by_frame.get(t, []) for t in range(first, last + 1)]


def _frame_number(image_id: Any, path: Path) -> int:
    if isinstance(image_id, bool) or image_id is None:
        raise DataError(f"{path}: a detection has image_id={image_id!r}; expected a frame number or file name.")
    if isinstance(image_id, (int, float)):
        return int(image_id)
    digits = re.findall(r"\d+", Path(str(image_id)).stem)
    if not digits:
        raise DataError(f"{path}: cannot read a frame number from image_id={image_id!r}.")
    return int(digits[-1])


def _coco_array(values: Any, path: Path) -> np.ndarray:
    kp = np.asarray(values, dtype=np.float64).reshape(-1)
    if kp.size != COCO_JOINTS * 3:
        raise DataError(f"{path}: a detection has {kp.size} keypoint values; expected {COCO_JOINTS * 3} "
                        "(COCO-17 x, y, score).")
    return kp.reshape(COCO_JOINTS, 3)


def _track(value: Any) -> Any:
    if isinstance(value, list):  # AlphaPose can write idx as a list
        value = value[0] if value else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _pick_people(frames: list[list], person: int | None, path: Path) -> np.ndarray:
    """(T, 17, 3) COCO keypoints of one person, NaN where the frame has none."""
    out = np.full((len(frames), COCO_JOINTS, 3), np.nan)
    tracks = {d[2] for f in frames for d in f if d[2] is not None}
    if person is not None and person not in tracks:
        hint = f"track ids in the file: {sorted(tracks)[:20]}" if tracks else "the file has no track ids"
        raise DataError(f"{path}: no detection has track id {person} ({hint}); pass one of those to --person.")
    for t, dets in enumerate(frames):
        if person is not None:
            dets = [d for d in dets if d[2] == person]
        if dets:
            out[t] = max(dets, key=lambda d: d[1])[0]
    return out


def fill_gaps(
    xy: np.ndarray, scores: np.ndarray, min_score: float, path: str | Path = "keypoints"
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate joints that are missing (NaN) or score below ``min_score`` linearly over time;
    return the filled (T, J, 2) keypoints and the (T, J) mask of filled values."""
    xy = np.array(xy, dtype=np.float64)
    bad = np.isnan(xy).any(axis=-1) | ~(np.nan_to_num(scores, nan=-1.0) >= min_score)
    t = np.arange(len(xy))
    for j in range(xy.shape[1]):
        good = ~bad[:, j]
        if not good.any():
            raise DataError(f"{path}: joint {j} is never detected with a score >= {min_score}; lower "
                            "--min-score or check that the file holds the person you want.")
        if good.all():
            continue
        for c in range(2):
            xy[bad[:, j], j, c] = np.interp(t[bad[:, j]], t[good], xy[good, j, c])
    return xy, bad
