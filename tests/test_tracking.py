"""Linking detections into people (``hotpatch.keypoints.tracking``): identities kept through
crossings, scores and file order; refused links; switches counted."""

from __future__ import annotations

import json

import numpy as np

from hotpatch.keypoints import read_people
from hotpatch.keypoints.model import Detection
from hotpatch.keypoints.tracking import link, people, pick_switches, usable_ids

T = 40


def body(x: float, y: float, height: float) -> np.ndarray:
    """(17, 3) a COCO-17 stick person standing at (x, y) (feet), ``height`` px tall, score 0.9."""
    rel = np.array([[0, -1.0], [-.03, -1.02], [.03, -1.02], [-.06, -1.0], [.06, -1.0], [-.12, -.82], [.12, -.82],
                    [-.16, -.6], [.16, -.6], [-.18, -.4], [.18, -.4], [-.08, -.48], [.08, -.48], [-.08, -.25],
                    [.08, -.25], [-.08, 0], [.08, 0]])
    return np.concatenate([np.array([x, y]) + rel * height, np.full((17, 1), 0.9)], axis=1)


def crossing(seed: int = 0) -> tuple[list[list[Detection]], np.ndarray]:
    """Two people walking past each other; the file lists them in random order with random scores.
    Returns the frames and (T, 2) the x of person A and B."""
    rng = np.random.default_rng(seed)
    xa, xb = np.linspace(200, 800, T), np.linspace(820, 260, T)
    frames = []
    for t in range(T):
        dets = [Detection(body(xa[t], 600, 400), rng.uniform(1, 3), 0), Detection(body(xb[t], 640, 360),
                                                                             rng.uniform(1, 3), 0)]
        frames.append(list(rng.permutation(dets)))
    return frames, np.stack([xa, xb], 1)


def test_linking_keeps_each_person_through_a_crossing_whatever_the_scores_and_order():
    frames, x = crossing()
    assert not usable_ids(frames)  # idx 0 for everyone, as AlphaPose writes without tracking
    tracks = link(frames, 17)
    assert len(tracks) == 2 and tracks.switches == []
    feet = tracks.keypoints[:, :, 15:17, 0].mean(axis=-1)  # (P, T) x of the ankles
    a = int(np.argmin(np.abs(feet[:, 0] - x[0, 0])))
    np.testing.assert_allclose(feet[a], x[:, 0], atol=1e-6)
    np.testing.assert_allclose(feet[1 - a], x[:, 1], atol=1e-6)
    assert pick_switches(tracks) > 10  # the best detection of each frame jumps between them


def test_a_refused_link_does_not_force_two_poor_ones():
    # frame 0: a big person at x=300; frame 1: the big one again, and a small one far away; the small one
    # must start a new track, not steal the big one's track while the big one starts another
    frames = [[Detection(body(300, 800, 700), 3.0)],
              [Detection(body(980, 420, 90), 1.2), Detection(body(310, 800, 700), 2.9)]]
    tracks = link(frames, 17)
    assert len(tracks) == 2
    big = tracks.keypoints[0]
    assert np.isfinite(big[:, 0, 0]).all() and abs(big[1, 15, 0] - (310 - 0.08 * 700)) < 1e-6


def test_one_person_per_frame_is_one_track_and_its_jumps_are_counted():
    frames = [[Detection(body(200 + 3 * t, 600, 400), 2.0)] for t in range(10)]
    frames[6] = [Detection(body(900, 600, 400), 2.0)]  # a detection of someone else, for one frame
    tracks = people(frames, 17)
    assert len(tracks) == 1 and [t for t, _ in tracks.switches] == [6, 7]


def test_read_people_lifts_each_track_of_a_crossing_file(tmp_path):
    frames, x = crossing(1)
    dets = [{"image_id": f"{t}.jpg", "category_id": 1, "score": d.score, "idx": 0,
             "keypoints": d.keypoints.reshape(-1).tolist()} for t, f in enumerate(frames) for d in f]
    (tmp_path / "alphapose-results.json").write_text(json.dumps(dets))
    everyone = read_people(tmp_path / "alphapose-results.json", person="all")
    assert len(everyone) == 2 and {p.tracking["source"] for p in everyone} == {
        "linked by hotpatch (Hungarian assignment on keypoint and box distance)"}
    ankles = sorted((p.xy[:, 3, 0] for p in everyone), key=lambda a: a[0])  # right ankle x over time
    np.testing.assert_allclose(ankles[0], x[:, 0] + 0.08 * 400, atol=1e-3)
    np.testing.assert_allclose(ankles[1], x[:, 1] + 0.08 * 360, atol=1e-3)
