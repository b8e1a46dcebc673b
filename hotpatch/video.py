"""Frames of the video a keypoint file comes from (imageio; the ``plot`` extra).

``VideoFrames(path)`` opens the video once to read its frame size; ``frame(t)`` returns frame
``t`` as (H, W, 3) uint8, reading forward through the file (the renderer asks for frames in
order, so each is decoded once). GIFs and other image sequences are read through Pillow; MP4
and other codecs need imageio's PyAV plugin (``pip install av``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError, HotpatchError

__all__ = ["VideoFrames"]


def _imageio() -> Any:
    try:
        import imageio.v3 as iio
    except ImportError as exc:
        raise HotpatchError("reading --video needs imageio: pip install 'hotpatch[plot]'") from exc
    return iio


class VideoFrames:
    """The frames of the video at ``path``, read in order (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video {str(self.path)!r} does not exist; pass the video the keypoints were detected in.")
        self._iio = _imageio()
        self._iter: Iterator[np.ndarray] | None = None
        self._next = 0
        self._last: np.ndarray | None = None
        first = self.frame(0)
        self.size: tuple[int, int] = (int(first.shape[1]), int(first.shape[0]))

    def _open(self) -> Iterator[np.ndarray]:
        try:
            return iter(self._iio.imiter(self.path))
        except ImportError as exc:  # imageio names the plugin it lacks (pyav for most video codecs)
            raise HotpatchError(f"reading {self.path.name} needs a video plugin for imageio ({exc}); install PyAV: "
                                "pip install av") from exc
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"cannot read video {self.path} ({type(exc).__name__}: {str(exc)[:120]}); pass a "
                            "video file (.mp4 with PyAV installed, .gif)") from exc

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` (0-based) as (H, W, 3) uint8; past the end, the last frame."""
        if self._iter is None or t < self._next - 1:
            self._iter, self._next, self._last = self._open(), 0, None
        if t == self._next - 1 and self._last is not None:
            return self._last
        while self._next <= t:
            try:
                image = next(self._iter)
            except StopIteration:
                if self._last is None:
                    raise DataError(f"video {self.path} has no frames; pass the video the keypoints come from") \
                        from None
                return self._last
            except Exception as exc:  # imageio opens the file lazily: no plugin, or a decoder error
                raise _read_error(self.path, self._next, exc) from exc
            self._last, self._next = _rgb(image), self._next + 1
        assert self._last is not None
        return self._last


def _read_error(path: Path, frame: int, exc: BaseException) -> HotpatchError:
    """What to do when frame ``frame`` of ``path`` cannot be read."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ImportError) or "backend" in text or "plugin" in text:
        return HotpatchError(f"imageio has no plugin that reads {path.name}; install PyAV (pip install av) for "
                             ".mp4 and other video files, or pass the video as a .gif")
    return DataError(f"cannot decode frame {frame} of {path} ({type(exc).__name__}: {text[:160]}); re-encode the "
                     "video (e.g. H.264 .mp4) or check that the file is complete")


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any decoded frame (grey, RGB, RGBA; uint8 or float) as (H, W, 3) uint8."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return a
