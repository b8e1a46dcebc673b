"""Keypoint files -> Human3.6M-17 tracks -> 3D with ``hotpatch.lift`` and ``hotpatch lift``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

import hotpatch
import tinypose
import author_vpts
from hotpatch.cli import main
from hotpatch.data import (
    PoseSequence,
    WindowDataset,
    normalize_screen_coordinates,
    project_to_pixels,
    virtual_camera,
    world_to_camera,
)
from hotpatch.errors import ConfigError, DataError
from hotpatch.evaluate import predict
from hotpatch.keypoints import COCO_TO_H36M, coco_to_h36m, detect_format, read_keypoints
from hotpatch.lift import lift, lift_track, normalize

W, H = 1000, 1000
#: COCO-17 joint -> the Human3.6M-17 joint it is taken from when writing the test files
#: (both eyes and both ears from the head, the nose from neck/nose; limbs one to one).
H36M_OF_COCO = (9, 10, 10, 10, 10, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3)


def projected_clip(frames: int = 60, seed: int = 0) -> np.ndarray:
    """(T, 17, 2) pixels: tiny moving 3D poses seen by a virtual camera 5 m away."""
    seq = tinypose.sequences((frames,), seed=seed)[0]
    world = seq.positions.astype(np.float64) * 3 + np.array([0.0, 1.0, 0.0])
    cam = virtual_camera(world[0, 0], 30.0, 5.0, 1.2, size=W)
    return project_to_pixels(world_to_camera(world, cam), cam)


def coco_from_h36m(px: np.ndarray) -> np.ndarray:
    return px[:, list(H36M_OF_COCO)]


def write_coco(path, coco, scores, *, drop=(), image_id=lambda t: t, extra=None):
    dets = []
    for t in range(len(coco)):
        if t in drop:
            continue
        kp = np.concatenate([coco[t], scores[t][:, None]], axis=1)
        det = {"image_id": image_id(t), "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 0.9}
        dets.append(det)
        if extra is not None:
            dets.append(extra(t, kp))
    path.write_text(json.dumps(dets))
    return path


def write_mmpose(path, coco, scores):
    frames = [{"frame_id": t, "instances": [{"keypoints": coco[t].tolist(), "keypoint_scores": scores[t].tolist(),
                                               "bbox": [[0, 0, 10, 10]], "bbox_score": 0.9}]}
              for t in range(len(coco))]
    path.write_text(json.dumps({"meta_info": {"dataset_name": "coco"}, "instance_info": frames}))
    return path


# ----------------------------------------------------------------------------- conversion


def test_coco_to_h36m_derives_the_trunk_and_head_from_coco_joints():
    coco = np.random.default_rng(0).normal(size=(4, 17, 3))
    h = coco_to_h36m(coco)
    np.testing.assert_allclose(h[:, 0], (coco[:, 11] + coco[:, 12]) / 2)            # pelvis
    np.testing.assert_allclose(h[:, 8], (coco[:, 5] + coco[:, 6]) / 2)              # thorax
    np.testing.assert_allclose(h[:, 7], (h[:, 0] + h[:, 8]) / 2)                    # spine
    np.testing.assert_allclose(h[:, 9], coco[:, 0])                                 # neck/nose
    np.testing.assert_allclose(h[:, 10], (coco[:, 1] + coco[:, 2]) / 2)             # head
    limbs = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}
    for hj, cj in limbs.items():
        np.testing.assert_array_equal(h[:, hj], coco[:, cj])
    assert len(COCO_TO_H36M) == 17


@pytest.mark.parametrize("fmt", ["coco", "alphapose", "mmpose", "npy", "npz"])
def test_every_format_reads_to_the_same_h36m_track(tmp_path, fmt):
    px = projected_clip(40)
    coco = coco_from_h36m(px)
    scores = np.full((len(px), 17), 0.9)
    if fmt == "coco":
        path, expected = write_coco(tmp_path / "r.json", coco, scores), coco_to_h36m(coco)
    elif fmt == "alphapose":
        path = write_coco(tmp_path / "a.json", coco, scores, image_id=lambda t: f"frame_{t:05d}.jpg")
        expected = coco_to_h36m(coco)
    elif fmt == "mmpose":
        path, expected = write_mmpose(tmp_path / "m.json", coco, scores), coco_to_h36m(coco)
    elif fmt == "npy":
        path, expected = tmp_path / "k.npy", px
        np.save(path, px)
    else:
        path, expected = tmp_path / "k.npz", px
        np.savez(path, keypoints=np.concatenate([px, scores[..., None]], -1), width=W, height=H)
    track = read_keypoints(path)
    assert track.format == ("h36m" if fmt in ("npy", "npz") else fmt) == detect_format(path)
    assert track.xy.shape == (40, 17, 2) and track.xy.dtype == np.float32
    np.testing.assert_allclose(track.xy, expected, rtol=0, atol=1e-3)  # float32 pixels
    assert not track.filled.any() and track.missing_frames == 0
    if fmt == "npz":
        assert (track.width, track.height) == (W, H)
        np.testing.assert_allclose(track.scores, 0.9, atol=1e-6)


def test_best_detection_per_frame_or_the_requested_track(tmp_path):
    px = projected_clip(20)
    coco = coco_from_h36m(px)
    scores = np.full((20, 17), 0.9)

    def other(t, kp):  # a second, lower-scoring person 300 px to the right, track 7
        return {"image_id": f"{t}.jpg", "keypoints": (kp + [300, 0, 0]).reshape(-1).tolist(), "score": 0.4, "idx": 7}

    path = write_coco(tmp_path / "a.json", coco, scores, image_id=lambda t: f"{t}.jpg", extra=other)
    data = json.loads(path.read_text())
    for d in data[::2]:
        d["idx"] = 3
    path.write_text(json.dumps(data))
    np.testing.assert_allclose(read_keypoints(path).xy, coco_to_h36m(coco), atol=1e-3)
    np.testing.assert_allclose(read_keypoints(path, person=7).xy, coco_to_h36m(coco) + [300, 0], atol=1e-3)
    with pytest.raises(DataError, match=r"track id 5 .*\[3, 7\]"):
        read_keypoints(path, person=5)


def test_missing_frames_and_low_score_joints_are_interpolated_and_counted(tmp_path, caplog):
    px = projected_clip(30)
    coco = coco_from_h36m(px)
    scores = np.full((30, 17), 0.9)
    scores[12, 10] = 0.1  # the right wrist (COCO 10 -> H36M 16) is unsure in frame 12
    path = write_coco(tmp_path / "r.json", coco, scores, drop=(5, 6, 7))
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        track = read_keypoints(path, min_score=0.3)
    assert track.missing_frames == 3
    assert "3 missing frame(s) and 1 low-score joint(s)" in caplog.text
    full = coco_to_h36m(coco)
    for t in (5, 6, 7):  # linear between frames 4 and 8
        w = (t - 4) / 4
        np.testing.assert_allclose(track.xy[t], (1 - w) * full[4] + w * full[8], atol=1e-3)
    assert track.filled[5:8].all() and track.filled.sum() == 3 * 17 + 1
    assert track.filled[12, 16] and not track.filled[12, 15]
    np.testing.assert_allclose(track.xy[12, 16], (full[11, 16] + full[13, 16]) / 2, atol=1e-3)
    assert (track.scores[5:8] == 0).all()


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

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]


def run(capsys, *argv):
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_lift_patched_with_compare_and_render(capsys, tmp_path):
    px = projected_clip(50)
    path = write_coco(tmp_path / "r.json", coco_from_h36m(px), np.full((50, 17), 0.9), drop=(20,))
    out_npz = tmp_path / "out.npz"
    rc, out, err = run(capsys, "lift", *TINY, "--n", "1", "--f", "3", "--recover", "linear", "--keypoints",
                       str(path), "--width", str(W), "--height", str(H), "-o", str(out_npz), "--compare",
                       "--render", str(tmp_path / "sheet.png"), "--json", str(tmp_path / "s.json"))
    assert rc == 0, err
    data = np.load(out_npz)
    summary = json.loads(str(data["summary"]))
    assert data["poses_3d"].shape == (50, 17, 3) and np.isfinite(data["poses_3d"]).all()
    assert data["poses_3d_original"].shape == (50, 17, 3)
    assert summary["missing_frames"] == 1 and summary["config"]["f"] == 3 and summary["fps"] > 0
    assert summary["original_fps"] > 0 and summary["mean_joint_difference_mm"] >= 0
    diff = np.linalg.norm(data["poses_3d"] - data["poses_3d_original"], axis=-1).mean()
    assert np.isclose(summary["mean_joint_difference_mm"], diff * 1000, rtol=1e-5)
    assert summary["input"] == {"normalize": "screen", "scores": False, "joints": "h36m17", "from": "from recipe mixste"}
    assert summary["frame_size"] == [W, H] and summary["frame_size_from"] == "given"
    thigh = np.linalg.norm(data["poses_3d"][:, 2] - data["poses_3d"][:, 1], axis=-1) * 1000
    assert np.isclose(summary["poses"]["bones"]["thigh"]["right"]["mean_mm"], thigh.mean(), rtol=1e-4)
    assert "input: screen normalisation, x, y, h36m17 order (from recipe mixste); frame 1000x1000 (as given)" in out
    assert "bone lengths (mm" in out and "lifted 50 frames" in out
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 50
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "frames/s" in out and "speed-up" in out


def test_cli_lift_unpatched_without_hot_settings(capsys, tmp_path):
    np.save(tmp_path / "k.npy", projected_clip(15))
    rc, out, err = run(capsys, "lift", *TINY, "--keypoints", str(tmp_path / "k.npy"), "--normalize", "box",
                       "-o", str(tmp_path / "o.npz"), "--json", "-")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["config"] is None and summary["frames"] == 15 and summary["stride"] == 7 and summary["windows"] == 2


def _bad_files(tmp_path):
    (tmp_path / "notjson.json").write_text("{ this is not json")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "nokp.json").write_text("[]")
    (tmp_path / "short.json").write_text(json.dumps([{"image_id": 0, "keypoints": [1.0, 2.0, 1.0] * 10}]))
    np.save(tmp_path / "joints16.npy", np.zeros((5, 16, 2)))
    return {
        "notjson.json": "not JSON", "empty.json": "empty", "nokp.json": "cannot tell the keypoint format",
        "short.json": "30 keypoint values; expected 51", "joints16.npy": "(5, 16, 2)",
        "missing.json": "does not exist",
    }


def test_cli_bad_keypoint_files_exit_2_with_one_line(capsys, tmp_path):
    for name, message in _bad_files(tmp_path).items():
        rc, out, err = run(capsys, "lift", *TINY, "--keypoints", str(tmp_path / name), "--normalize", "box",
                           "-o", str(tmp_path / "o.npz"))
        lines = err.strip().splitlines()
        assert rc == 2 and out == "" and len(lines) == 1, (name, err)
        assert lines[0].startswith("hotpatch lift: error:") and message in lines[0], (name, err)


def test_cli_lift_without_image_size_assumes_one_and_says_which(capsys, tmp_path, caplog):
    px = projected_clip(10)
    path = write_coco(tmp_path / "r.json", coco_from_h36m(px), np.full((10, 17), 0.9))
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        rc, _, err = run(capsys, "lift", *TINY, "--keypoints", str(path), "-o", str(tmp_path / "o.npz"))
    assert rc == 0, err
    summary = json.loads(str(np.load(tmp_path / "o.npz")["summary"]))
    w, h = summary["frame_size"]
    assert summary["frame_size_from"] == "assumed" and f"assuming {w}x{h}" in caplog.text
    assert (w, h) in [(640, 480), (1280, 720), (1920, 1080)] and px[..., 0].max() <= w and px[..., 1].max() <= h
    with pytest.raises(SystemExit):
        main(["lift", *TINY, "--keypoints", str(path), "-o", str(tmp_path / "o.npz"), "--size", "1x"])
    assert "give the frame size as WxH" in capsys.readouterr().err


# ----------------------------------------------------------------------------- render


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
