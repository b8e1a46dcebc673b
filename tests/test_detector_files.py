"""Real detector output (tests/data/detectors, see its README) read by every reader: format and
layout told by content, people told apart, undetected joints missing, frame numbers and sizes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, to_h36m
from hotpatch.keypoints import coco_to_h36m, detect_format, load_detections, outside_frame, read_keypoints, read_people

DATA = Path(__file__).parent / "data" / "detectors"
sys.path.insert(0, str(DATA))
from build_derived import MEDIAPIPE_FRAME, MEDIAPIPE_TEST_LANDMARKS, videopose3d_custom_npz  # noqa: E402

ALPHAPOSE = DATA / "alphapose_halpe26_multi.json"


@pytest.mark.parametrize("name, fmt, layout, frames, detections", [
    ("alphapose_halpe26_multi.json", "alphapose", "halpe26", 10, 28),
    ("openpose_body25_spin_im1010.json", "openpose", "body25", 1, 1),
    ("openpose_body25b_pose2sim_cam04", "openpose", "body25b", 7, 7),
    ("openpose_body25b_pose2sim_two_people.json", "openpose", "body25b", 1, 2),
    ("posetrack18_012834_val.json", "annotations", "posetrack17", 1, 11),
    ("mediapipe_pose_test_landmarks.json", "mediapipe", "mediapipe33", 1, 1),
])
def test_each_real_file_is_told_by_content(name, fmt, layout, frames, detections):
    det = load_detections(DATA / name)
    assert detect_format(DATA / name) == det.format == fmt
    assert det.layout.name == layout and len(det.frames) == frames and det.count() == detections


def front_dancer() -> tuple[np.ndarray, np.ndarray]:
    """(10, 26, 3) keypoints of the highest-scoring detection of each frame, and their scores."""
    best: dict[int, dict] = {}
    for d in json.loads(ALPHAPOSE.read_text()):
        t = int(d["image_id"].split(".")[0])
        if t not in best or d["score"] > best[t]["score"]:
            best[t] = d
    return (np.stack([np.reshape(best[t]["keypoints"], (26, 3)) for t in range(10)]),
            np.array([best[t]["score"] for t in range(10)]))


def test_alphapose_ids_all_zero_are_not_used_and_people_are_linked(caplog):
    with caplog.at_level(logging.INFO, logger="hotpatch"):
        main = read_keypoints(ALPHAPOSE)
    assert main.tracking["source"].startswith("linked by hotpatch") and main.tracking["people"] >= 4
    assert main.missing_frames == 0 and main.tracking["switches"] == [] and main.tracking["best_pick_switches"] == 0
    kp, _ = front_dancer()  # the front dancer scores highest in every frame: track 0 is her, frame by frame
    want = to_h36m(np.where(kp[..., 2:] > 0, kp, np.nan), LAYOUTS["halpe26"])[..., :2]
    sure = ~main.filled
    np.testing.assert_allclose(main.xy[sure], want[sure], atol=1e-3)
    assert "lifting person 0, detected in 10 of 10 frames" in caplog.text
    assert [t.person for t in read_people(ALPHAPOSE, person="all")] == [0]  # the others' joints score below 0.3
    everyone = read_people(ALPHAPOSE, person="all", min_score=0.1)
    ids = [t.person for t in everyone]
    assert ids[0] == 0 and len(ids) >= 2 and all(t.tracking["frames_seen"] >= 3 for t in everyone)
    second = read_keypoints(ALPHAPOSE, person=ids[1], min_score=0.1)
    assert second.xy[:, 0, 0].min() > 450  # a person in the background group (x 500-720), never the dancer


def test_alphapose_without_idx_reads_the_same(tmp_path):
    dets = json.loads(ALPHAPOSE.read_text())
    for d in dets:
        del d["idx"]
    (tmp_path / "no_idx.json").write_text(json.dumps(dets))
    a, b = read_people(ALPHAPOSE), read_people(tmp_path / "no_idx.json")
    assert [t.person for t in a] == [t.person for t in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.xy, y.xy)


def test_openpose_body25_undetected_joints_are_missing_never_places():
    det = load_detections(DATA / "openpose_body25_spin_im1010.json")
    kp = det.frames[1010][0].keypoints
    assert np.isnan(kp[3:5, :2]).all()  # right elbow and wrist written as 0, 0, 0
    assert "neck and mid-hip lie between" in det.layout_from
    h36m = to_h36m(kp, det.layout)
    np.testing.assert_allclose(h36m[8, :2], kp[1, :2])          # thorax = OpenPose's neck
    np.testing.assert_allclose(h36m[0, :2], kp[8, :2])          # pelvis = mid-hip
    for min_score in (0.3, 0.0):  # one frame: nothing to interpolate from, whatever the threshold
        with pytest.raises(DataError, match=r"joint 15 \(right elbow\) is never detected.*never found it"):
            read_keypoints(DATA / "openpose_body25_spin_im1010.json", min_score=min_score)


def test_openpose_body25b_folder_in_frame_order_with_gaps():
    det = load_detections(DATA / "openpose_body25b_pose2sim_cam04")
    assert sorted(det.frames) == [5, 6, 7, 9, 11, 12, 13] and "not BODY_25" in det.layout_from
    with pytest.raises(DataError, match=r"joint 9 \(neck/nose\).*always with a score below 0.3; lower --min-score"):
        read_keypoints(DATA / "openpose_body25b_pose2sim_cam04")
    track = read_keypoints(DATA / "openpose_body25b_pose2sim_cam04", min_score=0.05)
    assert len(track) == 9 and track.missing_frames == 2 and list(track.frame_numbers) == list(range(5, 14))
    assert track.filled[[3, 5]].all()  # frames 8 and 10
    raw = det.frames[5][0].keypoints
    np.testing.assert_allclose(track.xy[0, 10], raw[18, :2], atol=1e-3)  # head = head top (18)
    np.testing.assert_allclose(track.xy[0, 1], raw[12, :2], atol=1e-3)   # right hip (COCO order)


def test_openpose_two_people_the_cut_one_is_skipped(caplog):
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        people = read_people(DATA / "openpose_body25b_pose2sim_two_people.json", person="all")
    assert [p.person for p in people] == [0]
    assert "skipping person 1" in caplog.text and "joint 0 (pelvis)" in caplog.text
    assert people[0].xy[0, 0, 0] > 300  # the whole person, not the one cut by the left edge


def test_posetrack_annotations_names_ids_size_and_negative_coordinates():
    det = load_detections(DATA / "posetrack18_012834_val.json")
    assert list(det.frames) == [0]  # 000000.jpg, not frame_id 10128340000
    assert (det.width, det.height) == (1920, 1080) and "head_bottom" in det.layout_from
    assert sorted(d.track for d in det.frames[0]) == list(range(11))
    people = read_people(DATA / "posetrack18_012834_val.json", person="all")
    assert [p.person for p in people] == [3]  # the only one with every joint labelled
    track10 = [d for d in det.frames[0] if d.track == 10][0]
    assert np.isnan(track10.keypoints[0, :2]).all()  # nose: 0, 0, 0 (not labelled)
    h36m = to_h36m(track10.keypoints, det.layout)
    note = outside_frame(h36m[None, :, :2], 1920, 1080)
    assert note.startswith("1 of ") and "left of or above it (down to" in note and "y=-25" in note


def test_mediapipe_landmarks_need_the_frame_size_and_become_pixels():
    with pytest.raises(DataError, match="fractions of the frame.*pass --size WxH"):
        read_keypoints(DATA / "mediapipe_pose_test_landmarks.json")
    track = read_keypoints(DATA / "mediapipe_pose_test_landmarks.json", size=MEDIAPIPE_FRAME)
    px = np.asarray(MEDIAPIPE_TEST_LANDMARKS, dtype=np.float64)
    np.testing.assert_allclose(track.xy[0, 1], px[24], atol=1e-3)                  # right hip
    np.testing.assert_allclose(track.xy[0, 16], px[16], atol=1e-3)                 # right wrist
    np.testing.assert_allclose(track.xy[0, 0], (px[23] + px[24]) / 2, atol=1e-3)   # pelvis


def test_videopose3d_custom_npz_is_read_without_unpickling_code(tmp_path):
    kp, _ = front_dancer()
    path = videopose3d_custom_npz(tmp_path / "data_2d_custom_myvideos.npz", kp[:, :17, :2], (720, 1280))
    det = load_detections(path)
    assert (det.format, det.layout.name, det.width, det.height) == ("videopose3d", "coco17", 720, 1280)
    track = read_keypoints(path)
    np.testing.assert_allclose(track.xy, coco_to_h36m(kp[:, :17, :2]), atol=1e-3)
    assert not track.has_scores
    import fractions

    np.savez_compressed(tmp_path / "evil.npz", positions_2d={"v": {"custom": [fractions.Fraction(1, 3)]}})
    with pytest.raises(DataError, match=r"positions_2d holds a pickled fractions.Fraction.*pass --trust"):
        load_detections(tmp_path / "evil.npz")


def test_an_unnamed_coco_array_is_refused_naming_layout(tmp_path):
    kp, _ = front_dancer()
    np.save(tmp_path / "coco.npy", kp[:, :17, :2])
    with pytest.raises(DataError, match=r"looks like COCO-17.*Pass --layout coco17"):
        read_keypoints(tmp_path / "coco.npy")
    track = read_keypoints(tmp_path / "coco.npy", layout="coco17")
    np.testing.assert_allclose(track.xy, coco_to_h36m(kp[:, :17, :2]), atol=1e-3)
    h36m = coco_to_h36m(kp[:, :17, :2])
    np.save(tmp_path / "h36m.npy", h36m)  # the same person in Human3.6M-17 order passes the check
    np.testing.assert_allclose(read_keypoints(tmp_path / "h36m.npy").xy, h36m, atol=1e-3)


def test_image_ids_are_not_frame_numbers(tmp_path):
    kp, scores = front_dancer()
    dets = [{"image_id": image_id, "category_id": 1, "keypoints": kp[t, :17].reshape(-1).tolist(), "score": scores[t]}
            for t, image_id in enumerate((397133, 37777, 252219, 87038))]
    (tmp_path / "coco_results.json").write_text(json.dumps(dets))
    with pytest.raises(DataError, match=r"run from 37777 to 397133 \(359,357 frames\).*--frame-numbers index"):
        read_keypoints(tmp_path / "coco_results.json")
    track = read_keypoints(tmp_path / "coco_results.json", frame_numbers="index")
    assert len(track) == 4 and list(track.frame_numbers) == [37777, 87038, 252219, 397133]


def test_a_wrong_format_is_named():
    with pytest.raises(DataError, match=r"--format openpose, but .* is an AlphaPose results list.*drop --format"):
        load_detections(ALPHAPOSE, format="openpose")
    assert load_detections(ALPHAPOSE, format="coco").format == "coco"  # the same list read with image_id digits
