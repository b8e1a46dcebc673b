"""2D keypoint files as detectors write them, turned into one Human3.6M-17 track.

Formats read (``detect_format`` picks one from the file; ``format=`` overrides):

* ``coco`` — COCO results JSON: a list of ``{"image_id": int, "keypoints": [x, y, v] * J,
  "score": s}``, several people per image; the frame is ``image_id`` (frames between the
  first and the last id with no detection count as missing).
* ``alphapose`` — AlphaPose's ``alphapose-results.json``: the same list, but ``image_id`` is the
  frame's file name (``"12.jpg"``; the frame number is read from its digits) and ``idx`` is
  the track id when AlphaPose ran with pose tracking (a number, or a nested list such as
  ``[[2.0], [2.0]]`` after re-identification: its first number).
* ``mmpose`` — MMPose predictions: the inferencer's ``pred_out_dir`` file of a video (a list
  of ``{"frame_id": t, "instances": [{"keypoints": [[x, y], ...], "keypoint_scores": [...],
  "bbox": ..., "bbox_score": s, "track_id"?: id}]}``), the demos' ``--save-predictions`` file
  (``{"meta_info": ..., "instance_info": [such frames]}``), the inferencer's results
  (``[{"predictions": [[instance, ...]]}, ...]``, one per frame), a list with one list of
  instances per frame, or one image's list of instances.
* ``h36m`` — ``.npy`` / ``.npz`` of (T, 17, 2 | 3) Human3.6M-17 keypoints in pixels, an
  optional third channel of scores (an ``.npz`` holds it as its only array or under
  ``keypoints``; ``width`` / ``height`` in the ``.npz`` give the image size).

The joint layout of a JSON file is read from its joint count: COCO-17, Halpe-26, COCO-WholeBody-133
or Halpe-136 (:mod:`hotpatch.joint_layouts`, which says how each becomes Human3.6M-17; Halpe's
own pelvis, neck and head joints are used). One person is kept per frame (the highest-scoring
detection, or the track ``person``); missing frames and joints scoring below ``min_score`` are
filled by linear interpolation over time (held constant past the ends) and counted. The image
size comes from the file where it has one (``width`` / ``height`` or ``image_size`` at the top
of a JSON object or in its ``meta_info`` / ``video_info``); :func:`frame_size` settles it
otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.data import NUM_JOINTS as H36M_JOINTS
from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, JointLayout, layout_for, to_h36m

log = logging.getLogger(__name__)

__all__ = ["COMMON_SIZES", "FORMATS", "KeypointTrack", "coco_to_h36m", "detect_format", "fill_gaps", "frame_size",
           "read_keypoints"]

FORMATS = ("coco", "alphapose", "mmpose", "h36m")
COCO_JOINTS = 17
#: Human3.6M-17 joint -> the COCO-17 joints it is the mean of.
COCO_TO_H36M = LAYOUTS["coco17"].sources
#: Frame sizes tried, smallest first, when neither the file nor the user gives one.
COMMON_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))
_FIX = "export the detector's output again, or pass --format"


@dataclass
class KeypointTrack:
    """One person's 2D keypoints over a video, Human3.6M-17 order, in pixels.

    ``xy``: (T, 17, 2) float32, gaps filled; ``scores``: (T, 17) float32 (0 where a frame had
    no detection); ``filled``: (T, 17) bool, True where the value was interpolated;
    ``missing_frames``: frames with no detection of the person; ``layout``: the file's joint
    layout (``coco17``, ``halpe26``, ...; ``h36m17`` for arrays); ``width``/``height``: the
    image size when the file gives it; ``has_scores``: False for an (T, 17, 2) array (its
    ``scores`` are then ones).
    """

    xy: np.ndarray
    scores: np.ndarray
    filled: np.ndarray
    missing_frames: int
    format: str
    width: int | None = None
    height: int | None = None
    layout: str = "coco17"
    has_scores: bool = True

    def __len__(self) -> int:
        return len(self.xy)


def coco_to_h36m(coco: np.ndarray) -> np.ndarray:
    """(..., 17, C) COCO-17 joints (any channels: x, y, score) -> (..., 17, C) Human3.6M-17."""
    coco = np.asarray(coco, dtype=np.float64)
    if coco.shape[-2] != COCO_JOINTS:
        raise DataError(f"COCO keypoints have {coco.shape[-2]} joints; expected {COCO_JOINTS}.")
    return to_h36m(coco, LAYOUTS["coco17"])


def frame_size(track: KeypointTrack, given: tuple[int, int] | None = None, *,
               video: tuple[int, int] | None = None) -> tuple[int, int, str]:
    """The video's (width, height) and where it came from: ``given`` (``--size``), the
    ``video``'s frames, the keypoint file, else the smallest of :data:`COMMON_SIZES` holding
    every keypoint (with a warning naming it and how to give the real one)."""
    for size, how in ((given, "given"), (video, "the video"), ((track.width, track.height), "the keypoint file")):
        if size is not None and all(size):
            return int(size[0]), int(size[1]), how
    hi = track.xy.reshape(-1, 2).max(axis=0)
    w, h = next(((cw, ch) for cw, ch in COMMON_SIZES if hi[0] <= cw and hi[1] <= ch),
                (int(math.ceil(hi[0] / 16) * 16), int(math.ceil(hi[1] / 16) * 16)))
    log.warning("the keypoint file does not say the video's frame size; assuming %dx%d (the smallest common size "
                "holding every keypoint). Pass --size WxH or --video IN.mp4 if the video is another size.", w, h)
    return w, h, "assumed"


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
        if isinstance(first, list) or (isinstance(first, dict) and ("instances" in first or "predictions" in first)):
            return "mmpose"
        if isinstance(first, dict) and "keypoints" in first:
            if "image_id" not in first:
                return "mmpose"  # one image's instances
            return "coco" if isinstance(first["image_id"], (int, float)) else "alphapose"
    raise DataError(
        f"{path}: cannot tell the keypoint format (expected a COCO / AlphaPose results list, MMPose "
        f"predictions or a (T, 17, 2|3) .npy/.npz); pass --format one of {', '.join(FORMATS)}."
    )


def check_keypoint_file(path: str | Path, flag: str | None = None) -> Path:
    """``path`` as a Path if it is a file; else a one-line ``DataError`` (a directory, or missing).
    ``flag`` names the command-line option the path came from."""
    path = Path(path)
    what = f"{flag} {path}" if flag else f"keypoint file {str(path)!r}"
    if path.is_dir():
        raise DataError(f"{what} is a directory; pass the detector's output file in it (a .json, .npy or .npz file)")
    if not path.is_file():
        raise DataError(f"{what} does not exist; pass the path of a detector's output.")
    return path


def read_keypoints(
    path: str | Path,
    *,
    format: str | None = None,
    person: int | None = None,
    min_score: float = 0.3,
) -> KeypointTrack:
    """Read a keypoint file into one filled Human3.6M-17 track (see the module docstring)."""
    path = check_keypoint_file(path)
    if format is not None and format not in FORMATS:
        raise DataError(f"format={format!r} is unknown; use one of {', '.join(FORMATS)}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a detector's keypoint output.")
    if format == "h36m" or (format is None and path.suffix.lower() in (".npy", ".npz")):
        kp, width, height = _read_array(path)
        fmt, layout_name = "h36m", "h36m17"
        if person is not None:
            log.warning("--person is ignored: %s holds one person", path)
    else:
        data = _read_json(path)
        fmt = format or detect_format(path, data)
        try:
            frames, layout = _frames_from_json(data, fmt, path)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise DataError(f"{path} is not a valid {fmt} keypoint file ({type(exc).__name__}: "
                            f"{str(exc)[:120]}); {_FIX} with the right format.") from exc
        kp = to_h36m(_pick_people(frames, person, path, layout.joints), layout)
        width, height = _size_in(data)
        layout_name = layout.name
    xy, scores = kp[..., :2], kp[..., 2] if kp.shape[-1] == 3 else np.ones(kp.shape[:2])
    missing = np.isnan(xy).any(axis=(1, 2))
    xy, filled = fill_gaps(xy, scores, min_score, path)
    scores = np.where(np.isnan(scores), 0.0, scores)
    if filled.any():
        log.warning("%s: filled %d missing frame(s) and %d low-score joint(s) (score < %g) by interpolation",
                    path.name, int(missing.sum()), int(filled[~missing].sum()), min_score)
    return KeypointTrack(xy.astype(np.float32), scores.astype(np.float32), filled, int(missing.sum()), fmt,
                         width, height, layout_name, kp.shape[-1] == 3)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}); expected a detector's keypoint output "
                        "(COCO / AlphaPose results, MMPose predictions) or a .npy/.npz array.") from exc


def _size_in(data: Any) -> tuple[int | None, int | None]:
    """(width, height) from a JSON object's top level, ``meta_info`` or ``video_info``."""
    if not isinstance(data, dict):
        return None, None
    for place in (data, data.get("meta_info"), data.get("video_info")):
        if not isinstance(place, dict):
            continue
        size = place.get("image_size")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
        if isinstance(place.get("width"), (int, float)) and isinstance(place.get("height"), (int, float)):
            return int(place["width"]), int(place["height"])
    return None, None


def _read_array(path: Path) -> tuple[np.ndarray, int | None, int | None]:
    width = height = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy/.npz array ({exc}); save it with numpy.save / "
                        "numpy.savez (no pickled objects).") from exc
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


Detection = tuple[np.ndarray, float, Any]  # keypoints (J, 3), score, track id


def _frames_from_json(data: Any, fmt: str, path: Path) -> tuple[list[list[Detection]], JointLayout]:
    """Per frame, the detections; and the file's joint layout."""
    by_frame: dict[int, list[Detection]] = {}
    if fmt in ("coco", "alphapose"):
        if not isinstance(data, list):
            raise DataError(f"{path}: a {fmt} results file is a JSON list of detections; got {type(data).__name__}; "
                            f"{_FIX}.")
        for det in data:
            if not isinstance(det, dict) or "keypoints" not in det:
                raise DataError(f"{path}: a detection without 'keypoints': {str(det)[:80]}; {_FIX}.")
            frame = _frame_number(det.get("image_id"), path)
            kp = _flat_array(det["keypoints"], path)
            score = float(np.mean(det.get("score", kp[:, 2].mean())))
            by_frame.setdefault(frame, []).append((kp, score, _track(det.get("idx", det.get("track_id")))))
    else:
        for number, instances in _mmpose_frames(data, path):
            for inst in instances:
                if not isinstance(inst, dict) or "keypoints" not in inst:
                    raise DataError(f"{path}: an MMPose instance without 'keypoints' in frame {number}; {_FIX}.")
                xy = np.asarray(inst["keypoints"], dtype=np.float64)
                xy = xy[..., :2].reshape(-1, 2) if xy.ndim == 2 else xy.reshape(-1, 2)
                sc = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64).reshape(-1)
                if len(sc) != len(xy):
                    raise DataError(f"{path}: frame {number} has {len(xy)} keypoints but {len(sc)} keypoint_scores; "
                                    f"{_FIX}.")
                kp = np.concatenate([xy, sc[:, None]], axis=1)
                score = float(np.mean(inst.get("bbox_score", sc.mean())))
                by_frame.setdefault(number, []).append((kp, score, _track(inst.get("track_id"))))
    if not by_frame:
        raise DataError(f"{path} holds no keypoints; expected at least one detected person. Check that the "
                        "detector ran on the video (and found someone).")
    counts = sorted({len(d[0]) for dets in by_frame.values() for d in dets})
    if len(counts) > 1:
        raise DataError(f"{path} mixes detections of {counts} joints; expected one layout per file ({_FIX}).")
    layout = layout_for(counts[0], str(path))
    first, last = min(by_frame), max(by_frame)
    return [by_frame.get(t, []) for t in range(first, last + 1)], layout


def _mmpose_frames(data: Any, path: Path) -> list[tuple[int, list]]:
    """(frame number, instances) of each frame of an MMPose file (see the module docstring)."""
    frames = data["instance_info"] if isinstance(data, dict) else data
    if not isinstance(frames, list):
        raise DataError(f"{path}: MMPose predictions hold a list of frames; got {type(frames).__name__}; {_FIX}.")
    if frames and isinstance(frames[0], dict) and "keypoints" in frames[0]:
        return [(0, frames)]  # one image's instances
    out = []
    for t, frame in enumerate(frames):
        if isinstance(frame, list):
            out.append((t, frame))
        elif isinstance(frame, dict) and "predictions" in frame:  # the inferencer's results, one per frame
            preds = frame["predictions"]
            out.append((t, preds[0] if preds and isinstance(preds[0], list) else preds))
        elif isinstance(frame, dict):
            out.append((int(frame.get("frame_id", t)), frame.get("instances", [])))
        else:
            raise DataError(f"{path}: MMPose frame {t} is a {type(frame).__name__}; expected an object with "
                            f"'frame_id' and 'instances'; {_FIX}.")
    return out


def _frame_number(image_id: Any, path: Path) -> int:
    if isinstance(image_id, bool) or image_id is None:
        raise DataError(f"{path}: a detection has image_id={image_id!r}; expected a frame number or file name. "
                        f"{_FIX[0].upper()}{_FIX[1:]}.")
    if isinstance(image_id, (int, float)):
        return int(image_id)
    digits = re.findall(r"\d+", Path(str(image_id)).stem)
    if not digits:
        raise DataError(f"{path}: cannot read a frame number from image_id={image_id!r}; name the frames with "
                        "their number (e.g. 12.jpg).")
    return int(digits[-1])


def _flat_array(values: Any, path: Path) -> np.ndarray:
    """A detection's flat ``[x, y, score] * J`` as (J, 3); J must be a known layout's."""
    kp = np.asarray(values, dtype=np.float64).reshape(-1)
    if kp.size % 3 or kp.size // 3 not in {layout.joints for layout in LAYOUTS.values()}:
        known = ", ".join(f"{3 * layout.joints} ({layout.description})" for layout in LAYOUTS.values())
        raise DataError(f"{path}: a detection has {kp.size} keypoint values; expected {known}: x, y, score per "
                        f"joint. {_FIX[0].upper()}{_FIX[1:]}.")
    return kp.reshape(-1, 3)


def _track(value: Any) -> int | str | None:
    """A track id as a hashable value: nested lists (AlphaPose re-identification) give their
    first number, integral floats become ints."""
    while isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (int, float, str)) else str(value)


def _pick_people(frames: list[list[Detection]], person: int | None, path: Path, joints: int) -> np.ndarray:
    """(T, J, 3) keypoints of one person, NaN where the frame has none."""
    out = np.full((len(frames), joints, 3), np.nan)
    tracks = {d[2] for f in frames for d in f if d[2] is not None}
    if person is not None and person not in tracks:
        ids = sorted(tracks, key=lambda v: (str(type(v)), v))[:20]
        hint = f"track ids in the file: {ids}" if tracks else "the file has no track ids"
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
