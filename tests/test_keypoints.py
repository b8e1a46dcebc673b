"""Keypoint files -> Human3.6M-17 tracks (``hotpatch.keypoints``): every format, the best or a
chosen person per frame, gaps filled and counted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from hotpatch.errors import DataError
from hotpatch.keypoints import COCO_TO_H36M, coco_to_h36m, detect_format, read_keypoints
from keypoint_files import H, W, coco_from_h36m, projected_clip, write_coco, write_mmpose


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
    assert track.format == ("array" if fmt in ("npy", "npz") else fmt) == detect_format(path)
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
    with pytest.raises(DataError, match=r"track id 5 .*: 3 \(20 frames\), 7 \(20 frames\)"):
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
    assert "filled 3 frame(s) without the person and 1 low-score or undetected joint(s)" in caplog.text
    full = coco_to_h36m(coco)
    for t in (5, 6, 7):  # linear between frames 4 and 8
        w = (t - 4) / 4
        np.testing.assert_allclose(track.xy[t], (1 - w) * full[4] + w * full[8], atol=1e-3)
    assert track.filled[5:8].all() and track.filled.sum() == 3 * 17 + 1
    assert track.filled[12, 16] and not track.filled[12, 15]
    np.testing.assert_allclose(track.xy[12, 16], (full[11, 16] + full[13, 16]) / 2, atol=1e-3)
    assert (track.scores[5:8] == 0).all()


@pytest.mark.parametrize("name", [
    "{t}.jpg", "frame_{t:05d}.jpg", "cam2_{t:06d}.jpg", "2024-05-01_take3_{t:04d}.png", "video01/img{t:03d}.jpg",
    "C:\\clips\\s09\\cam4_{t}.jpeg",
], ids=["bare", "prefix", "camera_digit", "date_and_take", "folder", "windows_path"])
def test_alphapose_frame_numbers_come_from_the_last_digit_group_in_any_order(tmp_path, name):
    """AlphaPose names its frames after the image files: whatever digits come before the frame number
    (a camera, a date, a take, a folder), the frame is the last group, and the file's order does not matter."""
    px = projected_clip(25)
    coco = coco_from_h36m(px)
    path = write_coco(tmp_path / "a.json", coco, np.full((25, 17), 0.9), image_id=lambda t: name.format(t=t + 100))
    data = json.loads(path.read_text())
    order = np.random.default_rng(0).permutation(len(data))
    path.write_text(json.dumps([data[i] for i in order]))
    track = read_keypoints(path)
    assert track.format == "alphapose" and len(track) == 25 and track.missing_frames == 0
    np.testing.assert_allclose(track.xy, coco_to_h36m(coco), rtol=0, atol=1e-3)


def test_mmpose_frames_are_placed_by_frame_id_not_by_position(tmp_path):
    px = projected_clip(12)
    coco = coco_from_h36m(px)
    path = write_mmpose(tmp_path / "m.json", coco, np.full((12, 17), 0.9))
    data = json.loads(path.read_text())
    data["instance_info"] = data["instance_info"][::-1]  # frame_id 11 first
    path.write_text(json.dumps(data))
    np.testing.assert_allclose(read_keypoints(path).xy, coco_to_h36m(coco), rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", ["K.NPZ", "k.Npy", "alphapose-results", "results.JSON", "run.2024.05.json"])
def test_the_format_does_not_depend_on_the_case_or_presence_of_a_suffix(tmp_path, name):
    px = projected_clip(10)
    path = tmp_path / name
    if name.lower().endswith(".npz"):
        with open(path, "wb") as fh:
            np.savez(fh, keypoints=px)
    elif name.lower().endswith(".npy"):
        with open(path, "wb") as fh:
            np.save(fh, px)
    else:
        write_coco(path, coco_from_h36m(px), np.full((10, 17), 0.9), image_id=lambda t: f"cam1_{t:04d}.jpg")
    track = read_keypoints(path)
    assert track.format == ("array" if name.lower().endswith((".npz", ".npy")) else "alphapose") == detect_format(path)
    want = px if track.format == "array" else coco_to_h36m(coco_from_h36m(px))
    np.testing.assert_allclose(track.xy, want, rtol=0, atol=1e-3)
