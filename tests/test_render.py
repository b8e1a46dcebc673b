"""Rendered 3D skeletons (``hotpatch.render``): GIF frames and size, clear errors for a missing
ffmpeg and an unknown extension."""

from __future__ import annotations

import numpy as np
import pytest

import hotpatch
from hotpatch.errors import ConfigError
from keypoint_files import H, W, projected_clip


def test_render_gif_and_missing_ffmpeg(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="rendering needs the plot extra (matplotlib)")
    Image = pytest.importorskip("PIL.Image", reason="GIFs need Pillow")
    from hotpatch import render as render_mod

    px = projected_clip(8)
    poses = np.random.default_rng(0).normal(size=(8, 17, 3)) * 0.2
    path = render_mod.render(tmp_path / "a.gif", px, poses, image_size=(W, H), max_frames=5)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (960, 480)
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    with pytest.raises(hotpatch.HotpatchError, match="ffmpeg"):
        render_mod.render(tmp_path / "a.mp4", px, poses)
    with pytest.raises(ConfigError, match=r"\.gif, \.mp4 or \.png"):
        render_mod.render(tmp_path / "a.avi", px, poses)
