"""2D tracks -> 3D with ``hotpatch.lift``: normalisation, windows, stitching and padding (keypoint
files: test_keypoints.py; the command: tests/cli/test_cli_lift.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import hotpatch
import tinypose
import author_vpts
from hotpatch.data import PoseSequence, WindowDataset, normalize_screen_coordinates
from hotpatch.errors import ConfigError
from hotpatch.evaluate import predict
from hotpatch.keypoints import read_keypoints
from hotpatch.lift import lift, lift_track, normalize
from keypoint_files import H, W, projected_clip


# ----------------------------------------------------------------------------- normalisation


def test_normalisation_conventions():
    px = projected_clip(10)
    np.testing.assert_allclose(normalize(px, "screen", width=W, height=H), normalize_screen_coordinates(px, W, H))
    box = normalize(px, "box")
    extent = box.reshape(-1, 2).max(0) - box.reshape(-1, 2).min(0)
    assert np.isclose(extent.max(), 2.0) and np.allclose(box.reshape(-1, 2).max(0), -box.reshape(-1, 2).min(0))
    with pytest.raises(ConfigError, match="--width and --height"):
        normalize(px, "screen")


# ----------------------------------------------------------------------------- lifting


def _mixste(frames=9, channels=2):
    model = tinypose.mixste(frames=frames, in_chans=channels) if channels == 3 else tinypose.mixste(frames=frames)
    return model.eval()


def test_lift_equals_evaluate_on_the_same_2d_input(tmp_path):
    px = projected_clip(40)
    np.save(tmp_path / "k.npy", px)
    track = read_keypoints(tmp_path / "k.npy")
    model = _mixste(9)
    patched = hotpatch.apply(model, n=1, f=3, recover="linear", example_input=torch.zeros(1, 9, 17, 2))
    for m in (model, patched):
        got = lift_track(m, track, frames=9, channels=2, width=W, height=H, stride=9)
        kp = normalize_screen_coordinates(px, W, H).astype(np.float32)
        data = WindowDataset([PoseSequence("c", kp, np.zeros((40, 17, 3), np.float32))], 9)
        want = data.stitch(predict(m, data).poses)[0]
        assert got.poses.shape == (40, 17, 3) and np.isfinite(got.poses).all()
        np.testing.assert_allclose(got.poses, want - want[:, :1], atol=1e-6)
        np.testing.assert_array_equal(got.poses[:, 0], 0)


def test_seq2frame_lifts_one_window_per_frame():
    model, _ = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, pipeline="seq2frame")
    inputs = np.random.default_rng(0).normal(size=(11, 17, 2)).astype(np.float32)
    got = lift(patched, inputs, frames=27)
    assert got.pipeline == "seq2frame" and got.windows == 11 and got.poses.shape == (11, 17, 3)
    data = WindowDataset([PoseSequence("c", inputs, np.zeros((11, 17, 3), np.float32))], 27, mode="seq2frame")
    want = predict(patched, data).poses[:, 0]  # one window per frame, in order
    np.testing.assert_allclose(got.poses, want - want[:, :1], atol=1e-6)


class _FrameLocal(nn.Module):
    """Each frame's output depends on that frame's input only: stitching must not change it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        return self.lin(x)


@pytest.mark.parametrize("length", [4, 9, 23, 50])
def test_overlapping_windows_and_edge_padding_keep_frame_local_outputs(length):
    torch.manual_seed(0)
    model = _FrameLocal().eval()
    inputs = np.random.default_rng(length).normal(size=(length, 17, 2)).astype(np.float32)
    with torch.no_grad():
        direct = model(torch.from_numpy(inputs)).numpy()
    direct = direct - direct[:, :1]
    for stride in (None, 1, 4, 9):
        got = lift(model, inputs, frames=9, pipeline="seq2seq", stride=stride)
        np.testing.assert_allclose(got.poses, direct, atol=1e-6)
    with pytest.raises(ConfigError, match="stride"):
        lift(model, inputs, frames=9, pipeline="seq2seq", stride=10)


def test_three_channel_models_see_the_scores(tmp_path):
    px = projected_clip(12)
    scores = np.linspace(0.5, 1.0, 12 * 17).reshape(12, 17)
    np.save(tmp_path / "k.npy", np.concatenate([px, scores[..., None]], -1))
    track = read_keypoints(tmp_path / "k.npy")
    got = lift_track(_FrameLocal3(), track, frames=9, channels=3, normalization="box")
    np.testing.assert_allclose(got.inputs[..., 2], scores, atol=1e-6)
    np.testing.assert_allclose(got.poses[..., 2] + got.inputs[:, :1, 2], got.inputs[..., 2], atol=1e-6)


class _FrameLocal3(nn.Module):
    def forward(self, x):  # (B, F, J, 3) -> x, y, score as the "3D" output
        return x.clone()


# ----------------------------------------------------------------------------- CLI


# ----------------------------------------------------------------------------- render
