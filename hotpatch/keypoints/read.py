"""Reading any supported keypoint file into Human3.6M-17 tracks, one per person."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, to_h36m
from hotpatch.keypoints.annotations import is_annotations, read_annotations
from hotpatch.keypoints.arrays import is_videopose3d, read_array
from hotpatch.keypoints.frames import fill_gaps, video_frames
from hotpatch.keypoints.mediapipe import is_mediapipe, read_mediapipe
from hotpatch.keypoints.model import FIX, Detections
from hotpatch.keypoints.openpose import is_openpose, openpose_files, read_openpose
from hotpatch.keypoints.results import read_results
from hotpatch.keypoints.tracking import Tracks, people, pick_switches

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "KeypointTrack", "check_keypoint_file", "detect_format", "load_detections", "read_keypoints",
           "read_people"]

FORMATS = ("coco", "alphapose", "mmpose", "openpose", "annotations", "mediapipe", "videopose3d", "array")
_ALIASES = {"h36m": "array"}
#: Formats a file of the other's shape may be read as (``--format`` choosing between them).
_INTERCHANGEABLE = ({"coco", "alphapose"},)
DESCRIPTIONS = {
    "coco": "a COCO results list (image_id numbers)", "alphapose": "an AlphaPose results list (image file names)",
    "mmpose": "MMPose predictions", "openpose": "OpenPose JSON (a 'people' list per frame)",
    "annotations": "a COCO-style annotation file (images and annotations)", "mediapipe": "MediaPipe Pose landmarks",
    "videopose3d": "VideoPose3D's custom 2D data set (positions_2d)", "array": "a (T, J, 2|3) keypoint array",
}


@dataclass
class KeypointTrack:
    """One person's 2D keypoints over a video, Human3.6M-17 order, in pixels.

    ``xy``: (T, 17, 2) float32, gaps filled; ``scores``: (T, 17) float32 (0 where a frame had
    no detection); ``filled``: (T, 17) bool, True where the value was interpolated;
    ``missing_frames``: frames with no detection of the person; ``layout``: the file's joint
    layout (``coco17``, ``body25``, ...) and ``layout_from`` how it was told; ``width`` /
    ``height``: the frame size when the file gives it; ``has_scores``: False for an x, y array
    (its ``scores`` are then ones); ``person``: the track id; ``tracking``: how people were
    told apart (``source``, ``people``, ``switches`` of this track, ``best_pick_switches``);
    ``frame_numbers``: the file's number of each frame.
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
    person: Any = None
    layout_from: str = ""
    tracking: dict[str, Any] = field(default_factory=dict)
    frame_numbers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xy)


def check_keypoint_file(path: str | Path, flag: str | None = None) -> Path:
    """``path`` as a Path if it is a file or an OpenPose output folder; else a one-line ``DataError``.
    ``flag`` names the command-line option the path came from."""
    path = Path(path)
    what = f"{flag} {path}" if flag else f"keypoint file {str(path)!r}"
    if path.is_dir():
        if openpose_files(path):
            return path
        raise DataError(f"{what} is a directory without OpenPose frame files; pass the detector's output file in it "
                        "(a .json, .npy or .npz file), or the folder OpenPose wrote with --write_json")
    if not path.is_file():
        raise DataError(f"{what} does not exist; pass the path of a detector's output.")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}); expected a detector's keypoint output "
                        "(COCO / AlphaPose / OpenPose / MMPose / MediaPipe JSON) or a .npy/.npz array.") from exc


def detect_format(path: str | Path, data: Any = None) -> str:
    """The format of ``path`` (one of :data:`FORMATS`), from its suffix and contents."""
    path = Path(path)
    if path.is_dir():
        return "openpose"
    if path.suffix.lower() in (".npy", ".npz"):
        return "videopose3d" if path.suffix.lower() == ".npz" and is_videopose3d(path) else "array"
    data = _read_json(path) if data is None else data
    found = _json_format(data)
    if found is None:
        raise DataError(
            f"{path}: cannot tell the keypoint format ({_shape(data)}); expected "
            f"{', '.join(DESCRIPTIONS[f] for f in FORMATS)}; pass --format one of {', '.join(FORMATS)}."
        )
    return found


def _json_format(data: Any) -> str | None:
    if is_openpose(data):
        return "openpose"
    if is_annotations(data):
        return "annotations"
    if is_mediapipe(data):
        return "mediapipe"
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
    return None


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        return f"found an object with keys {sorted(map(str, data))[:6]}"
    if isinstance(data, list):
        return f"found a list of {len(data)} {type(data[0]).__name__ if data else 'items'}"
    return f"found a {type(data).__name__}"


def load_detections(path: str | Path, *, format: str | None = None, layout: str | None = None,
                    trust: bool = False) -> Detections:
    """Every detection of a keypoint file (or OpenPose folder), in its own joint layout."""
    path = check_keypoint_file(path)
    format = _ALIASES.get(format, format)
    if format is not None and format not in FORMATS:
        raise DataError(f"format={format!r} is unknown; use one of {', '.join(FORMATS)}.")
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"layout={layout!r} is unknown; use one of {', '.join(LAYOUTS)}.")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a detector's keypoint output.")
    data = None
    if path.is_dir() or path.suffix.lower() in (".npy", ".npz"):
        found = detect_format(path)
    else:
        data = _read_json(path)
        found = _json_format(data)
        if found is None and format is None:
            detect_format(path, data)  # raises, naming what was found
    if format is not None and found is not None and format != found and not any(
            {format, found} <= group for group in _INTERCHANGEABLE):
        raise DataError(f"--format {format}, but {path} is {DESCRIPTIONS[found]}; drop --format (it is read as "
                        f"{found})")
    fmt = format or found
    try:
        det = _read(path, fmt, data, layout, trust)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise DataError(f"{path} is not a valid {fmt} keypoint file ({type(exc).__name__}: {str(exc)[:120]}); "
                        f"{FIX} with the right format.") from exc
    if layout is not None and det.layout.name != layout:
        if LAYOUTS[layout].joints != det.layout.joints:
            raise DataError(f"--layout {layout} has {LAYOUTS[layout].joints} joints but {path} holds "
                            f"{det.layout.joints} per person ({det.layout.description}); drop --layout")
        det.layout, det.layout_from = LAYOUTS[layout], "--layout"
    return det


def _read(path: Path, fmt: str, data: Any, layout: str | None, trust: bool) -> Detections:
    if fmt in ("array", "videopose3d"):
        return read_array(path, layout, trust)
    if fmt == "openpose":
        return read_openpose(path, data)
    if fmt == "annotations":
        return read_annotations(data, path)
    if fmt == "mediapipe":
        return read_mediapipe(data, path)
    return read_results(data, fmt, path)


def _pixels(det: Detections, size: tuple[int, int] | None) -> None:
    """Normalised (MediaPipe) coordinates to pixels, in place."""
    if not det.normalized:
        return
    w, h = size if size is not None else (det.width, det.height)
    if not w or not h:
        raise DataError(f"{det.path}: {DESCRIPTIONS[det.format]} give x, y as fractions of the frame (0 to 1); pass "
                        "--size WxH (or --video IN.mp4) so they can be turned into pixels")
    for dets in det.frames.values():
        for d in dets:
            d.keypoints[:, 0] *= w
            d.keypoints[:, 1] *= h
    det.width, det.height, det.normalized = int(w), int(h), False


def _choose(tracks: Tracks, person: Any, path: Path) -> list[int]:
    """Indices of the tracks to lift: the main one (None), every one long enough ("all"), or the id given."""
    seen = tracks.frames_seen()
    if person is None:
        return [int(np.argmax(tracks.weight()))]
    if isinstance(person, str) and person == "all":
        long_enough = max(2, int(np.ceil(MIN_SHARE * tracks.scores.shape[1])))
        chosen = [i for i in range(len(tracks)) if seen[i] >= min(long_enough, tracks.scores.shape[1])]
        if not chosen:
            raise DataError(f"{path}: no person is detected in {long_enough} frames or more; nobody to lift")
        return chosen
    wanted = {person, str(person)}
    if isinstance(person, str) and person.lstrip("-").isdigit():
        wanted.add(int(person))
    match = [i for i, v in enumerate(tracks.ids) if v in wanted]
    if not match:
        listed = ", ".join(f"{v} ({seen[i]} frames)" for i, v in enumerate(tracks.ids[:20]))
        raise DataError(f"{path}: no person has track id {person} (people in the file, by {tracks.source}: {listed}); "
                        "pass one of those to --person, or --person all")
    return match


#: ``person="all"`` lifts the tracks detected in at least this share of the video's frames.
MIN_SHARE = 0.25


def read_people(
    path: str | Path,
    *,
    person: Any = "all",
    format: str | None = None,
    layout: str | None = None,
    min_score: float = 0.3,
    frame_numbers: str = "file",
    size: tuple[int, int] | None = None,
    trust: bool = False,
) -> list[KeypointTrack]:
    """Read a keypoint file (or OpenPose folder) into filled Human3.6M-17 tracks: the main person
    (``person=None``), every person seen in at least :data:`MIN_SHARE` of the frames (``"all"``),
    or the one with track id ``person``. ``size`` turns normalised coordinates into pixels."""
    det = load_detections(path, format=format, layout=layout, trust=trust)
    _pixels(det, size)
    frames, numbers = video_frames(det.frames, det.path, frame_numbers)
    tracks = people(frames, det.layout.joints)
    before = pick_switches(tracks)
    out = []
    chosen = _choose(tracks, person, det.path)
    for i in chosen:
        kp = to_h36m(tracks.keypoints[i], det.layout)
        xy, scores = kp[..., :2], kp[..., 2]
        missing = ~np.isfinite(tracks.scores[i])
        try:
            xy, filled = fill_gaps(xy, scores, min_score, f"{det.path}{_who(tracks, i)}")
        except DataError as err:
            if len(chosen) == 1:
                raise
            log.warning("skipping person %s: %s", tracks.ids[i], err)
            continue
        scores = np.where(np.isnan(scores), 0.0, scores)
        switches = [t for t, k in tracks.switches if k == i]
        info = {"source": tracks.source, "people": len(tracks), "frames_seen": int((~missing).sum()),
                "switches": [int(numbers[t]) for t in switches], "best_pick_switches": before}
        if filled.any():
            log.warning("%s%s: filled %d frame(s) without the person and %d low-score or undetected joint(s) "
                        "(score < %g) by interpolation", det.path.name, _who(tracks, i), int(missing.sum()),
                        int(filled[~missing].sum()), min_score)
        if switches:
            log.warning("%s%s: %d possible identity switch(es) (the person jumps more than half a body size between "
                        "frames) at frame(s) %s; check the 2D track (keypoints_2d) or pick another with --person",
                        det.path.name, _who(tracks, i), len(switches), info["switches"][:10])
        out.append(KeypointTrack(xy.astype(np.float32), scores.astype(np.float32), filled, int(missing.sum()),
                                 det.format, det.width, det.height, det.layout.name, det.has_scores, tracks.ids[i],
                                 det.layout_from, info, numbers))
    if not out:
        raise DataError(f"{det.path}: none of the {len(chosen)} people seen long enough can be lifted (each misses "
                        "a joint in every frame; see the warnings); lower --min-score or check the file")
    if len(tracks) > 1 and person is None:
        i = _choose(tracks, None, det.path)[0]
        log.info("%s: %d people (%s); lifting person %s, detected in %d of %d frames (the most); --person ID picks "
                 "another, --person all lifts each", det.path.name, len(tracks), tracks.source, tracks.ids[i],
                 tracks.frames_seen()[i], len(frames))
    return out


def _who(tracks: Tracks, i: int) -> str:
    return f" (person {tracks.ids[i]})" if len(tracks) > 1 else ""


def read_keypoints(path: str | Path, *, format: str | None = None, person: Any = None, min_score: float = 0.3,
                   **kwargs: Any) -> KeypointTrack:
    """Read a keypoint file into one filled Human3.6M-17 track: the main person, or track ``person``
    (see :func:`read_people`)."""
    if isinstance(person, str) and person == "all":
        raise DataError("read_keypoints reads one person; use read_people(path, person='all') for everyone")
    return read_people(path, person=person, format=format, min_score=min_score, **kwargs)[0]
