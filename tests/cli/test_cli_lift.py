"""``hotpatch lift``: a keypoint file to 3D poses (patched, compared, rendered), and one-line
errors for bad keypoint files and missing settings."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from hotpatch.cli import main
from hotpatch.keypoints import COMMON_SIZES
from keypoint_files import H, W, coco_from_h36m, projected_clip, write_coco

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2", "--random-weights"]


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


@pytest.mark.parametrize("recipe", ["mixste-hot-27-9", "mhformer-tpc-9-3"])
def test_cli_lift_refuses_a_model_that_takes_another_joint_order(capsys, tmp_path, recipe):
    np.save(tmp_path / "k.npy", projected_clip(15))
    small = ["--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"] if recipe.startswith("mixste") else \
        ["--set", "channel=16", "--set", "layers=1", "--set", "d_hid=16", "--frames", "9"]
    rc, _, err = run(capsys, "lift", recipe, *small, "--random-weights", str(tmp_path / "k.npy"),
                     "-o", str(tmp_path / "o.npz"))
    assert rc == 2 and "takes its keypoints in mpi_inf_3dhp17 joint order" in err and "Human3.6M-17" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.npz").exists()


def _bad_files(tmp_path):
    (tmp_path / "notjson.json").write_text("{ this is not json")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "nokp.json").write_text("[]")
    (tmp_path / "short.json").write_text(json.dumps([{"image_id": 0, "keypoints": [1.0, 2.0, 1.0] * 10}]))
    np.save(tmp_path / "joints16.npy", np.zeros((5, 16, 2)))
    return {
        "notjson.json": "not JSON", "empty.json": "empty", "nokp.json": "cannot tell the keypoint format",
        "short.json": "30 keypoint values; expected 51", "joints16.npy": "16 joints per person",
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
    assert (w, h) in COMMON_SIZES and px[..., 0].max() <= w and px[..., 1].max() <= h
    with pytest.raises(SystemExit):
        main(["lift", *TINY, "--keypoints", str(path), "-o", str(tmp_path / "o.npz"), "--size", "1x"])
    assert "give the frame size as WxH" in capsys.readouterr().err
