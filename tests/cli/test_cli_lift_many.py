"""``hotpatch lift`` on real detector files: several inputs in one call, every person, honest defaults
(no random weights unasked, no untrained TRA), outputs written together or not at all."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import hotpatch
import hotpatch.render
from hotpatch.cli import main

DATA = Path(__file__).parent.parent / "data" / "detectors"
TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
HOT = ["--n", "1", "--f", "3"]


def run(capsys, *argv):
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_several_inputs_after_the_options_one_model_one_npz_each(capsys, tmp_path):
    rc, out, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", str(DATA / "alphapose_halpe26_multi.json"),
                       "--min-score", "0.05", str(DATA / "openpose_body25b_pose2sim_cam04"),
                       "-o", f"{tmp_path}/out/", "--json", str(tmp_path / "all.json"))
    assert rc == 0, err
    assert files(tmp_path / "out") == ["alphapose_halpe26_multi.npz", "openpose_body25b_pose2sim_cam04.npz"]
    summary = json.loads((tmp_path / "all.json").read_text())
    assert [Path(s["keypoints"]).name for s in summary["files"]] == ["alphapose_halpe26_multi.json",
                                                                       "openpose_body25b_pose2sim_cam04"]
    body25b = np.load(tmp_path / "out" / "openpose_body25b_pose2sim_cam04.npz")
    assert body25b["poses_3d"].shape == (9, 17, 3) and body25b["keypoints_2d"].shape == (9, 17, 2)
    assert body25b["filled_2d"][[3, 5]].all()  # frames 8 and 10 are not in the folder
    assert json.loads(str(body25b["summary"]))["layout"] == "body25b"
    assert "alphapose_halpe26_multi.json" in out and "openpose body25b" in out and "wrote 3 files" in out


def test_person_all_keeps_each_persons_2d_track_next_to_its_3d_poses(capsys, tmp_path):
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", "--person", "all", "--min-score", "0.1",
                     str(DATA / "alphapose_halpe26_multi.json"), "-o", str(tmp_path / "people.npz"))
    assert rc == 0, err
    data = np.load(tmp_path / "people.npz")
    p = len(data["person_ids"])
    assert p >= 2 and data["poses_3d"].shape == (p, 10, 17, 3) and data["keypoints_2d"].shape == (p, 10, 17, 2)
    assert data["scores_2d"].shape == (p, 10, 17) and data["filled_2d"].shape == (p, 10, 17)
    summary = json.loads(str(data["summary"]))
    assert [x["person"] for x in summary["people"]] == [int(i) for i in data["person_ids"]]
    assert summary["tracking"]["source"].startswith("linked by hotpatch")
    # the 2D kept is the person's own: the dancer (person 0) in front, the others at the back (x > 450)
    assert data["keypoints_2d"][0, :, 0, 0].max() < 450 and data["keypoints_2d"][1:, :, 0, 0].min() > 450


def test_random_weights_are_refused_unless_asked(capsys, tmp_path):
    rc, _, err = run(capsys, "lift", *TINY, *HOT, str(DATA / "alphapose_halpe26_multi.json"),
                     "-o", str(tmp_path / "o.npz"))
    assert rc == 2 and "no trained weights (no --checkpoint)" in err and "--random-weights" in err
    assert files(tmp_path) == []


def test_an_untrained_tra_recovers_linearly_unless_tra_is_asked(capsys, tmp_path, caplog):
    src = str(DATA / "alphapose_halpe26_multi.json")
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        rc, out, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", src, "-o", str(tmp_path / "a.npz"))
    assert rc == 0, err
    summary = json.loads(str(np.load(tmp_path / "a.npz")["summary"]))
    assert summary["config"]["recover"] == "linear" and summary["config"]["recover_replaced"] == "tra (untrained)"
    assert "linear interpolation instead" in summary["recovery_note"] and "recovery: the TRA has no trained" in out
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--recover", "tra", "--random-weights", src,
                     "-o", str(tmp_path / "b.npz"))
    assert rc == 0, err
    kept = json.loads(str(np.load(tmp_path / "b.npz")["summary"]))
    assert kept["config"]["recover"] == "tra" and "kept as asked" in caplog.text
    poses = np.load(tmp_path / "b.npz")["poses_3d"]
    assert np.ptp(poses[:7], axis=0).max() < 1e-5  # what the default avoids: one pose for every frame of a window


def test_a_failed_render_leaves_no_output_and_names_the_real_path(capsys, tmp_path, monkeypatch):
    def broken(path, *args, **kwargs):
        raise hotpatch.HotpatchError(f"writing {Path(path).name} failed: the writer stopped")

    monkeypatch.setattr(hotpatch.render, "render", broken)
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", str(DATA / "alphapose_halpe26_multi.json"),
                     "-o", str(tmp_path / "poses.npz"), "--render", str(tmp_path / "anim.gif"),
                     "--json", str(tmp_path / "s.json"))
    assert rc == 2 and "writing anim.gif failed" in err and ".tmp" not in err
    assert "none of this command's outputs was written" in err and str(tmp_path / "poses.npz") in err
    assert files(tmp_path) == []


def test_outputs_are_checked_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", str(DATA / "alphapose_halpe26_multi.json"),
                     "-o", str(tmp_path / "p.npz"), "--render", str(tmp_path / "p.mp4"))
    assert rc == 2 and "needs ffmpeg, which is not on the PATH" in err and files(tmp_path) == []
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", str(DATA / "alphapose_halpe26_multi.json"),
                     "-o", "/proc/hotpatch-x.npz")
    assert rc == 2 and "cannot write '/proc/hotpatch-x.npz'" in err and "lifting" not in err


@pytest.mark.parametrize("argv, message", [
    (["-o", "OUT"], "is a file; pass a folder (-o DIR/) for one .npz per input"),
    (["-o", "DIR/", "--render", "one.gif"], "names one file for 2 inputs; pass a suffix such as --render .gif"),
])
def test_several_inputs_need_a_folder(capsys, tmp_path, argv, message):
    argv = [a.replace("OUT", str(tmp_path / "o.npz")).replace("DIR", str(tmp_path / "d")) for a in argv]
    rc, _, err = run(capsys, "lift", *TINY, *HOT, "--random-weights", f"{DATA}/openpose_body25*.json", *argv)
    assert rc == 2 and message in err


def test_coco_order_npy_and_image_id_frame_numbers_name_their_fix(capsys, tmp_path):
    dets = json.loads((DATA / "alphapose_halpe26_multi.json").read_text())
    coco = np.stack([np.reshape(d["keypoints"], (26, 3))[:17, :2] for d in dets if d["score"] > 2])
    np.save(tmp_path / "coco.npy", coco)
    rc, _, err = run(capsys, "lift", *TINY, "--random-weights", str(tmp_path / "coco.npy"), "-o", str(tmp_path / "a.npz"))
    assert rc == 2 and "looks like COCO-17" in err and "--layout coco17" in err
    rc, _, err = run(capsys, "lift", *TINY, "--random-weights", str(tmp_path / "coco.npy"), "--layout", "coco17",
                     "-o", str(tmp_path / "a.npz"))
    assert rc == 0, err
    ids = [{"image_id": i, "keypoints": d["keypoints"][:51], "score": d["score"]}
           for i, d in zip((397133, 37777, 252219), (d for d in dets if d["score"] > 2))]
    (tmp_path / "r.json").write_text(json.dumps(ids))
    rc, _, err = run(capsys, "lift", *TINY, "--random-weights", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.npz"))
    assert rc == 2 and "look like image ids" in err and "--frame-numbers index" in err
