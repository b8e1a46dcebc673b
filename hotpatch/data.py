"""Pose data for lifting models: Human3.6M (VideoPose3D layout), mocap clips, windows.

Every loader returns ``{"train": [...], "test": [...]}`` lists of :class:`PoseSequence`:
2D inputs in normalised screen coordinates (``x / w * 2 - [1, h / w]``) and root-relative
3D targets in the camera frame, in metres. :class:`WindowDataset` cuts sequences into
F-frame windows (seq2seq or seq2frame, edge-padded) for a torch ``DataLoader``.

Two file formats are read:

* Human3.6M as VideoPose3D prepares it: ``data_3d_h36m.npz`` and ``data_2d_h36m_<det>.npz``.
  These hold *pickled* Python dicts, so :func:`load_h36m` calls ``np.load(allow_pickle=True)``
  -- on the paths you pass it and nothing else. Only load files you trust.
* The mocap clips format of ``shared/data/README.md`` (plain arrays, no pickle), where 2D
  inputs come from projecting the 3D joints through virtual cameras (:func:`load_clips`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from hotpatch.cameras import (  # noqa: F401  (re-exported: hotpatch.data's public API)
    Camera,
    quaternion_to_matrix,
    h36m_camera,
    world_to_camera,
    project_to_pixels,
    normalize_screen_coordinates,
    image_coordinates,
    virtual_camera,
)
from hotpatch.errors import (  # noqa: F401  (the data errors are part of hotpatch.data's API)
    DataError,
    DataFileNotFoundError,
    DataKeyError,
    DataShapeError,
)

log = logging.getLogger(__name__)

__all__ = [
    "H36M_JOINTS_32_TO_17",
    "H36M_LEFT",
    "H36M_RIGHT",
    "H36M_TRAIN_SUBJECTS",
    "H36M_TEST_SUBJECTS",
    "Camera",
    "DataFileNotFoundError",
    "DataKeyError",
    "DataShapeError",
    "PoseSequence",
    "WindowDataset",
    "clip_style",
    "flip_pose",
    "h36m_camera",
    "image_coordinates",
    "load_clips",
    "load_h36m",
    "make_windows",
    "normalize_screen_coordinates",
    "project_to_pixels",
    "quaternion_to_matrix",
    "virtual_camera",
    "window_frames",
    "world_to_camera",
]

# --------------------------------------------------------------------------- skeleton

#: The 17 of Human3.6M's 32 joints that everyone uses (hip, legs, spine, head, arms).
H36M_JOINTS_32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
#: Left / right joints of the 17-joint skeleton, paired in order (hip, knee, foot, shoulder, elbow, wrist).
H36M_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
H36M_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)
H36M_TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
NUM_JOINTS = 17


# --------------------------------------------------------------------------- sequences


@dataclass(eq=False)
class PoseSequence:
    """One continuous sequence seen from one camera.

    ``keypoints``: (N, 17, 2) float32, normalised screen coordinates.
    ``positions``: (N, 17, 3) float32, camera frame, root (joint 0) subtracted, metres.
    ``scores``: optional (N, 17) detector confidences, the third input channel of models that
    take one (default: ones).
    """

    name: str
    keypoints: np.ndarray
    positions: np.ndarray
    camera: Camera | None = field(default=None, repr=False)
    scores: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.positions)


def _make_sequence(name: str, positions_cam: np.ndarray, pixels: np.ndarray, camera: Camera) -> PoseSequence:
    return PoseSequence(
        name=name,
        keypoints=normalize_screen_coordinates(pixels, camera.res_w, camera.res_h).astype(np.float32),
        positions=(positions_cam - positions_cam[:, :1]).astype(np.float32),
        camera=camera,
    )


def _open_npz(path: str | Path, what: str, allow_pickle: bool) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(
            f"{what} file {str(path)!r} does not exist; pass the path to an existing .npz file."
        )
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except Exception as e:  # zip / format errors surface as many types
        raise DataError(
            f"could not read {what} file {str(path)!r} as .npz ({e}); expected a file written by np.savez."
        ) from e


def _get_key(npz: Any, key: str, path: str | Path, expected: str) -> Any:
    if key not in npz.files:
        raise DataKeyError(
            f"{str(path)!r} has no key {key!r} (found keys {sorted(npz.files)}); expected {expected}."
        )
    try:
        return npz[key]
    except ValueError as e:  # object arrays without allow_pickle
        raise DataError(f"key {key!r} of {str(path)!r} could not be read ({e}); expected {expected}.") from e


def _pickled_dict(npz: Any, key: str, path: str | Path, expected: str) -> dict:
    value = _get_key(npz, key, path, expected)
    obj = value.item() if isinstance(value, np.ndarray) and value.dtype == object and value.shape == () else None
    if not isinstance(obj, dict):
        raise DataShapeError(
            f"key {key!r} of {str(path)!r} holds {value.dtype} {value.shape}, not a pickled dict; expected {expected}."
        )
    return obj


def _check_array(a: Any, shape: tuple[int | None, ...], where: str, path: str | Path) -> np.ndarray:
    """Check ``a`` is a numeric array of ``shape`` (None: any size there)."""
    wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    a = np.asarray(a)
    ok = a.dtype.kind in "fiu" and a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape))
    if not ok:
        raise DataShapeError(
            f"{where} in {str(path)!r} is {a.dtype} {a.shape}; expected a numeric array of shape {wanted}."
        )
    return a


def load_h36m(
    path_3d: str | Path,
    path_2d: str | Path | None = None,
    *,
    train_subjects: Sequence[str] = H36M_TRAIN_SUBJECTS,
    test_subjects: Sequence[str] = H36M_TEST_SUBJECTS,
    distort: bool = True,
) -> dict[str, list[PoseSequence]]:
    """Human3.6M in VideoPose3D's layout → ``{"train": [...], "test": [...]}``, one sequence per
    subject, action and camera (named ``"S9/Walking/54138969"``).

    ``path_3d``: ``data_3d_h36m.npz``, key ``positions_3d``: dict subject → action → (N, 32, 3)
    world positions in metres (reduced to the 17 usual joints; (N, 17, 3) is accepted as is).
    ``path_2d``: ``data_2d_h36m_<detector>.npz``, key ``positions_2d``: dict subject → action →
    four (N, 17, 2) pixel arrays (trimmed to the 3D length), and ``metadata``. Without it, the
    2D inputs are the ground-truth projections through the calibrated cameras.

    Both files are pickles: they are opened with ``np.load(allow_pickle=True)``, which can run
    code stored in the file. Only pass paths to files you trust; nothing else is ever loaded.
    """
    poses_3d = _pickled_dict(
        _open_npz(path_3d, "Human3.6M 3D", allow_pickle=True), "positions_3d", path_3d,
        "a pickled dict subject -> action -> (N, 32, 3) array",
    )
    poses_2d = None
    if path_2d is not None:
        npz_2d = _open_npz(path_2d, "Human3.6M 2D", allow_pickle=True)
        poses_2d = _pickled_dict(
            npz_2d, "positions_2d", path_2d, "a pickled dict subject -> action -> [4 x (N, 17, 2)]"
        )
        if "metadata" in npz_2d.files:
            _check_2d_metadata(_pickled_dict(npz_2d, "metadata", path_2d, "a pickled dict"), path_2d)
        else:
            log.warning("%s has no 'metadata'; assuming Human3.6M-17 joint order", path_2d)

    splits: dict[str, list[PoseSequence]] = {}
    for split, subjects in (("train", train_subjects), ("test", test_subjects)):
        splits[split] = []
        for subject in subjects:
            if subject not in poses_3d:
                raise DataKeyError(
                    f"{str(path_3d)!r} has no subject {subject!r} (found {sorted(poses_3d)}); "
                    f"pass {split}_subjects= with subjects the file has."
                )
            cameras = [h36m_camera(subject, i) for i in range(4)]
            for action, world in poses_3d[subject].items():
                world = _check_array(world, (None, None, 3), f"positions_3d[{subject!r}][{action!r}]", path_3d)
                if world.shape[1] == 32:
                    world = world[:, H36M_JOINTS_32_TO_17]
                elif world.shape[1] != NUM_JOINTS:
                    _check_array(world, (None, 32, 3), f"positions_3d[{subject!r}][{action!r}]", path_3d)
                views = _h36m_views(poses_2d, subject, action, len(world), path_2d) if poses_2d is not None else None
                for i, camera in enumerate(cameras):
                    positions_cam = world_to_camera(world, camera)
                    pixels = views[i] if views is not None else project_to_pixels(positions_cam, camera, distort)
                    name = f"{subject}/{action}/{camera.name}"
                    splits[split].append(_make_sequence(name, positions_cam, pixels, camera))
        log.info("Human3.6M %s: %d sequences, %d frames", split, len(splits[split]), sum(map(len, splits[split])))
    return splits


def _check_2d_metadata(metadata: dict, path: str | Path) -> None:
    joints = metadata.get("num_joints", NUM_JOINTS)
    if joints != NUM_JOINTS:
        raise DataShapeError(
            f"{str(path)!r} has num_joints={joints} (layout {metadata.get('layout_name')!r}); "
            f"expected 17 joints in Human3.6M order. Convert the detections to the H36M-17 layout first."
        )
    symmetry = metadata.get("keypoints_symmetry")
    if symmetry is not None and [list(map(int, s)) for s in symmetry] != [list(H36M_LEFT), list(H36M_RIGHT)]:
        raise DataShapeError(
            f"{str(path)!r} has keypoints_symmetry={[list(s) for s in symmetry]}; expected Human3.6M-17's "
            f"{[list(H36M_LEFT), list(H36M_RIGHT)]}. Reorder the joints to the H36M-17 layout first."
        )


def _h36m_views(poses_2d: dict, subject: str, action: str, length: int, path: str | Path | None) -> list[np.ndarray]:
    where = f"positions_2d[{subject!r}][{action!r}]"
    if subject not in poses_2d or action not in poses_2d[subject]:
        raise DataKeyError(
            f"{str(path)!r} has no {where} but the 3D file has that action; expected 2D detections for "
            f"every 3D sequence. Use the matching 2D file, or omit path_2d to use ground-truth projections."
        )
    views = poses_2d[subject][action]
    if not isinstance(views, (list, tuple)) or len(views) != 4:
        raise DataShapeError(
            f"{where} in {str(path)!r} holds {type(views).__name__}; expected a list of 4 camera views."
        )
    out = []
    for i, view in enumerate(views):
        view = _check_array(view, (None, NUM_JOINTS, 2), f"{where}[{i}]", path)
        if len(view) < length:
            raise DataShapeError(
                f"{where}[{i}] in {str(path)!r} has {len(view)} frames but the 3D sequence has {length}; "
                f"expected at least as many 2D frames as 3D frames."
            )
        out.append(view[:length])
    return out


# --------------------------------------------------------------------------- mocap clips


def clip_style(name: str) -> str:
    """The style field of a clip name ``dataset-{1,2}_{content}_{style}_{id}``."""
    name = str(name)
    parts = name.split("_")
    if len(parts) < 4:
        raise DataShapeError(
            f"clip name {name!r} has {len(parts)} '_'-separated fields; expected dataset_content_style_id."
        )
    return parts[2]


def load_clips(
    path: str | Path,
    *,
    cameras_per_clip: int = 4,
    noise_px: float = 0.0,
    seed: int = 0,
    test_styles: Sequence[str] = ("normal",),
    max_clips: int | None = None,
    distance: tuple[float, float] = (4.0, 6.0),
    height: tuple[float, float] = (1.2, 1.5),
    focal: float = 1145.0,
    size: int = 1000,
) -> dict[str, list[PoseSequence]]:
    """Mocap clips (``shared/data/README.md`` layout) seen through virtual cameras.

    Each clip is filmed by ``cameras_per_clip`` cameras at evenly spread azimuths (random
    offset and ±10° jitter), at a world height drawn from ``height`` (chest height, Y up),
    ``distance`` m plus the clip's horizontal travel radius away from the clip's mean joint
    position, looking at it. Gaussian noise of ``noise_px`` pixels is added to the 2D joints.
    Cameras and noise depend only on ``seed`` and the clip's index in the file.

    Split: a clip is a test clip when its style (3rd field of its name) is in ``test_styles``.
    ``max_clips`` keeps that many clips per split, evenly spread through the file.
    Sequences are named ``"{clip name}/cam{k}"``. The file is read without pickle.
    """
    npz = _open_npz(path, "clips", allow_pickle=False)
    positions = _get_key(npz, "positions", path, "(N, 17, 3) float metres")
    positions = _check_array(positions, (None, NUM_JOINTS, 3), "'positions'", path)
    offsets = _get_key(npz, "clip_offsets", path, "(S + 1,) int64 clip boundaries")
    offsets = _check_array(offsets, (None,), "'clip_offsets'", path)
    names = np.asarray(_get_key(npz, "clip_names", path, "(S,) str clip names"))
    if names.ndim != 1 or len(offsets) != len(names) + 1:
        raise DataShapeError(
            f"{str(path)!r} has {names.shape} clip_names and {offsets.shape} clip_offsets; "
            f"expected S names and S + 1 offsets."
        )
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(positions) or np.any(np.diff(offsets) < 1)):
        raise DataShapeError(
            f"clip_offsets in {str(path)!r} run {offsets[:1]}...{offsets[-1:]} for {len(positions)} frames; expected "
            f"strictly increasing offsets from 0 to {len(positions)}."
        )
    if cameras_per_clip < 1:
        raise DataError(f"cameras_per_clip={cameras_per_clip}; expected at least 1.")

    is_test = np.array([clip_style(n) in test_styles for n in names], dtype=bool)
    splits: dict[str, list[PoseSequence]] = {}
    for split, members in (("train", np.flatnonzero(~is_test)), ("test", np.flatnonzero(is_test))):
        if max_clips is not None and len(members) > max_clips:
            members = members[np.linspace(0, len(members) - 1, max_clips).round().astype(int)]
        splits[split] = []
        for c in members:
            clip = positions[offsets[c]:offsets[c + 1]].astype(np.float64)
            splits[split].extend(_film_clip(str(names[c]), clip, int(c), cameras_per_clip, noise_px, seed,
                                            distance, height, focal, size))
        log.info("clips %s: %d clips, %d sequences, %d frames", split, len(members), len(splits[split]),
                 sum(map(len, splits[split])))
    return splits


def _film_clip(
    name: str, clip: np.ndarray, index: int, n: int, noise_px: float, seed: int,
    distance: tuple[float, float], height: tuple[float, float], focal: float, size: int,
) -> list[PoseSequence]:
    """Film one clip with ``n`` virtual cameras; randomness from ``(seed, index)`` only."""
    rng = np.random.default_rng([seed, index])
    target = clip.reshape(-1, 3).mean(0)
    travel = np.max(np.linalg.norm((clip[:, 0] - target)[:, [0, 2]], axis=-1))
    azimuths = rng.uniform(0, 360) + 360 * np.arange(n) / n + rng.uniform(-10, 10, n)
    distances = rng.uniform(*distance, n) + travel
    heights = rng.uniform(*height, n)
    out = []
    for k in range(n):
        camera = virtual_camera(target, azimuths[k] % 360, distances[k], heights[k],
                                focal=focal, size=size, name=f"cam{k}")
        positions_cam = world_to_camera(clip, camera)
        pixels = project_to_pixels(positions_cam, camera)
        if noise_px > 0:
            pixels = pixels + rng.normal(0.0, noise_px, pixels.shape)
        out.append(_make_sequence(f"{name}/cam{k}", positions_cam, pixels, camera))
    return out


# --------------------------------------------------------------------------- windows

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def make_windows(lengths: Sequence[int], frames: int, mode: str = "seq2seq", stride: int | None = None) -> np.ndarray:
    """Windows over sequences of the given lengths, as an int64 array of rows (sequence, start).

    A window covers frames ``start .. start + frames - 1``, clamped to the sequence (edge padding).
    ``seq2seq``: starts every ``stride`` frames (default ``frames``: non-overlapping, every frame
    exactly once) until a window reaches the last frame. ``seq2frame``: one window per centre
    frame ``0, stride, 2·stride, ...`` (default stride 1), centre at offset ``frames // 2``.
    """
    if frames < 1:
        raise DataError(f"frames={frames}; expected a window length of at least 1.")
    if mode not in ("seq2seq", "seq2frame"):
        raise DataError(f"mode={mode!r}; expected 'seq2seq' or 'seq2frame'.")
    stride = stride if stride is not None else (frames if mode == "seq2seq" else 1)
    if stride < 1:
        raise DataError(f"stride={stride}; expected at least 1.")
    rows = []
    for s, n in enumerate(lengths):
        if mode == "seq2seq":
            starts = stride * np.arange(max(0, -(-(n - frames) // stride)) + 1)
        else:
            starts = np.arange(0, n, stride) - frames // 2
        rows.append(np.stack([np.full(len(starts), s), starts], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)


def window_frames(start: int, length: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (frames,) of a window, edge-padded into ``[0, length)``, and its mask of real frames."""
    idx = start + np.arange(frames)
    return np.clip(idx, 0, length - 1), (idx >= 0) & (idx < length)


def flip_pose(x: ArrayT, left: Sequence[int] = H36M_LEFT, right: Sequence[int] = H36M_RIGHT) -> ArrayT:
    """Mirror poses (..., J, C): negate x (channel 0) and swap left/right joints. Its own inverse.

    Works for normalised 2D (centred on the image) and camera-frame 3D, numpy or torch.
    """
    perm = np.arange(x.shape[-2])
    perm[list(left)], perm[list(right)] = list(right), list(left)
    if isinstance(x, torch.Tensor):
        out = x[..., torch.as_tensor(perm, device=x.device), :].clone()
    else:
        out = np.array(x[..., perm, :], copy=True)
    out[..., 0] = -out[..., 0]
    return out


class WindowDataset(Dataset):
    """F-frame windows over :class:`PoseSequence` s, for a torch ``DataLoader``.

    Item ``i`` is a dict: ``inputs`` (F, 17, C) float32 (C = 2, or 3 with a confidence channel
    when ``confidence``: the sequence's ``scores``, or ones), ``targets`` (F, 17, 3) float32, ``valid`` (F,) bool (False on
    edge padding), ``index`` (i). With ``flip_prob > 0`` a window is mirrored (:func:`flip_pose`)
    by a draw that depends only on ``seed``, the epoch (:meth:`set_epoch`) and ``i``.
    In seq2frame mode the window's centre frame is ``frames // 2``.
    """

    def __init__(
        self,
        sequences: Sequence[PoseSequence],
        frames: int,
        *,
        mode: str = "seq2seq",
        stride: int | None = None,
        flip_prob: float = 0.0,
        confidence: bool = False,
        seed: int = 0,
    ) -> None:
        for seq in sequences:
            n = len(seq.positions)
            if n < 1 or seq.keypoints.shape != (n, NUM_JOINTS, 2) or seq.positions.shape != (n, NUM_JOINTS, 3):
                raise DataShapeError(
                    f"sequence {seq.name!r} has keypoints {seq.keypoints.shape} and positions {seq.positions.shape}; "
                    f"expected (N, 17, 2) and (N, 17, 3) with N >= 1."
                )
            if seq.scores is not None and seq.scores.shape != (n, NUM_JOINTS):
                raise DataShapeError(f"sequence {seq.name!r} has scores {seq.scores.shape}; expected ({n}, 17).")
        self.sequences = list(sequences)
        self.frames = frames
        self.mode = mode
        self.flip_prob = flip_prob
        self.confidence = confidence
        self.seed = seed
        self.windows = make_windows([len(s) for s in self.sequences], frames, mode, stride)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Redraw the flips for ``epoch`` (deterministic given the seed)."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        self.flips = rng.random(len(self.windows)) < self.flip_prob

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, start = self.windows[i]
        seq = self.sequences[s]
        idx, valid = window_frames(int(start), len(seq), self.frames)
        inputs, targets = seq.keypoints[idx], seq.positions[idx]
        if self.confidence:  # before flipping: a flip swaps left/right joints, scores included
            scores = seq.scores[idx][..., None] if seq.scores is not None else np.ones_like(inputs[..., :1])
            inputs = np.concatenate([inputs, scores.astype(inputs.dtype)], axis=-1)
        if self.flips[i]:
            inputs, targets = flip_pose(inputs), flip_pose(targets)
        return {
            "inputs": torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
            "targets": torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)),
            "valid": torch.from_numpy(valid),
            "index": int(i),
        }

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``indices`` stacked into one batch (what a DataLoader's default collate gives)."""
        items = [self[int(i)] for i in indices]
        if not items:
            raise DataError("batch() got no indices; expected at least one window index.")
        out = {k: torch.stack([it[k] for it in items]) for k in ("inputs", "targets", "valid")}
        out["index"] = torch.tensor([it["index"] for it in items])
        return out

    def stitch(self, predictions: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Per-window predictions (W, F, 17, 3), in window order, → one (N, 17, 3) array per sequence.

        seq2seq: each real frame comes from the window that covers it (the last one when windows
        overlap). seq2frame: frame t comes from the window centred on t (NaN where no window is
        centred, i.e. with stride > 1). Flipped windows must be un-flipped by the caller.
        """
        pred = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
        if pred.shape[:2] != (len(self.windows), self.frames):
            raise DataShapeError(
                f"predictions have shape {pred.shape}; expected ({len(self.windows)}, {self.frames}, J, 3), "
                f"one per window."
            )
        out = [np.full((len(s),) + pred.shape[2:], np.nan, dtype=pred.dtype) for s in self.sequences]
        bounds = np.searchsorted(self.windows[:, 0], np.arange(len(self.sequences) + 1))
        centre = self.frames // 2
        for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            starts = self.windows[lo:hi, 1]
            if self.mode == "seq2frame":
                out[s][starts + centre] = pred[lo:hi, centre]
            else:
                idx = starts[:, None] + np.arange(self.frames)
                valid = idx < len(out[s])
                out[s][idx[valid]] = pred[lo:hi][valid]
        return out
