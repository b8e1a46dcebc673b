"""Input conventions carried with the model, ``hotpatch.lift_file``, pose plausibility
statistics and the video overlay."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import hotpatch
import tinypose
from hotpatch.conventions import InputConvention, body_extent, convention_of, training_convention
from hotpatch.errors import ConfigError, DataError
from hotpatch.lift import resolve_convention
from hotpatch.pose_stats import BONES, H36M_PARENTS, pose_summary, pose_warnings
from keypoint_files import H, W, coco_from_h36m, projected_clip, write_coco

#: A standing skeleton in metres (camera frame: y down), Human3.6M-17, symmetric.
STANDING = np.array([
    [0, 0, 0], [-0.13, 0, 0], [-0.13, 0.45, 0], [-0.13, 0.9, 0], [0.13, 0, 0], [0.13, 0.45, 0], [0.13, 0.9, 0],
    [0, -0.25, 0], [0, -0.5, 0], [0, -0.6, -0.05], [0, -0.72, 0], [0.18, -0.5, 0], [0.18, -0.22, 0],
    [0.18, 0.02, 0], [-0.18, -0.5, 0], [-0.18, -0.22, 0], [-0.18, 0.02, 0],
])


# ----------------------------------------------------------------------------- conventions


def test_recipes_record_their_input_convention_and_saved_files_carry_it(tmp_path):
    from hotpatch import models

    conv, where = convention_of(models.get("motionbert").build(9, dim_feat=16, dim_rep=16, depth=1, num_heads=2))
    assert (conv.normalize, conv.scores, where) == ("box", True, "recipe motionbert")
    model = tinypose.mixste(9)
    assert convention_of(model)[0] == InputConvention("screen", False)
    model.hotpatch_input = InputConvention("box", False, extent=(0.5, 1.5)).to_dict()
    hotpatch.save_model(model, tmp_path / "m.pt")
    loaded = hotpatch.load(tmp_path / "m.pt")
    assert convention_of(loaded) == (InputConvention("box", False, extent=(0.5, 1.5)), "the model file")
    patched = hotpatch.apply(tinypose.mixste(9), n=1, f=3, recover="linear")
    hotpatch.save(patched, tmp_path / "p.pt")
    assert torch.load(tmp_path / "p.pt", weights_only=True)["input"] == {"normalize": "screen", "scores": False,
                                                                          "joints": "h36m17"}
    hot = hotpatch.apply(loaded, n=1, f=3, recover="linear")  # apply carries the loaded model's record
    assert convention_of(hot) == (InputConvention("box", False, extent=(0.5, 1.5)), "the model file")


def test_files_without_an_input_record_still_load_and_use_the_recipe(tmp_path):
    patched = hotpatch.apply(tinypose.mixste(9), n=1, f=3, recover="linear")
    hotpatch.save(patched, tmp_path / "p.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    del payload["input"]  # as written before the record existed
    torch.save(payload, tmp_path / "old.pt")
    old = hotpatch.load(tmp_path / "old.pt")
    assert not hasattr(old, "hotpatch_input")
    assert convention_of(old) == (InputConvention("screen", False), "recipe mixste")
    x = torch.randn(1, 9, 17, 2)
    torch.testing.assert_close(old(x), hotpatch.load(tmp_path / "p.pt")(x), rtol=0, atol=0)


def test_channel_mismatch_is_an_error_and_overrides_are_named():
    model = tinypose.mixste(9)
    model.hotpatch_input = {"normalize": "screen", "scores": True, "joints": "h36m17"}
    with pytest.raises(ConfigError, match="takes 2 input channels but its input convention .* says 3"):
        convention_of(model, channels=2)
    plain = tinypose.mixste(9)
    assert resolve_convention(plain, 2) == (InputConvention("screen", False), "from recipe mixste")
    conv, where = resolve_convention(plain, 2, "box")
    assert conv.normalize == "box" and where == "as given; the model's (recipe mixste) is screen"
    assert resolve_convention(torch.nn.Linear(2, 3), 3)[0] == InputConvention("screen", True)


def test_training_convention_records_the_extent_range():
    seqs = tinypose.sequences((30, 20))
    conv = training_convention(seqs, channels=3)
    extents = np.concatenate([body_extent(s.keypoints) for s in seqs])
    assert conv.scores and conv.normalize == "screen"
    assert conv.extent == (pytest.approx(np.percentile(extents, 1)), pytest.approx(np.percentile(extents, 99)))


# ----------------------------------------------------------------------------- lift_file


def test_lift_file_returns_poses_and_summary_and_writes_the_npz(tmp_path):
    px = projected_clip(30)
    path = write_coco(tmp_path / "r.json", coco_from_h36m(px), np.full((30, 17), 0.9))
    patched = hotpatch.apply(tinypose.mixste(9), n=1, f=3, recover="linear")
    lifted = hotpatch.lift_file(patched, path, out=tmp_path / "poses.npz", size=(W, H))
    assert lifted.poses.shape == (30, 17, 3)
    s = lifted.summary
    assert s["input"]["from"] == "from recipe mixste" and s["frame_size"] == [W, H] and s["config"]["f"] == 3
    assert set(s["poses"]["bones"]) == set(BONES) and s["poses"]["units"] == "mm"
    saved = np.load(tmp_path / "poses.npz")
    np.testing.assert_array_equal(saved["poses_3d"], lifted.poses)
    assert json.loads(str(saved["summary"]))["frames"] == 30
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ConfigError, match="frames=F"):
        hotpatch.lift_file(tinypose.mixste(9), path)


def test_lift_file_refuses_a_file_without_scores_for_a_scores_model(tmp_path):
    np.save(tmp_path / "k.npy", projected_clip(12))
    model = tinypose.mixste(9, in_chans=3)
    with pytest.raises(DataError, match="holds x, y only, but the model takes detector scores"):
        hotpatch.lift_file(model, tmp_path / "k.npy", frames=9, channels=3, size=(W, H))


def test_extent_outside_the_training_range_warns(tmp_path, caplog):
    np.save(tmp_path / "k.npy", projected_clip(12))
    model = tinypose.mixste(9)
    model.hotpatch_input = {"normalize": "screen", "scores": False, "joints": "h36m17", "extent": [0.9, 1.1]}
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        lifted = hotpatch.lift_file(model, tmp_path / "k.npy", frames=9, size=(W, H))
    assert any("outside what the model saw in training (0.900-1.100)" in w for w in lifted.summary["warnings"])
    assert "outside what the model saw in training" in caplog.text


# ----------------------------------------------------------------------------- pose statistics


def test_pose_summary_of_a_known_skeleton():
    poses = np.repeat(STANDING[None], 5, axis=0)
    s = pose_summary(poses)
    assert s["bones"]["thigh"]["right"]["mean_mm"] == pytest.approx(450) and s["bones"]["thigh"]["asymmetry_pct"] == 0
    assert s["bones"]["shoulder"]["left"]["sd_mm"] == pytest.approx(0, abs=1e-9)
    assert s["bones"]["head"]["centre"]["mean_mm"] == pytest.approx(
        np.linalg.norm(STANDING[10] - STANDING[H36M_PARENTS[10]]) * 1000)
    assert s["height_mm"] == pytest.approx(1620) and s["width_mm"] == pytest.approx(360)
    assert pose_warnings(s) == []


def test_degenerate_stretchy_and_lopsided_poses_warn():
    stick = np.repeat(STANDING[None], 4, axis=0).copy()
    stick[..., 0] *= 0.1  # every frame nearly a vertical line
    lines = pose_warnings(pose_summary(stick))
    assert any("degenerate 3D poses" in w and "50 mm wide and 1620 mm tall" in w for w in lines)
    stretchy = np.repeat(STANDING[None], 6, axis=0).copy()
    stretchy[::2, 3, 1] = 1.5  # the right shin jumps between 450 and 1050 mm
    lines = pose_warnings(pose_summary(stretchy))
    assert any("bone lengths vary over time" in w and "shin right" in w for w in lines)
    assert any("left and right differ" in w and "shin" in w for w in lines)
    assert "NaN" in pose_warnings(pose_summary(np.full((2, 17, 3), np.nan)))[0]


def test_bodies_of_impossible_size_or_proportions_warn():
    for scale, tall in ((0.3, "0.49 m tall"), (0.007, "0.01 m tall"), (1.8, "2.96 m tall")):
        lines = pose_warnings(pose_summary(np.repeat(STANDING[None], 3, axis=0) * scale))
        assert any(tall in w and "outside a person's 1.0-2.5 m" in w for w in lines), (scale, lines)
    long_arms = np.repeat(STANDING[None], 3, axis=0).copy()
    long_arms[:, 16] = long_arms[:, 15] + [0, 1.9, 0]  # a 1.9 m right forearm
    lines = pose_warnings(pose_summary(long_arms))
    assert any("absurd bone proportions: forearm right 1900 mm" in w for w in lines), lines


def test_a_setting_that_prunes_nothing_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        hotpatch.apply(tinypose.mixste(9), n=1, f=9, recover="linear")
    assert "f=9 keeps all F=9 frames: HoT prunes nothing" in caplog.text


def test_portrait_frames_are_guessed_and_keypoints_outside_the_frame_reported(caplog):
    from hotpatch.keypoints import KeypointTrack, frame_size, outside_frame

    xy = np.zeros((3, 17, 2))
    xy[..., 0], xy[..., 1] = np.linspace(100, 1000, 17), np.linspace(200, 1300, 17)
    track = KeypointTrack(xy.astype(np.float32), np.ones((3, 17), np.float32), np.zeros((3, 17), bool), 0, "array")
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        assert frame_size(track) == (1080, 1350, "assumed")
    assert "assuming 1080x1350 (portrait" in caplog.text
    xy[0, 0] = [-40, 500]
    line = outside_frame(xy, 1280, 720)
    assert line.startswith("28 of 51 keypoint positions lie outside the 1280x720 frame")
    assert "1 left of or above it (down to x=-40" in line and "check the frame size (--size)" in line
    assert outside_frame(xy[:, 1:], 1080, 1350) is None


# ----------------------------------------------------------------------------- video overlay


def test_render_draws_over_a_generated_video(tmp_path):
    iio = pytest.importorskip("imageio.v3", reason="--video needs imageio (the plot extra)")
    pytest.importorskip("matplotlib")
    from PIL import Image

    from hotpatch.render import render
    from hotpatch.video import VideoFrames

    frames = np.zeros((6, 120, 160, 3), np.uint8)
    for t in range(6):
        frames[t, :, :, 1] = 40 * t + 30  # green, brighter every frame
    iio.imwrite(tmp_path / "in.gif", frames, duration=40, loop=0)
    video = VideoFrames(tmp_path / "in.gif")
    assert video.size == (160, 120)
    assert video.frame(3)[0, 0, 1] == pytest.approx(150, abs=8) and video.frame(1)[0, 0, 1] == pytest.approx(70, abs=8)
    xy = STANDING[None, :, :2].repeat(6, axis=0) * 60 + [80, 60]
    path = render(tmp_path / "out.gif", xy, np.repeat(STANDING[None], 6, axis=0), video=video, turn=True)
    with Image.open(path) as im:
        assert im.size[0] >= 960 and im.n_frames == 6
        im.seek(5)
        rgb = np.asarray(im.convert("RGB"))
    left = rgb[:, : rgb.shape[1] // 2]  # the 2D panel shows the video's last (brightest green) frame
    assert ((left[..., 1] > 200) & (left[..., 0] < 60)).sum() > 1000
    with pytest.raises(ConfigError, match="160x120 but the keypoints were lifted for 640x480"):
        render(tmp_path / "x.png", xy, np.repeat(STANDING[None], 6, axis=0), video=video, image_size=(640, 480))
    with pytest.raises(DataError, match="does not exist"):
        VideoFrames(tmp_path / "missing.mp4")
    (tmp_path / "noise.xyz").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(hotpatch.HotpatchError, match=r"no plugin that reads noise.xyz; install PyAV \(pip install"):
        VideoFrames(tmp_path / "noise.xyz")


def test_cli_lift_halpe26_with_video_size_and_overlay(capsys, tmp_path):
    iio = pytest.importorskip("imageio.v3", reason="--video needs imageio (the plot extra)")
    pytest.importorskip("matplotlib")
    from hotpatch.cli import main
    from hotpatch.joint_layouts import LAYOUTS, to_h36m
    from test_joint_layouts import alphapose_file, people

    halpe = people(26)[:10] * 0.15 + 20  # inside a 160x120 video
    path = alphapose_file(tmp_path / "alphapose-results.json", halpe, ids=lambda t: [[1.0], [1.0]])
    frames = np.zeros((10, 120, 160, 3), np.uint8)
    frames[..., 2] = np.arange(10)[:, None, None] * 20 + 40
    iio.imwrite(tmp_path / "clip.gif", frames, duration=40, loop=0)
    rc = main(["--quiet", "lift", "mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set",
               "num_heads=2", "--random-weights", "--keypoints", str(path), "--video", str(tmp_path / "clip.gif"), "-o",
               str(tmp_path / "o.npz"), "--render", str(tmp_path / "sheet.png"), "--person", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = np.load(tmp_path / "o.npz")
    summary = json.loads(str(data["summary"]))
    assert summary["layout"] == "halpe26" and summary["frame_size"] == [160, 120]
    assert summary["frame_size_from"] == "the video"
    np.testing.assert_allclose(data["keypoints_2d"], to_h36m(halpe, LAYOUTS["halpe26"]), atol=1e-3)
    assert "halpe26 joints" in out and "frame 160x120 (from the video)" in out
    assert (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_train_and_finetune_record_the_training_extent_and_lift_uses_it(capsys, tmp_path):
    from hotpatch.cli import main

    clips = str(tinypose.write_clips(tmp_path / "clips.npz"))
    tiny = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
    train = ["--data", clips, "--cameras", "1", "--batch", "4", "--steps-per-epoch", "2", "--val-clips", "0",
             "--epochs", "1"]
    assert main(["--quiet", "train", *tiny, *train, "-o", str(tmp_path / "base.pt")]) == 0
    assert main(["--quiet", "finetune", str(tmp_path / "base.pt"), "--n", "1", "--f", "3", *train,
                 "-o", str(tmp_path / "hot.pt")]) == 0
    capsys.readouterr()
    for name in ("base.pt", "hot.pt"):
        record = torch.load(tmp_path / name, weights_only=True)["input"]
        assert record["normalize"] == "screen" and record["scores"] is False
        lo, hi = record["extent"]
        assert 0 < lo < hi < 2
    hot = hotpatch.load(tmp_path / "hot.pt")
    assert convention_of(hot)[1] == "the model file" and convention_of(hot)[0].extent == (lo, hi)
