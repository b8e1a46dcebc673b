import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hotpatch.data import (
    H36M_JOINTS_32_TO_17,
    H36M_LEFT,
    H36M_RIGHT,
    DataFileNotFoundError,
    DataKeyError,
    DataShapeError,
    PoseSequence,
    WindowDataset,
    clip_style,
    flip_pose,
    h36m_camera,
    image_coordinates,
    load_clips,
    load_h36m,
    make_windows,
    normalize_screen_coordinates,
    project_to_pixels,
    world_to_camera,
)
from hotpatch.errors import DataError, HotpatchError

# --------------------------------------------------------------------------- tiny files


def _standing_person(rng, n, joints):
    """(n, joints, 3) points around a person standing near the H36M world origin (Z up, metres)."""
    return (np.array([0.2, -0.1, 0.9]) + 0.3 * rng.normal(size=(n, joints, 3))).astype(np.float32)


def _write_h36m(tmp_path, frames=(7, 12)):
    rng = np.random.default_rng(0)
    poses_3d = {s: {f"Walk {i}": _standing_person(rng, n, 32) for i, n in enumerate(frames)} for s in ("S1", "S9")}
    # 2D detections are often a few frames longer than the mocap; the loader trims them
    poses_2d = {s: {a: [rng.uniform(0, 1000, (len(p) + 2, 17, 2)).astype(np.float32) for _ in range(4)]
                    for a, p in acts.items()} for s, acts in poses_3d.items()}
    meta = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [list(H36M_LEFT), list(H36M_RIGHT)]}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=poses_3d)
    np.savez(tmp_path / "data_2d_h36m_cpn.npz", positions_2d=poses_2d, metadata=meta)
    return tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_cpn.npz", poses_3d, poses_2d


NAMES = ["dataset-1_walk_normal_001", "dataset-1_walk_angry_001", "dataset-2_wave-right-hand_normal_002",
         "dataset-2_run_elderly_003", "dataset-2_bow_active_004"]


def _write_clips(tmp_path, lengths=(20, 31, 19, 25, 40), names=NAMES):
    rng = np.random.default_rng(1)
    clips = []
    for n in lengths:  # a person (Y up) drifting across the floor
        body = np.array([0.0, 1.0, 0.0]) + 0.3 * rng.normal(size=(1, 17, 3))
        walk = np.cumsum(0.02 * rng.normal(size=(n, 1, 3)) * np.array([1, 0, 1]), axis=0)
        clips.append(body + walk + 0.01 * rng.normal(size=(n, 17, 3)))
    path = tmp_path / "clips.npz"
    np.savez(path, positions=np.concatenate(clips).astype(np.float32),
             clip_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
             clip_names=np.array(names), joint_names=np.array([f"j{i}" for i in range(17)]),
             parents=np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]), fps=np.float64(30.0))
    return path, clips


# --------------------------------------------------------------------------- cameras


def _qrot_inverse(q, v):
    """Rotate v by the inverse of unit quaternion q = (w, x, y, z), by the textbook formula."""
    w, u = q[0], -np.asarray(q[1:])
    t = 2 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def test_h36m_projection_matches_hand_computation():
    cam = h36m_camera("S1", 0)
    q = np.array([0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088])
    t = np.array([1841.1070556640625, 4955.28466796875, 1563.4454345703125]) / 1000
    point = np.array([0.3, -0.2, 1.1])
    x_cam = _qrot_inverse(q / np.linalg.norm(q), point - t)
    np.testing.assert_allclose(world_to_camera(point, cam), x_cam, atol=1e-9)
    fx, fy, cx, cy = 1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812
    x, y = x_cam[0] / x_cam[2], x_cam[1] / x_cam[2]
    np.testing.assert_allclose(project_to_pixels(x_cam, cam, distort=False), [fx * x + cx, fy * y + cy], atol=1e-9)
    k1, k2, k3 = -0.20709891617298126, 0.24777518212795258, -0.0030751503072679043
    p1, p2 = -0.0009756988729350269, -0.00142447161488235
    r2 = x * x + y * y
    d = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + p1 * x + p2 * y
    expected = [fx * (x * d + p2 * r2) + cx, fy * (y * d + p1 * r2) + cy]
    np.testing.assert_allclose(project_to_pixels(x_cam, cam), expected, atol=1e-9)


@pytest.mark.parametrize("subject", ["S1", "S5", "S6", "S7", "S8", "S9", "S11"])
def test_every_h36m_camera_sees_a_person_at_the_origin_upright(subject):
    for i in range(4):
        cam = h36m_camera(subject, i)
        head, feet = world_to_camera(np.array([[0, 0, 1.7], [0, 0, 0.0]]), cam)
        assert 3 < head[2] < 7 and 3 < feet[2] < 7  # in front of the camera, a few metres away
        u, v = project_to_pixels(np.stack([head, feet]), cam).T
        assert np.all((u > 0) & (u < cam.res_w) & (v > 0) & (v < cam.res_h))
        assert v[0] < v[1]  # head above feet in the image (y down)
    with pytest.raises(DataKeyError, match="S2"):
        h36m_camera("S2", 0)


def test_normalised_screen_coordinates():
    px = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    norm = normalize_screen_coordinates(px, 1000, 1002)
    np.testing.assert_allclose(norm, [[-1, -1.002], [1, 1.002], [0, 0]])
    np.testing.assert_allclose(image_coordinates(norm, 1000, 1002), px)


# --------------------------------------------------------------------------- Human3.6M


def test_h36m_loader_on_real_layout(tmp_path):
    p3, p2, poses_3d, poses_2d = _write_h36m(tmp_path)
    splits = load_h36m(p3, p2, train_subjects=("S1",), test_subjects=("S9",))
    assert [len(splits["train"]), len(splits["test"])] == [8, 8]  # 2 actions x 4 cameras each
    seq = splits["test"][5]  # S9, second action, camera 1
    assert seq.name == "S9/Walk 1/55011271" and seq.positions.shape == (12, 17, 3)
    world = poses_3d["S9"]["Walk 1"][:, list(H36M_JOINTS_32_TO_17)]
    cam = world_to_camera(world, h36m_camera("S9", 1))
    np.testing.assert_allclose(seq.positions, cam - cam[:, :1], atol=1e-5)
    assert np.all(seq.positions[:, 0] == 0)
    expected_2d = poses_2d["S9"]["Walk 1"][1][:12] / 1000 * 2 - np.array([1, 1.0])
    np.testing.assert_allclose(seq.keypoints, expected_2d, atol=1e-6)
    assert seq.keypoints.dtype == np.float32 and seq.positions.dtype == np.float32


def test_h36m_without_2d_file_uses_projections(tmp_path):
    p3, _, poses_3d, _ = _write_h36m(tmp_path)
    seq = load_h36m(p3, train_subjects=("S1",), test_subjects=())["train"][3]  # first action, camera 3
    cam = h36m_camera("S1", 3)
    px = project_to_pixels(world_to_camera(poses_3d["S1"]["Walk 0"][:, list(H36M_JOINTS_32_TO_17)], cam), cam)
    np.testing.assert_allclose(seq.keypoints, normalize_screen_coordinates(px, 1000, 1002), atol=1e-5)


def test_h36m_bad_files_give_clear_errors(tmp_path):
    p3, p2, poses_3d, poses_2d = _write_h36m(tmp_path)
    with pytest.raises(DataFileNotFoundError, match="nope.npz"):
        load_h36m(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", positions=np.zeros(3))
    with pytest.raises(DataKeyError, match=r"no key 'positions_3d'.*\['positions'\]"):
        load_h36m(tmp_path / "bad.npz")
    with pytest.raises(DataKeyError, match=r"no subject 'S5' \(found \['S1', 'S9'\]\)"):
        load_h36m(p3, p2)  # the file has S1 and S9 only
    poses_3d["S1"]["Walk 0"] = np.zeros((7, 20, 3))
    np.savez(tmp_path / "j20.npz", positions_3d=poses_3d)
    with pytest.raises(DataShapeError, match=r"\(7, 20, 3\).*\(N, 32, 3\)"):
        load_h36m(tmp_path / "j20.npz", train_subjects=("S1",), test_subjects=())
    short = {s: {a: [v[:3] for v in views] for a, views in acts.items()} for s, acts in poses_2d.items()}
    np.savez(tmp_path / "short.npz", positions_2d=short)
    with pytest.raises(DataShapeError, match="3 frames but the 3D sequence has 7"):
        load_h36m(p3, tmp_path / "short.npz", train_subjects=("S1",), test_subjects=())
    coco = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3, 5], [2, 4, 6]]}
    np.savez(tmp_path / "coco.npz", positions_2d=poses_2d, metadata=coco)
    with pytest.raises(DataShapeError, match="keypoints_symmetry"):
        load_h36m(p3, tmp_path / "coco.npz", train_subjects=("S1",), test_subjects=())


# --------------------------------------------------------------------------- clips


def test_clips_loader_and_style_split(tmp_path):
    path, clips = _write_clips(tmp_path)
    splits = load_clips(path, cameras_per_clip=2, seed=3)
    assert [s.name for s in splits["test"]] == [
        "dataset-1_walk_normal_001/cam0", "dataset-1_walk_normal_001/cam1",
        "dataset-2_wave-right-hand_normal_002/cam0", "dataset-2_wave-right-hand_normal_002/cam1"]
    assert len(splits["train"]) == 6 and clip_style(NAMES[2]) == "normal"
    seq = splits["train"][2]  # clip 3 (elderly), camera 0
    assert seq.positions.shape == (25, 17, 3) and seq.keypoints.shape == (25, 17, 2)
    assert np.all(seq.positions[:, 0] == 0)
    # the camera transform is rigid: distances between joints are those of the world clip
    world = clips[3]
    np.testing.assert_allclose(np.linalg.norm(seq.positions[:, 5] - seq.positions[:, 11], axis=-1),
                               np.linalg.norm(world[:, 5] - world[:, 11], axis=-1), atol=1e-5)
    # 2D is the projection of the (un-rooted) camera-frame 3D; depth is 4-6 m plus travel
    cam_pts = world_to_camera(world, seq.camera)
    assert np.all(cam_pts[..., 2] > 3.5) and np.all(cam_pts[:, 0, 2] < 7.5)
    np.testing.assert_allclose(seq.keypoints, (1145 * cam_pts[..., :2] / cam_pts[..., 2:] + 500) / 500 - 1, atol=1e-5)
    assert load_clips(path, cameras_per_clip=1, max_clips=1)["train"][0].name == "dataset-1_walk_angry_001/cam0"


def test_clips_same_seed_same_data_different_seed_different_cameras_and_noise(tmp_path):
    path, _ = _write_clips(tmp_path)
    a = load_clips(path, seed=5, noise_px=2.0)["train"]
    b = load_clips(path, seed=5, noise_px=2.0)["train"]
    c = load_clips(path, seed=6, noise_px=2.0)["train"]
    clean = load_clips(path, seed=5)["train"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.keypoints, y.keypoints)
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(a[0].positions, c[0].positions)  # other cameras
    np.testing.assert_array_equal(a[0].positions, clean[0].positions)  # noise leaves cameras and 3D alone
    noise = np.concatenate([(x.keypoints - y.keypoints).ravel() for x, y in zip(a, clean)])
    assert np.std(noise) == pytest.approx(2.0 / 500, rel=0.1)  # 2 px in normalised units (w = 1000)


def test_clips_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="missing.npz"):
        load_clips(tmp_path / "missing.npz")
    np.savez(tmp_path / "nooff.npz", positions=np.zeros((4, 17, 3)), clip_names=np.array(["a_b_c_d"]))
    with pytest.raises(DataKeyError, match="clip_offsets"):
        load_clips(tmp_path / "nooff.npz")
    np.savez(tmp_path / "shape.npz", positions=np.zeros((4, 16, 3)), clip_offsets=np.array([0, 4]),
             clip_names=np.array(["a_b_c_d"]))
    with pytest.raises(DataShapeError, match=r"'positions'.*\(4, 16, 3\).*\(N, 17, 3\)"):
        load_clips(tmp_path / "shape.npz")
    np.savez(tmp_path / "offsets.npz", positions=np.zeros((4, 17, 3)), clip_offsets=np.array([0, 3]),
             clip_names=np.array(["a_b_c_d"]))
    with pytest.raises(DataShapeError, match="clip_offsets"):
        load_clips(tmp_path / "offsets.npz")
    path, _ = _write_clips(tmp_path, lengths=(20,), names=["no-style"])
    with pytest.raises(HotpatchError, match="'no-style' has 1 '_'-separated fields"):
        load_clips(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_clips(tmp_path / "junk.npz")


# --------------------------------------------------------------------------- windows


LENGTHS = [1, 5, 8, 9, 17]


def test_seq2seq_windows_cover_every_frame_exactly_once():
    windows = make_windows(LENGTHS, 4)
    counts = [np.zeros(n, int) for n in LENGTHS]
    for s, start in windows:
        idx = start + np.arange(4)
        np.add.at(counts[s], idx[idx < LENGTHS[s]], 1)
    assert all(np.all(c == 1) for c in counts)
    assert len(windows) == sum(-(-n // 4) for n in LENGTHS)  # no window is all padding


def test_seq2frame_has_one_window_per_centre():
    windows = make_windows(LENGTHS, 5, mode="seq2frame")
    assert len(windows) == sum(LENGTHS)
    for s, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(np.sort(windows[windows[:, 0] == s, 1] + 2), np.arange(n))
    strided = make_windows([9], 5, mode="seq2frame", stride=3)
    np.testing.assert_array_equal(strided[:, 1] + 2, [0, 3, 6])


def _sequences(lengths=LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    return [PoseSequence(f"s{i}", rng.normal(size=(n, 17, 2)).astype(np.float32),
                         rng.normal(size=(n, 17, 3)).astype(np.float32)) for i, n in enumerate(lengths)]


def test_window_items_edge_padding_and_mask():
    seqs = _sequences([3])
    ds = WindowDataset(seqs, 5, mode="seq2frame")
    item = ds[0]  # centred on frame 0: frames -2..2 -> 0, 0, 0, 1, 2
    assert item["inputs"].shape == (5, 17, 2) and item["targets"].shape == (5, 17, 3)
    assert item["valid"].tolist() == [False, False, True, True, True]
    np.testing.assert_array_equal(item["targets"].numpy(), seqs[0].positions[[0, 0, 0, 1, 2]])
    last = WindowDataset(seqs, 4)[0]  # seq2seq: frames 0..3 -> 0, 1, 2, 2
    assert last["valid"].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(last["inputs"].numpy(), seqs[0].keypoints[[0, 1, 2, 2]])
    conf = WindowDataset(seqs, 4, confidence=True)[0]["inputs"]
    assert conf.shape == (4, 17, 3) and torch.all(conf[..., 2] == 1)
    np.testing.assert_array_equal(conf[..., :2].numpy(), last["inputs"].numpy())


def test_flip_swaps_named_joints_and_twice_is_identity():
    x = np.random.default_rng(0).normal(size=(4, 17, 3))
    f = flip_pose(x)
    for left, right in zip(H36M_LEFT, H36M_RIGHT):
        np.testing.assert_array_equal(f[:, left], x[:, right] * [-1, 1, 1])
        np.testing.assert_array_equal(f[:, right], x[:, left] * [-1, 1, 1])
    for j in (0, 7, 8, 9, 10):
        np.testing.assert_array_equal(f[:, j], x[:, j] * [-1, 1, 1])
    np.testing.assert_array_equal(flip_pose(f), x)
    t = torch.tensor(x[..., :2])
    assert torch.equal(flip_pose(flip_pose(t)), t) and not torch.equal(flip_pose(t), t)


def test_dataset_flips_deterministically_under_a_seed():
    seqs = _sequences()
    plain = WindowDataset(seqs, 4)
    always = WindowDataset(seqs, 4, flip_prob=1.0)
    assert torch.equal(always[3]["inputs"], flip_pose(plain[3]["inputs"]))
    assert torch.equal(always[3]["targets"], flip_pose(plain[3]["targets"]))
    a, b, c = (WindowDataset(seqs, 4, flip_prob=0.5, seed=s) for s in (1, 1, 2))
    assert a.flips.any() and not a.flips.all()
    assert np.array_equal(a.flips, b.flips) and not np.array_equal(a.flips, c.flips)
    before = a.flips.copy()
    a.set_epoch(1)
    assert not np.array_equal(before, a.flips)
    a.set_epoch(0)
    assert np.array_equal(before, a.flips)


def test_dataloader_batches_and_stitch_round_trip():
    seqs = _sequences()
    for mode in ("seq2seq", "seq2frame"):
        ds = WindowDataset(seqs, 4, mode=mode)
        batches = list(DataLoader(ds, batch_size=8))
        assert batches[0]["inputs"].shape == (8, 4, 17, 2) and batches[0]["valid"].dtype == torch.bool
        targets = torch.cat([b["targets"] for b in batches])
        assert torch.equal(targets, ds.batch(range(len(ds)))["targets"])
        for seq, out in zip(seqs, ds.stitch(targets)):
            np.testing.assert_array_equal(out, seq.positions)


def test_bad_windows_and_sequences_raise():
    with pytest.raises(DataError, match="mode"):
        make_windows([5], 4, mode="frames")
    with pytest.raises(DataShapeError, match="s0"):
        WindowDataset([PoseSequence("s0", np.zeros((3, 16, 2)), np.zeros((3, 17, 3)))], 4)
    with pytest.raises(DataShapeError, match="one per window"):
        WindowDataset(_sequences(), 4).stitch(np.zeros((2, 4, 17, 3)))
