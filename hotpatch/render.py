"""Pictures of a lifted clip: the 2D input beside the 3D skeleton (matplotlib).

``render(path, ...)`` picks the kind from the suffix: ``.gif`` (an animation written with
Pillow), ``.mp4`` (needs ffmpeg on the PATH) or ``.png`` (a contact sheet of a few frames).
Pictures are at least 960 px wide, with a legend of the right / left / centre colours. The 2D
panel is cropped to the person (a window that follows them at a constant scale), drawn over the
video's frames when ``video`` is given (:class:`hotpatch.video.VideoFrames`); the 3D panel has
equal axes centred on the poses, fixed over the clip so the skeleton does not jump, and with
``turn`` its view turns once about the vertical axis over the animation. Needs the ``plot``
extra: ``pip install 'hotpatch[plot]'``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.data import H36M_LEFT, H36M_RIGHT
from hotpatch.atomic import atomic_write
from hotpatch.errors import ConfigError, HotpatchError
from hotpatch.pose_stats import H36M_PARENTS

__all__ = ["H36M_PARENTS", "pyplot", "render", "save_figure"]

_RIGHT = set(H36M_RIGHT)
_LEFT = set(H36M_LEFT)
KINDS = {".gif": "gif", ".mp4": "mp4", ".png": "sheet"}
#: Figure width in inches and the dots per inch: 12 x 80 = 960 px.
WIDTH_IN, DPI = 12.0, 80
COLOURS = {"right": "tab:red", "left": "tab:blue", "centre": "0.3"}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or a ``HotpatchError`` saying what to install."""
    try:
        import logging

        import matplotlib

        matplotlib.use("Agg")
        for name in ("matplotlib", "PIL"):  # font cache and writer chatter
            logging.getLogger(name).setLevel(logging.WARNING)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise HotpatchError("rendering needs matplotlib: pip install 'hotpatch[plot]'") from exc
    return plt


def save_figure(plt: Any, fig: Any, path: Path, title: str = "", fontsize: int = 10) -> Path:
    """Title (if any), tight layout, write ``path`` (through a temp file beside it), close the
    figure (also on error)."""
    try:
        if title:
            fig.suptitle(title, fontsize=fontsize)
        fig.tight_layout(rect=(0, 0.05, 1, 1) if fig.legends else None)
        with atomic_write(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path


def _colour(j: int) -> str:
    return COLOURS["right"] if j in _RIGHT else COLOURS["left"] if j in _LEFT else COLOURS["centre"]


def _legend(fig: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=3, label=f"{side} side" if side != "centre" else "centre")
               for side, c in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=10, frameon=False)


def person_window(xy: np.ndarray, pad: float = 0.2) -> tuple[np.ndarray, float]:
    """The 2D panel's view: per frame the centre (T, 2) of the box around the person's
    keypoints, and one half-size for the whole clip (the largest frame's box, grown by ``pad``
    on each side), so the person fills the panel at a constant scale as they move."""
    lo, hi = xy.min(axis=1), xy.max(axis=1)  # (T, 2)
    half = (1 + 2 * pad) * float((hi - lo).max()) / 2 or 1.0
    return (lo + hi) / 2, half


class _Panels:
    """One 2D and one 3D axes with fixed limits; ``draw(t)`` shows frame ``t``."""

    def __init__(self, fig: Any, spec: Any, xy: np.ndarray, poses: np.ndarray, video: Any = None,
                 turn: int = 0) -> None:
        self.xy, self.poses, self.video, self.turn = xy, self._upright(poses), video, turn
        self.ax2 = fig.add_subplot(spec[0])
        self.ax3 = fig.add_subplot(spec[1], projection="3d")
        self.image = None
        if video is not None:
            w, h = video.size
            self.image = self.ax2.imshow(video.frame(0), extent=(0, w, h, 0), zorder=0)
        self.centres, self.half = person_window(xy)
        self.ax2.set_aspect("equal")
        self.ax2.set_xlabel("x (px)")
        self.ax2.set_ylabel("y (px)")
        flat = self.poses.reshape(-1, 3)
        centre = (flat.min(0) + flat.max(0)) / 2
        half = float((flat.max(0) - flat.min(0)).max()) / 2 * 1.05 or 1.0
        for set_lim, c in zip((self.ax3.set_xlim, self.ax3.set_ylim, self.ax3.set_zlim), centre):
            set_lim(c - half, c + half)  # equal axes: the same range on each
        self.ax3.set_box_aspect((1, 1, 1))
        from matplotlib.ticker import MaxNLocator

        for axis in (self.ax3.xaxis, self.ax3.yaxis, self.ax3.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        self.ax3.view_init(elev=15, azim=-70)
        self.ax3.set_xlabel("x (m)")
        self.ax3.set_ylabel("depth (m)")
        self.ax3.set_zlabel("up (m)")
        self.lines2 = [self.ax2.plot([], [], color=_colour(j), lw=2.5)[0] for j in range(1, len(H36M_PARENTS))]
        self.lines3 = [self.ax3.plot([], [], [], color=_colour(j), lw=2.5)[0] for j in range(1, len(H36M_PARENTS))]
        self.dots = self.ax2.plot([], [], "o", color="white", mec="black", ms=3)[0]

    @staticmethod
    def _upright(poses: np.ndarray) -> np.ndarray:
        """Camera frame (x right, y down, z forward) -> plot frame (x, depth, up)."""
        p = np.asarray(poses, dtype=np.float64)
        return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)

    def draw(self, t: int, total: int) -> list[Any]:
        for line2, line3, (j, parent) in zip(self.lines2, self.lines3, list(enumerate(H36M_PARENTS))[1:]):
            a, b = self.xy[t, j], self.xy[t, parent]
            line2.set_data([a[0], b[0]], [a[1], b[1]])
            a3, b3 = self.poses[t, j], self.poses[t, parent]
            line3.set_data_3d([a3[0], b3[0]], [a3[1], b3[1]], [a3[2], b3[2]])
        self.dots.set_data(self.xy[t, :, 0], self.xy[t, :, 1])
        (cx, cy), h = self.centres[t], self.half
        self.ax2.set_xlim(cx - h, cx + h)
        self.ax2.set_ylim(cy + h, cy - h)  # image y points down
        if self.image is not None:
            self.image.set_data(self.video.frame(t))
        if self.turn:
            self.ax3.view_init(elev=15, azim=-70 + 360.0 * t / self.turn)
        self.ax2.set_title(f"2D input{' over the video' if self.video else ''}, frame {t + 1}/{total}", fontsize=10)
        self.ax3.set_title(f"3D, frame {t + 1}/{total}", fontsize=10)
        return [*self.lines2, *self.lines3, self.dots]


def render(
    path: str | Path,
    keypoints_2d: np.ndarray,
    poses_3d: np.ndarray,
    *,
    fps: float = 30.0,
    title: str = "",
    image_size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    sheet_frames: int = 6,
    video: Any = None,
    turn: bool = False,
) -> Path:
    """Write a GIF, MP4 or PNG contact sheet (by ``path``'s suffix) of a lifted clip.

    ``keypoints_2d``: (T, 17, 2) pixels; ``poses_3d``: (T, 17, 3) camera-frame 3D (y down);
    ``image_size``: (width, height) of the video (checked against ``video``'s frames);
    ``max_frames``: animate only the first frames; ``video``: a
    :class:`~hotpatch.video.VideoFrames` to draw the 2D skeleton over; ``turn``: turn the 3D
    view once about the vertical axis over the animation.
    """
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot render to {path.name}: use a .gif, .mp4 or .png (contact sheet) path")
    xy, poses = np.asarray(keypoints_2d), np.asarray(poses_3d)
    if xy.shape[:2] != poses.shape[:2] or xy.shape[1:] != (17, 2) or poses.shape[2] != 3 or not len(xy):
        raise ConfigError(f"render needs (T, 17, 2) keypoints and (T, 17, 3) poses; got {xy.shape} and {poses.shape}")
    if video is not None and image_size is not None and tuple(image_size) != tuple(video.size):
        raise ConfigError(f"the video's frames are {video.size[0]}x{video.size[1]} but the keypoints were lifted "
                          f"for {image_size[0]}x{image_size[1]}; pass the video the keypoints come from, or drop "
                          "--size")
    if kind == "mp4" and shutil.which("ffmpeg") is None:
        raise HotpatchError(f"writing {path.name} needs ffmpeg, which is not on the PATH; install it "
                            "(e.g. apt-get install ffmpeg) or render a .gif instead")
    plt = pyplot()
    total = len(xy)
    if kind == "sheet":
        return _sheet(plt, path, xy, poses, title, sheet_frames, video)
    from matplotlib import animation

    count = min(total, max_frames) if max_frames else total
    fig = plt.figure(figsize=(WIDTH_IN, WIDTH_IN * 0.5), dpi=DPI)
    grid = fig.add_gridspec(1, 2, bottom=0.12, top=0.9)
    panels = _Panels(fig, [grid[0, 0], grid[0, 1]], xy, poses, video, turn=count if turn else 0)
    _legend(fig)
    if title:
        fig.suptitle(title, fontsize=12)
    anim = animation.FuncAnimation(fig, lambda t: panels.draw(t, total), frames=count, blit=False)
    writer = animation.PillowWriter(fps=fps) if kind == "gif" else animation.FFMpegWriter(fps=fps)
    try:
        with atomic_write(path) as tmp:
            anim.save(str(tmp), writer=writer)
    finally:
        plt.close(fig)
    return path


def _sheet(plt: Any, path: Path, xy: np.ndarray, poses: np.ndarray, title: str, count: int, video: Any) -> Path:
    total = len(xy)
    picks = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    cols = min(2, len(picks))
    rows = -(-len(picks) // cols)
    width = max(WIDTH_IN, 7.2 * cols)
    fig = plt.figure(figsize=(width, width / (2 * cols) * rows + 0.8), dpi=DPI)
    grid = fig.add_gridspec(rows, 2 * cols)
    for i, t in enumerate(picks):
        r, c = divmod(i, cols)
        _Panels(fig, [grid[r, 2 * c], grid[r, 2 * c + 1]], xy, poses, video).draw(int(t), total)
    _legend(fig)
    return save_figure(plt, fig, path, title, fontsize=12)
