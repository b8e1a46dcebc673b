"""Detector files in their real layouts (Halpe-26/136, COCO-WholeBody-133, MMPose inferencer
output, AlphaPose nested track ids) read into Human3.6M-17, and the frame size."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, layout_for, to_h36m
from hotpatch.keypoints import KeypointTrack, detect_format, frame_size, read_keypoints

T = 12
#: Human3.6M-17 limb joint -> its COCO-17 index (the first 17 joints of every layout).
LIMBS = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}


def people(joints: int, seed: int = 0) -> np.ndarray:
    """(T, joints, 2) distinct pixel positions, every joint somewhere else."""
    rng = np.random.default_rng(seed)
    return rng.uniform(100, 900, size=(T, joints, 2))


def alphapose_file(path, xy, scores=None, ids=None):
    scores = np.full(xy.shape[:2], 0.8) if scores is None else scores
    dets = []
    for t in range(len(xy)):
        det = {"image_id": f"{t}.jpg", "category_id": 1, "score": 2.5,
               "keypoints": np.concatenate([xy[t], scores[t][:, None]], 1).reshape(-1).tolist(),
               "box": [1.0, 2.0, 3.0, 4.0]}
        if ids is not None:
            det["idx"] = ids(t)
        dets.append(det)
    path.write_text(json.dumps(dets))
    return path


def mmpose_video_file(path, xy, scores=None):
    """What MMPoseInferencer writes to pred_out_dir for a video: a list of frames."""
    scores = np.full(xy.shape[:2], 0.8) if scores is None else scores
    frames = [{"frame_id": t, "instances": [{"keypoints": xy[t].tolist(), "keypoint_scores": scores[t].tolist(),
                                             "bbox": [[10.0, 20.0, 300.0, 400.0]], "bbox_score": 0.97}]}
              for t in range(len(xy))]
    path.write_text(json.dumps(frames))
    return path


def test_halpe26_uses_its_own_hip_neck_and_head_joints(tmp_path):
    xy = people(26)
    track = read_keypoints(alphapose_file(tmp_path / "alphapose-results.json", xy))
    assert (track.format, track.layout) == ("alphapose", "halpe26")
    got = track.xy.astype(np.float64)
    np.testing.assert_allclose(got[:, 0], xy[:, 19], atol=1e-3)                     # pelvis = Hip
    np.testing.assert_allclose(got[:, 8], xy[:, 18], atol=1e-3)                     # thorax = Neck
    np.testing.assert_allclose(got[:, 10], xy[:, 17], atol=1e-3)                    # head = Head
    np.testing.assert_allclose(got[:, 7], (xy[:, 19] + xy[:, 18]) / 2, atol=1e-3)   # spine
    np.testing.assert_allclose(got[:, 9], xy[:, 0], atol=1e-3)                      # nose
    for h, c in LIMBS.items():
        np.testing.assert_allclose(got[:, h], xy[:, c], atol=1e-3)
    assert not np.allclose(got[:, 0], (xy[:, 11] + xy[:, 12]) / 2, atol=1)         # not derived from the hips


def test_halpe136_reads_its_first_26_joints_like_halpe26(tmp_path):
    xy = people(136, seed=1)
    track = read_keypoints(alphapose_file(tmp_path / "a.json", xy))
    assert track.layout == "halpe136"
    np.testing.assert_allclose(track.xy, to_h36m(xy[:, :26], LAYOUTS["halpe26"]), atol=1e-3)


def test_wholebody133_derives_the_trunk_from_its_coco_body_and_ignores_face_and_hands(tmp_path):
    xy = people(133, seed=2)
    scores = np.full((T, 133), 0.9)
    scores[:, 23:] = 0.01  # face and hands unsure: must not matter
    track = read_keypoints(mmpose_video_file(tmp_path / "video.json", xy, scores))
    assert (track.format, track.layout) == ("mmpose", "wholebody133")
    got = track.xy.astype(np.float64)
    np.testing.assert_allclose(got[:, 0], (xy[:, 11] + xy[:, 12]) / 2, atol=1e-3)
    np.testing.assert_allclose(got[:, 8], (xy[:, 5] + xy[:, 6]) / 2, atol=1e-3)
    np.testing.assert_allclose(got[:, 10], (xy[:, 1] + xy[:, 2]) / 2, atol=1e-3)
    for h, c in LIMBS.items():
        np.testing.assert_allclose(got[:, h], xy[:, c], atol=1e-3)
    assert not track.filled.any()
    np.testing.assert_allclose(track.scores, 0.9, atol=1e-6)


def test_mmpose_inferencer_files_halpe26_and_results_lists(tmp_path):
    xy = people(26, seed=3)
    want = to_h36m(xy, LAYOUTS["halpe26"])
    video = mmpose_video_file(tmp_path / "v.json", xy)
    assert detect_format(video) == "mmpose"
    np.testing.assert_allclose(read_keypoints(video).xy, want, atol=1e-3)
    # the inferencer's results as returned per frame: {"predictions": [[instance, ...]]}
    results = [{"predictions": [[{"keypoints": xy[t].tolist(), "keypoint_scores": [0.8] * 26, "bbox_score": 0.9}]]}
               for t in range(T)]
    (tmp_path / "r.json").write_text(json.dumps(results))
    track = read_keypoints(tmp_path / "r.json")
    assert track.format == "mmpose" and len(track) == T
    np.testing.assert_allclose(track.xy, want, atol=1e-3)


def test_nested_and_float_track_ids(tmp_path):
    a, b = people(26, seed=4), people(26, seed=5)
    dets = json.loads(alphapose_file(tmp_path / "a.json", a, ids=lambda t: [[2.0], [2.0]]).read_text())
    dets += json.loads(alphapose_file(tmp_path / "b.json", b, ids=lambda t: 5.0).read_text())
    for d in dets[T:]:
        d["score"] = 3.0  # the other person scores higher
    (tmp_path / "both.json").write_text(json.dumps(dets))
    np.testing.assert_allclose(read_keypoints(tmp_path / "both.json").xy, to_h36m(b), atol=1e-3)
    np.testing.assert_allclose(read_keypoints(tmp_path / "both.json", person=2).xy, to_h36m(a), atol=1e-3)
    with pytest.raises(DataError, match=r"track id 9 .*: 2 \(12 frames\), 5 \(12 frames\)"):
        read_keypoints(tmp_path / "both.json", person=9)


def test_frame_size_from_file_option_video_or_an_assumption_named_in_a_warning(tmp_path, caplog):
    xy = people(17, seed=6)
    frames = json.loads(mmpose_video_file(tmp_path / "v.json", xy).read_text())
    sized_file = {"meta_info": {"image_size": [1280, 720]}, "instance_info": frames}
    (tmp_path / "sized.json").write_text(json.dumps(sized_file))
    sized = read_keypoints(tmp_path / "sized.json")
    assert (sized.width, sized.height) == (1280, 720)
    assert frame_size(sized) == (1280, 720, "the keypoint file")
    assert frame_size(sized, (640, 360)) == (640, 360, "given")
    unsized = read_keypoints(tmp_path / "v.json")
    assert frame_size(unsized, video=(800, 600)) == (800, 600, "the video")
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        # keypoints reach x, y = 900: 1080x1080 is the smallest common size (landscape, portrait or square) holding them
        assert frame_size(unsized) == (1080, 1080, "assumed")
    assert "assuming 1080x1080 (square" in caplog.text and "--size WxH" in caplog.text
    assert "others that fit: 1080x1350, 1920x1080" in caplog.text
    big = KeypointTrack(np.full((2, 17, 2), 5000.0, np.float32), np.ones((2, 17), np.float32),
                        np.zeros((2, 17), bool), 0, "h36m")
    assert frame_size(big)[:2] == (5008, 5008)


@pytest.mark.parametrize("content, message", [
    ([{"image_id": "0.jpg", "keypoints": [1.0] * 30}], "30 keypoint values; expected 51 (COCO-17), 54 (OpenPose COCO"),
    ([{"frame_id": 0, "instances": [{"keypoints": [[1, 2]] * 20, "keypoint_scores": [1] * 20}]}],
     "20 joints per person; hotpatch reads 17"),
    ([{"frame_id": 0, "instances": [{"keypoints": [[1, 2]] * 17, "keypoint_scores": [1] * 16}]}],
     "17 keypoints but 16 keypoint_scores"),
    ([{"frame_id": "x", "instances": []}], "not a valid mmpose keypoint file (ValueError"),
    ([{"frame_id": 0, "instances": [{"keypoints": [[1, 2], [3]], "keypoint_scores": [1, 1]}]}],
     "not a valid mmpose keypoint file"),
    ([{"image_id": "0.jpg", "keypoints": [1.0] * 51}, {"image_id": "1.jpg", "keypoints": [1.0] * 78}],
     "mixes detections of [17, 26] joints"),
    ({"instance_info": 3}, "hold a list of frames"),
    ([3, 4], "cannot tell the keypoint format"),
])
def test_unreadable_files_raise_one_line_naming_the_fix(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as info:
        read_keypoints(path)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert any(word in text for word in ("pass", "export", "Export", "expected")), text


def test_layout_for_names_every_known_layout():
    assert layout_for(26).name == "halpe26" and layout_for(133).name == "wholebody133"
    assert layout_for(25).name == "body25" and layout_for(33).name == "mediapipe33" and layout_for(18).name == "coco18"
    with pytest.raises(DataError, match="20 joints.*17 \\(COCO-17\\), 26 .*133 .*136"):
        layout_for(20)
