"""Keypoint annotation files in the COCO style: COCO, PoseTrack and MMPose's dataset files.

``{"images": [{"id", "file_name", "frame_id"?, "vid_id"?, "width", "height"}], "annotations":
[{"image_id", "keypoints": [x, y, v] * J, "track_id"?, "score"?}], "categories": [{"keypoints":
[names]}]}``. The joint layout comes from the category's joint names (PoseTrack's ``head_bottom``
/ ``head_top`` differ from COCO's eyes), else from the count. A frame's number is the last number
in its image's file name (``images/val/012834_mpii_test/000017.jpg``: 17), else its ``frame_id``,
else its ``id``; frames listed without annotations count as frames with nobody in them. Tracks come
from ``track_id``. Visibility flags ``v`` (0, 1, 2) stand for scores; ``v = 0`` is not labelled.
A file holding several videos (``vid_id``) is refused: lift one video per file.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, layout_for
from hotpatch.keypoints.model import FIX, Detection, Detections, missing_to_nan, track_id

__all__ = ["is_annotations", "read_annotations"]

_POSETRACK_NAMES = ("nose", "head_bottom", "head_top")
_COCO_NAMES = ("nose", "left_eye", "right_eye")


def is_annotations(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("annotations"), list) and isinstance(data.get("images"), list)


def _frame(image: dict, path: Path) -> int:
    name = image.get("file_name")
    if isinstance(name, str):
        digits = re.findall(r"\d+", PurePosixPath(name).stem)
        if digits:
            return int(digits[-1])
    for key in ("frame_id", "id"):
        if isinstance(image.get(key), (int, float)) and not isinstance(image.get(key), bool):
            return int(image[key])
    raise DataError(f"{path}: image {str(image)[:80]} has no file name with a number, frame_id or id; {FIX}")


def _video(image: dict) -> str:
    if image.get("vid_id") is not None:
        return str(image["vid_id"])
    name = image.get("file_name")
    return str(PurePosixPath(name).parent) if isinstance(name, str) else ""


def read_annotations(data: dict, path: Path) -> Detections:
    """The detections of a COCO-style keypoint annotation (or detection result) file."""
    images = {img.get("id"): img for img in data["images"] if isinstance(img, dict)}
    videos = sorted({_video(img) for img in images.values()})
    if len(videos) > 1:
        raise DataError(f"{path} holds the annotations of {len(videos)} videos ({', '.join(videos[:5])}"
                        f"{', ...' if len(videos) > 5 else ''}); hotpatch lifts one video per file: write each "
                        "video's images and annotations to a file of its own")
    frames: dict[int, list[Detection]] = {_frame(img, path): [] for img in images.values()}
    joints = set()
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "keypoints" not in ann:
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            raise DataError(f"{path}: an annotation refers to image_id {ann.get('image_id')!r}, which is not in "
                            f"'images'; {FIX}")
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1)
        if kp.size % 3:
            raise DataError(f"{path}: an annotation has {kp.size} keypoint values, not x, y, v per joint; {FIX}")
        kp = kp.reshape(-1, 3)
        joints.add(len(kp))
        kp = missing_to_nan(kp)
        labelled = np.isfinite(kp[:, 0])
        if "score" not in ann:  # ground truth: visibility flags, not confidences
            kp[:, 2] = np.where(labelled & (kp[:, 2] > 0), 1.0, np.where(labelled, 0.5, np.nan))
        score = float(ann.get("score", labelled.mean()))
        frames[_frame(image, path)].append(Detection(kp, score, track_id(ann.get("track_id"))))
    if not joints:
        raise DataError(f"{path} holds no keypoint annotations; expected 'annotations' with 'keypoints'")
    if len(joints) > 1:
        raise DataError(f"{path} mixes annotations of {sorted(joints)} joints; expected one layout per file ({FIX}).")
    count = joints.pop()
    layout, how = layout_for(count, str(path)), "joint count"
    names = tuple(next((c.get("keypoints") for c in data.get("categories") or [] if isinstance(c, dict)
                        and isinstance(c.get("keypoints"), list)), None) or ())
    if len(names) == count == 17:
        if names[:3] == _POSETRACK_NAMES:
            layout, how = LAYOUTS["posetrack17"], "joint names (PoseTrack: head_bottom, head_top)"
        elif names[:3] == _COCO_NAMES:
            how = "joint names (COCO)"
    sizes = {(img.get("width"), img.get("height")) for img in images.values()}
    width, height = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    det = Detections(path, "annotations", frames, layout, how,
                     int(width) if isinstance(width, (int, float)) else None,
                     int(height) if isinstance(height, (int, float)) else None)
    return det
