"""Pictures of a lifted clip: the 2D input beside the 3D skeleton (matplotlib).

``render(path, ...)`` picks the kind from the suffix: ``.gif`` (an animation written with
Pillow), ``.mp4`` (needs ffmpeg on the PATH) or ``.png`` (a contact sheet of a few frames).
Axes are fixed over the whole clip so the skeleton does not jump; each panel shows its frame
number. Needs the ``plot`` extra: ``pip install 'hotpatch[plot]'``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import ConfigError, HotpatchError

__all__ = ["H36M_PARENTS", "render"]

#: Kinematic parent of each Human3.6M-17 joint (-1: the pelvis, the root).
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
_RIGHT = {1, 2, 3, 14, 15, 16}
_LEFT = {4, 5, 6, 11, 12, 13}
KINDS = {".gif": "gif", ".mp4": "mp4", ".png": "sheet"}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, its chatter quiet; a clear error if matplotlib is missing."""
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
    """Title (if any), tight layout, write ``path``, close the figure (also on error)."""
    try:
        if title:
            fig.suptitle(title, fontsize=fontsize)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _colour(j: int) -> str:
    return "tab:red" if j in _RIGHT else "tab:blue" if j in _LEFT else "0.3"


class _Panels:
    """One 2D and one 3D axes with fixed limits; ``draw(t)`` shows frame ``t``."""

    def __init__(self, fig: Any, spec: Any, xy: np.ndarray, poses: np.ndarray, size: tuple[int, int] | None) -> None:
        self.xy, self.poses = xy, self._upright(poses)
        self.ax2 = fig.add_subplot(spec[0])
        self.ax3 = fig.add_subplot(spec[1], projection="3d")
        if size is not None and all(size):
            self.ax2.set_xlim(0, size[0])
            self.ax2.set_ylim(size[1], 0)
        else:
            lo, hi = xy.reshape(-1, 2).min(0), xy.reshape(-1, 2).max(0)
            pad = 0.1 * float(max(hi - lo))
            self.ax2.set_xlim(lo[0] - pad, hi[0] + pad)
            self.ax2.set_ylim(hi[1] + pad, lo[1] - pad)
        self.ax2.set_aspect("equal")
        self.ax2.set_xlabel("x (px)")
        self.ax2.set_ylabel("y (px)")
        radius = float(np.abs(self.poses).max()) or 1.0
        for set_lim in (self.ax3.set_xlim, self.ax3.set_ylim, self.ax3.set_zlim):
            set_lim(-radius, radius)
        self.ax3.set_box_aspect((1, 1, 1))
        self.ax3.view_init(elev=15, azim=-70)
        self.ax3.set_xlabel("x")
        self.ax3.set_ylabel("depth")
        self.ax3.set_zlabel("up")
        self.lines2 = [self.ax2.plot([], [], color=_colour(j), lw=2)[0] for j in range(1, len(H36M_PARENTS))]
        self.lines3 = [self.ax3.plot([], [], [], color=_colour(j), lw=2)[0] for j in range(1, len(H36M_PARENTS))]
        self.dots = self.ax2.plot([], [], "k.", ms=3)[0]

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
        self.ax2.set_title(f"2D input, frame {t + 1}/{total}", fontsize=9)
        self.ax3.set_title(f"3D, frame {t + 1}/{total}", fontsize=9)
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
) -> Path:
    """Write a GIF, MP4 or PNG contact sheet (by ``path``'s suffix) of a lifted clip.

    ``keypoints_2d``: (T, 17, 2) pixels; ``poses_3d``: (T, 17, 3) camera-frame 3D (y down);
    ``image_size``: (width, height) for the 2D axes (default: the keypoints' extent);
    ``max_frames``: animate only the first frames.
    """
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot render to {path.name}: use a .gif, .mp4 or .png (contact sheet) path")
    xy, poses = np.asarray(keypoints_2d), np.asarray(poses_3d)
    if xy.shape[:2] != poses.shape[:2] or xy.shape[1:] != (17, 2) or poses.shape[2] != 3 or not len(xy):
        raise ConfigError(f"render needs (T, 17, 2) keypoints and (T, 17, 3) poses; got {xy.shape} and {poses.shape}")
    if kind == "mp4" and shutil.which("ffmpeg") is None:
        raise HotpatchError(f"writing {path.name} needs ffmpeg, which is not on the PATH; install it "
                            "(e.g. apt-get install ffmpeg) or render a .gif instead")
    plt = pyplot()
    total = len(xy)
    if kind == "sheet":
        return _sheet(plt, path, xy, poses, title, image_size, sheet_frames)
    from matplotlib import animation

    count = min(total, max_frames) if max_frames else total
    fig = plt.figure(figsize=(9, 4.5), dpi=80)
    grid = fig.add_gridspec(1, 2)
    panels = _Panels(fig, [grid[0, 0], grid[0, 1]], xy, poses, image_size)
    if title:
        fig.suptitle(title, fontsize=10)
    anim = animation.FuncAnimation(fig, lambda t: panels.draw(t, total), frames=count, blit=False)
    writer = animation.PillowWriter(fps=fps) if kind == "gif" else animation.FFMpegWriter(fps=fps)
    try:
        anim.save(str(path), writer=writer)
    finally:
        plt.close(fig)
    return path


def _sheet(plt: Any, path: Path, xy: np.ndarray, poses: np.ndarray, title: str,
           image_size: tuple[int, int] | None, count: int) -> Path:
    total = len(xy)
    picks = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    cols = min(3, len(picks))
    rows = -(-len(picks) // cols)
    fig = plt.figure(figsize=(6 * cols, 3.2 * rows), dpi=80)
    grid = fig.add_gridspec(rows, 2 * cols)
    for i, t in enumerate(picks):
        r, c = divmod(i, cols)
        _Panels(fig, [grid[r, 2 * c], grid[r, 2 * c + 1]], xy, poses, image_size).draw(int(t), total)
    return save_figure(plt, fig, path, title, fontsize=11)
