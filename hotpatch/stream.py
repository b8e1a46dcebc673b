"""Frame-by-frame lifting: a ring buffer of the model's F frames, one 3D pose out per 2D frame in.

:class:`Stream` takes one frame of 2D keypoints at a time (:meth:`Stream.push`) and returns the 3D
poses that became ready, each once the model has seen ``delay`` frames after it:

* seq2frame (a seq2frame-patched model, or ``pipeline="seq2frame"``): frame t is the centre of its
  own window, ``t - F//2 .. t + F//2``; one forward per frame. With ``delay = F - 1 - F//2`` (the
  default: all the frames after the centre) this is exactly the offline lift; a smaller delay
  pads the window's future with the newest frame, as the offline lift pads a clip's end.
* seq2seq: a window ending at the newest frame runs every ``hop`` frames, and frame t is read from
  the newest window that has run when frame ``t + delay`` arrives (position ``F - 1 - (end - t)``),
  so one forward serves ``hop`` frames. ``hop`` is at most ``delay + 1`` (the default: the fewest
  forwards; frame t then sees between ``delay - hop + 1`` and ``delay`` frames after it); ``hop=1``
  gives every frame exactly ``delay`` frames after it. ``delay = hop - 1 = F - 1`` is exactly the
  offline lift with ``stride=F``.

At the start the window is padded with the first frame and, in :meth:`Stream.flush` (the end of the
stream), with the last: the offline lift's edge padding (:func:`hotpatch.data.window_frames`).
Poses are root-relative in the model's units, as :func:`hotpatch.lift.lift` returns them.

Inputs are the model's coordinates, or pixels with ``normalize="screen"`` (and ``size``) or
``"box"`` (each window's own bounding box: the offline lift takes the whole clip's, which a stream
does not have yet), normalised by :func:`hotpatch.lift.normalize`. The model is an ``nn.Module``
(patched or not) or an exported ONNX file / onnxruntime session (:class:`hotpatch.export.OnnxModel`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from hotpatch.data import window_frames
from hotpatch.errors import ConfigError, DataError
from hotpatch.evaluate import pipeline_of
from hotpatch.lift import NORMALIZATIONS, normalize as normalize_xy
from hotpatch.untrained import warn_untrained

__all__ = ["Stream"]

#: One emitted pose: (frame index from 0, (17, 3) root-relative pose).
Emitted = tuple[int, np.ndarray]


class Stream:
    """Lift a live stream of 2D keypoints frame by frame (see the module docstring).

    ``model``: an ``nn.Module`` (put in eval mode), an ``.onnx`` path or an onnxruntime session. ``frames`` (F) and the
    input channels default to the model's recorded input shape. ``delay``: frames the model sees after
    the one it emits (default: seq2frame ``F - 1 - F//2``, seq2seq ``F - 1``). Example::

        stream = hotpatch.Stream(patched, delay=30, normalize="screen", size=(1920, 1080))
        for keypoints in camera:                    # (17, 2) pixels, or (17, 3) with scores
            for index, pose in stream.push(keypoints):
                show(index, pose)                   # (17, 3), metres, root-relative
        for index, pose in stream.flush(): ...
    """

    def __init__(self, model: Any, *, delay: int | None = None, hop: int | None = None, frames: int | None = None,
                 pipeline: str | None = None, normalize: str | None = None,
                 size: tuple[int, int] | None = None) -> None:
        if isinstance(model, (str, Path)) or (hasattr(model, "run") and hasattr(model, "get_inputs")):
            from hotpatch.export import OnnxModel

            model = OnnxModel(model)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Stream needs an nn.Module, an .onnx file or an onnxruntime session; got "
                              f"{type(model).__name__}")
        self.model = model.eval()
        warn_untrained(model, "the streamed model")
        shape = _input_shape(model)
        self.frames = int(frames or (shape[0] if shape else 0))
        if self.frames < 1:
            raise ConfigError("the model does not record its clip length; pass frames=F")
        if shape and shape[0] != self.frames:
            raise ConfigError(f"frames={frames} but the model takes {shape[0]}-frame clips")
        self.channels = shape[2] if shape else None
        self.pipeline = pipeline or pipeline_of(model)
        if self.pipeline not in ("seq2seq", "seq2frame"):
            raise ConfigError(f"pipeline={pipeline!r}; expected 'seq2seq' or 'seq2frame'")
        if normalize is not None and normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize={normalize!r} is unknown; use one of {NORMALIZATIONS} (or None: inputs "
                              "already in the model's coordinates)")
        if normalize == "screen" and not size:
            raise ConfigError("normalize='screen' needs the video's frame size: pass size=(width, height)")
        self.normalize, self.size = normalize, size
        self.centre = self.frames // 2
        most = self.frames - 1 - self.centre if self.pipeline == "seq2frame" else self.frames - 1
        self.delay = most if delay is None else int(delay)
        if not 0 <= self.delay <= most:
            raise ConfigError(f"delay={delay}; a {self.pipeline} model with F={self.frames} allows 0 <= delay <= {most}"
                              f"{' (the frames after the centre)' if self.pipeline == 'seq2frame' else ''}")
        self.hop = 1 if self.pipeline == "seq2frame" else (self.delay + 1 if hop is None else int(hop))
        if self.pipeline == "seq2frame" and hop not in (None, 1):
            raise ConfigError(f"hop={hop}: a seq2frame model runs one window per frame; leave hop unset")
        if not 1 <= self.hop <= self.delay + 1:
            raise ConfigError(f"hop={hop}; expected 1 <= hop <= delay + 1 = {self.delay + 1} (a longer hop leaves "
                              "frames that no window has covered when their delay is up)")
        self.reset()

    def reset(self) -> None:
        """Forget every frame: the next :meth:`push` is frame 0 of a new stream."""
        self.seen = 0
        self.emitted = 0
        self.forwards = 0
        self.seconds = 0.0  # spent in the model's forwards
        self._ring: np.ndarray | None = None
        self._window_end = -1
        self._window_out: np.ndarray | None = None

    def push(self, keypoints: np.ndarray) -> list[Emitted]:
        """Add the next frame ((17, C): the model's C channels, or pixels with ``normalize``); return the
        poses this made ready (none until ``delay`` frames have arrived, then one per frame)."""
        frame = self._check(keypoints)
        if self._ring is None:
            self._ring = np.zeros((self.frames, *frame.shape), np.float32)
        self._ring[self.seen % self.frames] = frame
        self.seen += 1
        return self._advance(self.seen - 1)

    def flush(self) -> list[Emitted]:
        """The end of the stream: the poses of the last ``delay`` frames, their future padded with the last frame."""
        out: list[Emitted] = []
        for now in range(self.seen, self.seen + self.delay):
            out += self._advance(now)
        return out

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[Emitted]:
        """Every pose of a finite sequence of frames, in order (:meth:`push` each, then :meth:`flush`)."""
        for keypoints in frames:
            yield from self.push(keypoints)
        yield from self.flush()

    # ------------------------------------------------------------------------------------------

    def _advance(self, now: int) -> list[Emitted]:
        """The clock reached ``now`` (a frame index; past the last frame while flushing)."""
        t = now - self.delay
        if t < 0 or t >= self.seen:
            return []
        if self.pipeline == "seq2frame":
            out = self._forward(t - self.centre + self.frames - 1)
            pose = out[self.centre] if len(out) == self.frames else out[0]
        else:
            if (now - self.delay) % self.hop == 0:
                self._window_out = self._forward(now)
                self._window_end = now
            pose = self._window_out[self.frames - 1 - (self._window_end - t)]  # type: ignore[index]
        self.emitted += 1
        return [(t, (pose - pose[:1]).astype(np.float32))]

    def _forward(self, end: int) -> np.ndarray:
        """The model's (F or 1, 17, 3) output (float64) on the window ending at frame ``end``."""
        idx, _ = window_frames(end - self.frames + 1, self.seen, self.frames)
        window = self._ring[idx % self.frames]  # type: ignore[index]
        if self.normalize is not None:
            width, height = self.size or (None, None)
            xy = normalize_xy(window[..., :2], self.normalize, width=width, height=height)
            window = np.concatenate([xy, window[..., 2:]], axis=-1).astype(np.float32)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(window))[None])
        out = out[0] if isinstance(out, (tuple, list)) else out
        self.seconds += time.perf_counter() - t0
        self.forwards += 1
        return out[0].detach().cpu().double().numpy()

    def _check(self, keypoints: np.ndarray) -> np.ndarray:
        frame = np.asarray(keypoints, dtype=np.float32)
        want = self.channels
        if self.normalize is not None and want == 2 and frame.ndim == 2 and frame.shape[-1] == 3:
            frame = frame[:, :2]  # pixels with detector scores, for a model that takes x, y only
        if frame.ndim != 2 or frame.shape[0] != 17 or frame.shape[1] not in (2, 3) or \
                (want is not None and frame.shape[1] != want):
            need = f"(17, {want})" if want else "(17, 2 | 3)"
            raise DataError(f"frame {self.seen}: keypoints of shape {frame.shape}; expected {need} "
                            f"({'pixels' if self.normalize else 'model coordinates'}, Human3.6M-17 order)")
        if self._ring is not None and frame.shape != self._ring.shape[1:]:
            raise DataError(f"frame {self.seen}: keypoints of shape {frame.shape}; earlier frames were "
                            f"{self._ring.shape[1:]}")
        if not np.isfinite(frame).all():
            raise DataError(f"frame {self.seen}: keypoints hold NaN or inf; fill missing joints before pushing "
                            "(e.g. with the previous frame's)")
        return frame


def _input_shape(model: nn.Module) -> tuple[int, int, int] | None:
    shape = getattr(model, "input_shape", None)  # OnnxModel
    if shape is None:
        shape = (getattr(model, "hotpatch_config", None) or {}).get("input_shape")
    return tuple(int(v) for v in shape) if shape else None  # type: ignore[return-value]
