"""Lift a whole video's 2D keypoints to 3D with a (patched) lifting model.

A clip of any length is cut into windows of the model's F frames (:func:`hotpatch.data.make_windows`,
edge-padded where the clip is shorter than F or at its end) and predicted in batches:

* seq2seq: windows every ``stride`` frames (default ``3F/4``: a quarter of each window overlaps the
  next); each frame's pose is the mean of the predictions of every window that covers it;
* seq2frame: one window centred on every frame; each frame's pose is its window's centre frame.

The model's input is normalised as it was trained (:func:`normalize`): ``"screen"`` coordinates as
in VideoPose3D (``x / w * 2 - [1, h / w]``, needs the image size), or ``"box"``, the clip's 2D
bounding box scaled to [-1, 1] (MotionBERT's in-the-wild convention); 3-channel models also get
the detector's scores. The output is root-relative (joint 0 at the origin), in the model's units
(metres for models trained on Human3.6M or the shared clips).

:func:`lift_people` does it all for one keypoint file, as ``hotpatch lift`` does: read the file
(every person, or one), take the model's input convention (:mod:`hotpatch.conventions`) and the
frame size, lift each person, summarise the poses (:mod:`hotpatch.pose_stats`) and optionally
write the ``.npz``; :func:`lift_file` is its one-person form. A patched model whose TRA never
learned (zero queries) lifts with linear recovery instead, and says so (``recovery="as-is"`` keeps it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from hotpatch.conventions import NORMALIZATIONS, InputConvention, body_extent, convention_of
from hotpatch.data import PoseSequence, WindowDataset, normalize_screen_coordinates
from hotpatch.errors import ConfigError, DataError
from hotpatch.evaluate import pipeline_of, predict
from hotpatch.keypoints import KeypointTrack, frame_size, outside_frame, read_people
from hotpatch.pose_stats import pose_summary, pose_warnings
from hotpatch.untrained import RECOVERY, RECOVERY_NOTE, zero_retraining

log = logging.getLogger(__name__)

__all__ = ["LiftResult", "LiftedFile", "NORMALIZATIONS", "RECOVERY", "lift", "lift_file", "lift_people", "lift_track",
           "normalize", "write_lifted"]



@dataclass
class LiftResult:
    """``poses``: (T, 17, 3) root-relative 3D; ``inputs``: (T, 17, C) what the model saw;
    ``seconds``: time spent in the model's forwards (batching included, after one warm-up
    batch); ``fps``: T / seconds."""

    poses: np.ndarray
    inputs: np.ndarray
    frames: int
    pipeline: str
    stride: int
    windows: int
    seconds: float

    @property
    def fps(self) -> float:
        return len(self.poses) / self.seconds if self.seconds > 0 else float("inf")


def normalize(xy: np.ndarray, mode: str = "screen", *, width: int | None = None, height: int | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels (T, J, 2) -> the model's input coordinates (see the module docstring).

    ``valid`` (T, J) marks the joints the ``"box"`` bounding box is taken over (default: all).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if mode == "screen":
        if not width or not height:
            raise ConfigError("screen normalisation needs the image size: pass --width and --height (the video's "
                              "frame size in pixels), or --normalize box")
        return normalize_screen_coordinates(xy, width, height)
    if mode == "box":
        pts = xy[valid] if valid is not None and valid.any() else xy.reshape(-1, 2)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        scale = float(max(hi - lo))
        if scale <= 0:
            raise DataError("the keypoints do not move apart (zero-size bounding box); cannot normalise them")
        return (xy - (lo + hi) / 2) / scale * 2
    raise ConfigError(f"normalize={mode!r} is unknown; use one of {NORMALIZATIONS}")


def lift(
    model: nn.Module,
    inputs: np.ndarray,
    *,
    frames: int,
    pipeline: str | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    flip: bool = False,
    compile: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    warmup: bool = True,
) -> LiftResult:
    """Lift normalised inputs (T, 17, C) with ``model`` (F = ``frames``) to (T, 17, 3).

    ``pipeline`` defaults to the model's (seq2frame for a seq2frame-patched model); ``stride``
    to ``3F/4`` (seq2seq) or 1 (seq2frame). ``flip`` averages with the mirrored input's
    prediction (test-time augmentation). ``compile`` (a ``torch.compile`` mode) lifts with the
    compiled model; compilation happens in the untimed warm-up. ``warmup=False`` skips it, for a
    model that has just lifted another clip (it is warm; a short clip's warm-up would double its cost).
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 3 or inputs.shape[1] != 17 or inputs.shape[2] not in (2, 3) or len(inputs) == 0:
        raise DataError(f"inputs have shape {inputs.shape}; expected (T, 17, 2|3) with T >= 1")
    mode = pipeline or pipeline_of(model)
    if stride is None:
        stride = max(1, frames - frames // 4) if mode == "seq2seq" else 1
    if stride < 1 or (mode == "seq2seq" and stride > frames):
        raise ConfigError(f"stride={stride}; expected 1 <= stride <= F={frames} (a larger one skips frames)")
    n = len(inputs)
    seq = PoseSequence("clip", np.ascontiguousarray(inputs[..., :2]), np.zeros((n, 17, 3), np.float32),
                       scores=np.ascontiguousarray(inputs[..., 2]) if inputs.shape[2] == 3 else None)
    dataset = WindowDataset([seq], frames, mode=mode, stride=stride, confidence=inputs.shape[2] == 3)
    if compile is not None:
        import torch

        model = torch.compile(model, mode=compile, fullgraph=True)
    # warm-up outside the timed run (lazy initialisation, caches, compilation): a full batch and,
    # if the last batch is smaller, one of its size (a compiled model specialises on it)
    for size in sorted({min(batch_size, len(dataset)), len(dataset) % batch_size} - {0}) if warmup or compile else ():
        predict(model, dataset, batch_size=batch_size, flip=flip, windows=np.arange(size))
    t0 = time.perf_counter()
    preds = predict(model, dataset, batch_size=batch_size, flip=flip, progress=progress)
    seconds = time.perf_counter() - t0
    poses = _stitch(preds.poses, dataset.windows[:, 1], n, frames, mode)
    poses = poses - poses[:, :1]
    return LiftResult(poses.astype(np.float32), inputs, frames, mode, stride, len(dataset), seconds)


def _stitch(pred: np.ndarray, starts: np.ndarray, length: int, frames: int, mode: str) -> np.ndarray:
    """Per-window predictions -> one pose per frame (the mean over the windows covering it)."""
    total = np.zeros((length,) + pred.shape[2:], np.float64)
    count = np.zeros(length, np.int64)
    if mode == "seq2frame":
        centre = starts + frames // 2
        np.add.at(total, centre, pred[:, 0])
        np.add.at(count, centre, 1)
    else:
        idx = starts[:, None] + np.arange(frames)
        real = (idx >= 0) & (idx < length)
        np.add.at(total, idx[real], pred[real])
        np.add.at(count, idx[real], 1)
    if (count == 0).any():
        raise DataError(f"{int((count == 0).sum())} frames got no prediction; use a smaller stride")
    return total / count[:, None, None]


def lift_track(
    model: nn.Module,
    track: KeypointTrack,
    *,
    frames: int,
    channels: int,
    normalization: str = "screen",
    width: int | None = None,
    height: int | None = None,
    **kwargs: Any,
) -> LiftResult:
    """:func:`lift` a :class:`~hotpatch.keypoints.KeypointTrack` (pixels) after :func:`normalize`;
    ``channels`` = 3 adds the scores as the third input channel."""
    if channels not in (2, 3):
        raise ConfigError(f"the model takes {channels} input channels; lifting needs 2 (x, y) or 3 (x, y, score)")
    xy = normalize(track.xy, normalization, width=width or track.width, height=height or track.height,
                   valid=~track.filled)
    inputs = np.concatenate([xy, track.scores[..., None]], axis=-1) if channels == 3 else xy
    return lift(model, inputs, frames=frames, **kwargs)


def mean_joint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding joints of two (T, J, 3) arrays."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).mean())


# ----------------------------------------------------------------------------- one call


@dataclass
class LiftedFile:
    """One person lifted from a keypoint file: ``poses`` (T, 17, 3) in metres, root-relative; the
    ``track`` read (its 2D keypoints in pixels, gaps filled); the ``result`` of :func:`lift`; the
    JSON-able ``summary`` (settings, the input convention used and where it came from, frame
    size, frames/s, ``poses``: bone-length statistics in mm, ``warnings``); ``arrays``: what the
    ``.npz`` holds."""

    poses: np.ndarray
    track: KeypointTrack
    result: LiftResult
    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def resolve_convention(model: nn.Module, channels: int | None,
                       normalize: str | None = None) -> tuple[InputConvention, str]:
    """The convention to lift with and how it was chosen (``"from recipe mixste"``, ``"from the
    model file"``, ``"as given; ..."``): the model's (its file or recipe),
    ``normalize`` overriding its normalisation; a model that records none gets screen
    coordinates (with a warning) and scores when it takes 3 channels."""
    conv, where = convention_of(model, channels)
    if conv is not None and conv.joints != "h36m17":
        raise ConfigError(f"the model ({where}) takes its keypoints in {conv.joints} joint order; lifting reads "
                          "detector files into Human3.6M-17 order and has no conversion to that one. Lift with a "
                          "model trained on Human3.6M-17 input (e.g. the recipes mixste, motionbert, mhformer)")
    if conv is None:
        conv = InputConvention("screen" if normalize is None else normalize, channels == 3)
        if normalize is None:
            log.warning("%s; lifting with %s. Pass --normalize if it was trained otherwise.", where, conv.describe())
            return conv, "the default; the model records none"
        return conv, "as given"
    if normalize is not None and normalize != conv.normalize:
        # the recorded extent range is in the recorded normalisation's units: not comparable any more
        return (replace(conv, normalize=normalize, extent=None),
                f"as given; the model's ({where}) is {conv.normalize}")
    return conv, f"from {where}"


def lift_people(
    model: nn.Module,
    keypoints: str | os.PathLike,
    *,
    person: Any = "all",
    out: str | os.PathLike | None = None,
    frames: int | None = None,
    channels: int | None = None,
    normalize: str | None = None,
    convention: tuple[InputConvention, str] | None = None,
    size: tuple[int, int] | None = None,
    video_size: tuple[int, int] | None = None,
    format: str | None = None,
    layout: str | None = None,
    min_score: float = 0.3,
    frame_numbers: str = "file",
    trust: bool = False,
    recovery: str = "parameter-free",
    **kwargs: Any,
) -> list[LiftedFile]:
    """Lift the people of a detector's keypoint file with ``model``; write ``out`` (``.npz``) if given.

    ``person``: ``"all"`` (everyone seen long enough, each its own result), None (the main
    person) or a track id. ``frames`` / ``channels`` default to the patched model's input shape
    (pass ``frames`` for an unpatched model). The input convention is the model's (``normalize``
    overrides its normalisation; ``convention`` = (convention, how chosen) replaces it); the frame
    size is ``size``, else ``video_size``, else the file's, else an assumption that is logged.
    ``format`` / ``layout`` / ``frame_numbers`` / ``trust`` go to
    :func:`~hotpatch.keypoints.read_people`; other keyword arguments to :func:`lift`.
    """
    shape = list((getattr(model, "hotpatch_config", None) or {}).get("input_shape") or [])
    frames = frames or (shape[0] if shape else None)
    if frames is None:
        raise ConfigError("lifting needs the model's clip length: pass frames=F (a patched model knows it)")
    model, _ = zero_retraining(model, recovery)
    conv, conv_from = convention or resolve_convention(model, channels or (shape[2] if shape else None), normalize)
    channels = channels or conv.channels
    tracks = read_people(keypoints, person=person, format=format, layout=layout, min_score=min_score,
                         frame_numbers=frame_numbers, size=size or video_size, trust=trust)
    lifted = []
    for track in tracks:
        if conv.scores and not track.has_scores:
            raise DataError(f"{keypoints} holds x, y only, but the model takes detector scores as a third channel "
                            f"({conv_from}); give a file with scores (a detector's JSON or a (T, 17, 3) array)")
        width = height = size_from = None
        if conv.normalize == "screen":
            width, height, size_from = frame_size(track, size, video=video_size)
        result = lift_track(model, track, frames=frames, channels=channels, normalization=conv.normalize,
                            width=width, height=height, **kwargs)
        summary = _summary(model, keypoints, track, result, conv, conv_from, (width, height), size_from, frames)
        arrays = {"poses_3d": result.poses, "keypoints_2d": track.xy, "scores_2d": track.scores,
                  "filled_2d": track.filled, "inputs": result.inputs}
        lifted.append(LiftedFile(result.poses, track, result, summary, arrays))
    if out is not None:
        write_lifted(out, lifted, several=person == "all")
    return lifted


def _summary(model: nn.Module, keypoints: Any, track: KeypointTrack, result: LiftResult, conv: InputConvention,
             conv_from: str, size: tuple[Any, Any], size_from: str | None, frames: int) -> dict[str, Any]:
    stats = pose_summary(result.poses)
    warnings = pose_warnings(stats)
    if conv.extent is not None:
        seen = float(np.median(body_extent(result.inputs)))
        lo, hi = conv.extent
        if not lo <= seen <= hi:
            warnings.append(f"the input body's extent (median {seen:.3f} in normalised units) lies outside what the "
                            f"model saw in training ({lo:.3f}-{hi:.3f}); check the frame size (--size) and "
                            "--normalize")
    outside = outside_frame(track.xy[~track.filled], *size) if size[0] else None
    if outside:
        warnings.append(outside)
    config = dict(model.hotpatch_config) if hasattr(model, "hotpatch_config") else None
    who = f"person {track.person}: " if track.tracking.get("people", 1) > 1 else ""
    for line in warnings:
        log.warning("%s%s", who, line)
    return {
        "keypoints": str(keypoints), "format": track.format, "layout": track.layout, "layout_from": track.layout_from,
        "person": track.person, "tracking": track.tracking, "frames": len(track),
        "missing_frames": track.missing_frames, "filled_joints": int(track.filled.sum()), "window": frames,
        "stride": result.stride, "windows": result.windows, "pipeline": result.pipeline,
        "normalize": conv.normalize, "input": {**conv.to_dict(), "from": conv_from},
        "frame_size": [size[0], size[1]] if size[0] else None, "frame_size_from": size_from,
        "fps": result.fps, "seconds": result.seconds, "poses": stats, "warnings": warnings,
        "config": config,
        **({"recovery_note": RECOVERY_NOTE} if config and config.get("recover_replaced") else {}),
    }


def lift_file(model: nn.Module, keypoints: str | os.PathLike, *, person: Any = None,
              out: str | os.PathLike | None = None, **kwargs: Any) -> LiftedFile:
    """Lift one person of a detector's keypoint file (the main one, or track ``person``); write ``out``
    (``.npz``) if given. Keyword arguments as :func:`lift_people`. Example::

        lifted = hotpatch.lift_file(patched, "alphapose-results.json", out="poses.npz")
        lifted.poses.shape, lifted.summary["poses"]["bones"]["thigh"], lifted.summary["warnings"]
    """
    if isinstance(person, str) and person == "all":
        raise ConfigError("lift_file lifts one person; use hotpatch.lift_people(model, path) for everyone")
    return lift_people(model, keypoints, person=person, out=out, **kwargs)[0]


def stacked(lifted: list[LiftedFile], several: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``.npz`` arrays and JSON summary of one file's lifted people: (T, ...) arrays and the
    person's summary for one person; (P, T, ...) arrays, ``person_ids`` and a summary with
    ``people`` (one summary each) when ``several``."""
    if not several:
        return dict(lifted[0].arrays), dict(lifted[0].summary)
    arrays = {k: np.stack([x.arrays[k] for x in lifted]) for k in lifted[0].arrays}
    arrays["person_ids"] = np.asarray([str(x.track.person) for x in lifted])
    first = lifted[0].summary
    shared = {k: first[k] for k in ("keypoints", "format", "layout", "layout_from", "frames", "window", "stride",
                                    "pipeline", "normalize", "input", "frame_size", "frame_size_from", "config")}
    shared["tracking"] = {k: v for k, v in first["tracking"].items() if k in ("source", "people", "best_pick_switches")}
    shared["windows"] = sum(x.summary["windows"] for x in lifted)
    shared["seconds"] = sum(x.summary["seconds"] for x in lifted)
    shared["fps"] = sum(len(x.poses) for x in lifted) / shared["seconds"] if shared["seconds"] > 0 else float("inf")
    if "recovery_note" in first:
        shared["recovery_note"] = first["recovery_note"]
    shared["people"] = [{k: v for k, v in x.summary.items() if k not in shared} for x in lifted]
    shared["warnings"] = [f"person {x.track.person}: {w}" for x in lifted for w in x.summary["warnings"]]
    return arrays, shared


def write_lifted(path: str | os.PathLike, lifted: list[LiftedFile], *, several: bool = False) -> Path:
    """Write one file's lifted people to ``path`` (``.npz``, see :func:`stacked`)."""
    arrays, summary = stacked(lifted, several)
    return write_npz(path, arrays, summary)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> Path:
    """``np.savez`` of ``arrays`` and the JSON ``summary`` to exactly ``path``, through a temporary file beside it."""
    from hotpatch import atomic

    return atomic.write_npz(path, **arrays, summary=np.array(json.dumps(summary, default=str)))
