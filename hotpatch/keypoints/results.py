"""Detector result lists: COCO results, AlphaPose's ``alphapose-results.json`` and MMPose predictions.

* ``coco`` — a list of ``{"image_id": int, "keypoints": [x, y, score] * J, "score": s}``; the frame
  is ``image_id`` (see :mod:`hotpatch.keypoints.frames` for ids that are not frame numbers).
* ``alphapose`` — the same list with ``image_id`` the frame's file name (``"12.jpg"``: its digits)
  and ``idx`` the track id of AlphaPose's pose tracking (a number, or nested ``[[2.0], [2.0]]``).
* ``mmpose`` — the inferencer's ``pred_out_dir`` file of a video (``[{"frame_id": t, "instances":
  [{"keypoints": [[x, y], ...], "keypoint_scores": [...], "bbox_score": s, "track_id"?: id}]}]``),
  the demos' ``{"meta_info": ..., "instance_info": [such frames]}``, the inferencer's results
  (``[{"predictions": [[instance, ...]]}]``), a list of instance lists, or one image's instances.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, layout_for
from hotpatch.keypoints.model import FIX, Detection, Detections, missing_to_nan, track_id

__all__ = ["read_results", "size_in"]


def read_results(data: Any, fmt: str, path: Path) -> Detections:
    """The detections of a COCO / AlphaPose results list or of MMPose predictions."""
    frames: dict[int, list[Detection]] = {}
    if fmt in ("coco", "alphapose"):
        if not isinstance(data, list):
            raise DataError(f"{path}: a {fmt} results file is a JSON list of detections; got {type(data).__name__}; "
                            f"{FIX}.")
        for det in data:
            if not isinstance(det, dict) or "keypoints" not in det:
                raise DataError(f"{path}: a detection without 'keypoints': {str(det)[:80]}; {FIX}.")
            frame = frame_number(det.get("image_id"), path)
            kp = _flat_array(det["keypoints"], path)
            score = float(np.mean(det.get("score", np.nanmean(kp[:, 2]))))
            frames.setdefault(frame, []).append(Detection(missing_to_nan(kp), score,
                                                          track_id(det.get("idx", det.get("track_id")))))
    else:
        for number, instances in _mmpose_frames(data, path):
            people = frames.setdefault(number, [])
            for inst in instances:
                if not isinstance(inst, dict) or "keypoints" not in inst:
                    raise DataError(f"{path}: an MMPose instance without 'keypoints' in frame {number}; {FIX}.")
                xy = np.asarray(inst["keypoints"], dtype=np.float64)
                xy = xy[..., :2].reshape(-1, 2) if xy.ndim == 2 else xy.reshape(-1, 2)
                sc = np.asarray(inst.get("keypoint_scores", np.ones(len(xy))), dtype=np.float64).reshape(-1)
                if len(sc) != len(xy):
                    raise DataError(f"{path}: frame {number} has {len(xy)} keypoints but {len(sc)} keypoint_scores; "
                                    f"{FIX}.")
                kp = np.concatenate([xy, sc[:, None]], axis=1)
                score = float(np.mean(inst.get("bbox_score", sc.mean())))
                people.append(Detection(missing_to_nan(kp), score, track_id(inst.get("track_id"))))
    counts = sorted({len(d.keypoints) for dets in frames.values() for d in dets})
    if not counts:
        raise DataError(f"{path} holds no keypoints; expected at least one detected person. Check that the "
                        "detector ran on the video (and found someone).")
    if len(counts) > 1:
        raise DataError(f"{path} mixes detections of {counts} joints; expected one layout per file ({FIX}).")
    width, height = size_in(data)
    return Detections(path, fmt, frames, layout_for(counts[0], str(path)), width=width, height=height)


def _mmpose_frames(data: Any, path: Path) -> list[tuple[int, list]]:
    """(frame number, instances) of each frame of an MMPose file (see the module docstring)."""
    frames = data["instance_info"] if isinstance(data, dict) else data
    if not isinstance(frames, list):
        raise DataError(f"{path}: MMPose predictions hold a list of frames; got {type(frames).__name__}; {FIX}.")
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
                            f"'frame_id' and 'instances'; {FIX}.")
    return out


def frame_number(image_id: Any, path: Path) -> int:
    """A frame number from an ``image_id``: the number itself, or the last digits of a file name."""
    if isinstance(image_id, bool) or image_id is None:
        raise DataError(f"{path}: a detection has image_id={image_id!r}; expected a frame number or file name. "
                        f"{FIX[0].upper()}{FIX[1:]}.")
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
        counts = sorted({x.joints for x in LAYOUTS.values()})
        known = ", ".join(f"{3 * n} ({layout_for(n).description})" for n in counts)
        raise DataError(f"{path}: a detection has {kp.size} keypoint values; expected {known}: x, y, score per "
                        f"joint. {FIX[0].upper()}{FIX[1:]}.")
    return kp.reshape(-1, 3)


def size_in(data: Any) -> tuple[int | None, int | None]:
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
