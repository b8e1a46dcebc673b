"""OpenPose's ``--write_json`` output: one JSON file per frame, or a folder of them.

A frame's file is ``{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c]
* J, ...}]}`` (``NAME_000000000012_keypoints.json``: the last number in the name is the frame).
``pose_keypoints_2d`` has 25 joints (BODY_25, or the experimental BODY_25B: told apart by the
content, :func:`hotpatch.keypoints.order.openpose25_layout`), 18 (COCO-18) or another known count
(tools such as Pose2Sim write RTMPose's Halpe-26 and COCO-17 this way). Joints OpenPose did not
find are written ``0, 0, 0``: missing, never a place. ``person_id`` is -1 unless OpenPose tracked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import layout_for
from hotpatch.keypoints.model import Detection, Detections, missing_to_nan, track_id
from hotpatch.keypoints.order import openpose25_layout

__all__ = ["is_openpose", "openpose_files", "read_openpose"]


def is_openpose(data: Any) -> bool:
    """Whether a parsed JSON document is one OpenPose frame."""
    return isinstance(data, dict) and isinstance(data.get("people"), list)


def openpose_files(folder: Path) -> list[Path]:
    """The per-frame JSON files of an OpenPose output folder, in frame order ([] if there are none)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file()]
    if not files:
        return []
    try:
        first = json.loads(files[0].read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        return []
    if not is_openpose(first):
        return []
    return sorted(files, key=lambda p: (_number(p) is None, _number(p) or 0, p.name))


def _number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.name.removesuffix(".json").removesuffix("_keypoints"))
    return int(digits[-1]) if digits else None


def read_openpose(path: Path, first: Any = None) -> Detections:
    """The detections of one OpenPose frame file or of a folder of them (``first``: the parsed
    document of a single file, if already read)."""
    files = openpose_files(path) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path} holds no OpenPose JSON files (*_keypoints.json with a 'people' list); pass the "
                        "folder OpenPose wrote with --write_json, or one of its files")
    frames: dict[int, list[Detection]] = {}
    counts: dict[int, list[str]] = {}
    for index, file in enumerate(files):
        doc = first if (first is not None and len(files) == 1) else _load(file)
        if not is_openpose(doc):
            raise DataError(f"{file} is not an OpenPose frame (no 'people' list) but sits in the OpenPose folder "
                            f"{path}; move it out of the folder")
        number = _number(file)
        people = frames.setdefault(index if number is None else number, [])
        for person in doc["people"]:
            values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
            if not values:
                continue  # Pose2Sim writes {} for a person it could not associate
            kp = np.asarray(values, dtype=np.float64).reshape(-1)
            if kp.size % 3:
                raise DataError(f"{file}: pose_keypoints_2d has {kp.size} values, not x, y, c per joint; write the "
                                "JSON with OpenPose's --write_json")
            counts.setdefault(kp.size // 3, []).append(file.name)
            score = float(np.mean(kp[2::3]))
            people.append(Detection(missing_to_nan(kp.reshape(-1, 3)), score, track_id(person.get("person_id"))))
    if not counts:
        raise DataError(f"{path}: OpenPose found no person in {len(files)} frame(s) (every 'people' list is empty); "
                        "check the video and OpenPose's --net_resolution")
    if len(counts) > 1:
        parts = "; ".join(f"{n} joints in {len(names)} file(s) such as {names[0]}"
                          for n, names in sorted(counts.items()))
        raise DataError(f"{path} mixes OpenPose outputs of different models ({parts}); keep one model's files in "
                        "the folder")
    joints = next(iter(counts))
    layout = layout_for(joints, str(path))
    detections = Detections(path, "openpose", frames, layout)
    if joints == 25:
        detections.layout, detections.layout_from = openpose25_layout(detections.keypoints())
    return detections


def _load(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file} is not JSON ({exc}); expected an OpenPose frame file") from exc
