"""Real detector files of every format read and lifted, and people told apart before/after tracking.

Reads each file of ``tests/data/detectors`` (real output of OpenPose, AlphaPose, PoseTrack/MMPose,
MediaPipe; see its README) and the files built from them in documented layouts (VideoPose3D's
custom npz, a COCO results list with image ids, a COCO-order .npy), lifts every person it can with
one HoT-patched MixSTE (``--checkpoint``: official-layout weights, e.g. from
``benchmarks/tra_default.py``; without it random weights, said in the output), and prints a table:
format, file, frames, people, result, time (read + lift). A second table counts identity switches:
how often "the best detection of each frame" (reading without tracking) changes person, against
the possible switches left in the tracks hotpatch links.

    python benchmarks/detector_formats.py [--checkpoint CK.bin] [--out benchmarks/results/detector_formats.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "detectors"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DATA))

import hotpatch  # noqa: E402
from build_derived import MEDIAPIPE_FRAME, videopose3d_custom_npz  # noqa: E402
from hotpatch.atomic import atomic_write, write_text  # noqa: E402
from hotpatch.keypoints import load_detections, read_people  # noqa: E402
from hotpatch.keypoints.frames import video_frames  # noqa: E402
from hotpatch.keypoints.model import Detection  # noqa: E402
from hotpatch.keypoints.tracking import link, people, pick_switches  # noqa: E402
from hotpatch.models import get  # noqa: E402

BUILD = {"frames": 27, "dim": 64, "depth": 4, "num_heads": 4}


def dancer() -> np.ndarray:
    dets = json.loads((DATA / "alphapose_halpe26_multi.json").read_text())
    best: dict[int, dict] = {}
    for d in dets:
        t = int(d["image_id"].split(".")[0])
        if t not in best or d["score"] > best[t]["score"]:
            best[t] = d
    return np.stack([np.reshape(best[t]["keypoints"], (26, 3)) for t in sorted(best)])


def cases(tmp: Path) -> list[tuple[str, str, Path, dict]]:
    """(format, what the file is, path, read options)."""
    dets = json.loads((DATA / "alphapose_halpe26_multi.json").read_text())
    for d in dets:
        del d["idx"]
    write_text(tmp / "alphapose_no_idx.json", json.dumps(dets))
    kp = dancer()
    vp3d = videopose3d_custom_npz(tmp / "data_2d_custom_dancer.npz", kp[:, :17, :2], (720, 1280))
    ids = [{"image_id": i, "category_id": 1, "keypoints": kp[t, :17].reshape(-1).tolist(), "score": 2.5}
           for t, i in enumerate((397133, 37777, 252219, 87038, 174482, 403385, 6818, 480985, 458054, 331352))]
    write_text(tmp / "coco_results_image_ids.json", json.dumps(ids))
    with atomic_write(tmp / "coco_order.npy") as out, open(out, "wb") as fh:
        np.save(fh, kp[:, :17, :2])
    alpha = DATA / "alphapose_halpe26_multi.json"
    return [
        ("OpenPose BODY_25", "one image, right arm not found (SPIN example)", DATA / "openpose_body25_spin_im1010.json",
         {}),
        ("OpenPose BODY_25B folder", "Pose2Sim demo camera 4, frames 5-13 (8, 10 absent)",
         DATA / "openpose_body25b_pose2sim_cam04", {"min_score": 0.05}),
        ("OpenPose BODY_25B", "Pose2Sim frame, 2 people, one cut by the edge",
         DATA / "openpose_body25b_pose2sim_two_people.json", {"person": "all"}),
        ("AlphaPose Halpe-26, idx all 0", "dancer + background group, 10 frames (MotionBERT fork)", alpha,
         {"person": "all", "min_score": 0.1}),
        ("AlphaPose Halpe-26, no idx", "the same without idx", tmp / "alphapose_no_idx.json",
         {"person": "all", "min_score": 0.1}),
        ("PoseTrack18 annotations", "1 frame, 11 people, track_id (MMPose test data)",
         DATA / "posetrack18_012834_val.json", {"person": "all"}),
        ("MediaPipe Pose-33", "MediaPipe's test landmarks as a dump (built)",
         DATA / "mediapipe_pose_test_landmarks.json", {"size": MEDIAPIPE_FRAME}),
        ("VideoPose3D custom npz", "the dancer in its data_2d_custom layout (built)", vp3d, {}),
        ("COCO results, image ids", "the dancer under COCO image ids (built)", tmp / "coco_results_image_ids.json", {}),
        ("COCO results, image ids", "... with --frame-numbers index", tmp / "coco_results_image_ids.json",
         {"frame_numbers": "index"}),
        ("array .npy, COCO order", "the dancer saved as (T, 17, 2) COCO (built)", tmp / "coco_order.npy", {}),
        ("array .npy, COCO order", "... with --layout coco17", tmp / "coco_order.npy", {"layout": "coco17"}),
    ]


def model(checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    recipe = get("mixste")
    base = recipe.build(**BUILD)
    if checkpoint:
        recipe.load_checkpoint(base, checkpoint)
        what = f"MixSTE {BUILD} with {checkpoint}"
    else:
        what = f"MixSTE {BUILD} on RANDOM weights (pass --checkpoint for trained ones)"
    return hotpatch.apply(base, n=1, f=9, recover="linear"), what


def crossing() -> list[list[Detection]]:
    """Two people crossing, listed in random order with random scores (tests/test_tracking.py)."""
    rng = np.random.default_rng(0)
    rel = np.array([[0, -1.0], [-.03, -1.02], [.03, -1.02], [-.06, -1.0], [.06, -1.0], [-.12, -.82], [.12, -.82],
                    [-.16, -.6], [.16, -.6], [-.18, -.4], [.18, -.4], [-.08, -.48], [.08, -.48], [-.08, -.25],
                    [.08, -.25], [-.08, 0], [.08, 0]])
    frames = []
    for xa, xb in zip(np.linspace(200, 800, 40), np.linspace(820, 260, 40)):
        a = np.concatenate([np.array([xa, 600]) + rel * 400, np.full((17, 1), 0.9)], 1)
        b = np.concatenate([np.array([xb, 640]) + rel * 360, np.full((17, 1), 0.9)], 1)
        frames.append(list(rng.permutation([Detection(a, rng.uniform(1, 3)), Detection(b, rng.uniform(1, 3))])))
    return frames


def switches_table() -> list[str]:
    rows = ["| file | people (tracks) | frames | best detection per frame: person changes (before) | "
            "possible switches in hotpatch's tracks (after) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, frames in (("alphapose_halpe26_multi.json (real)", None), ("two people crossing (synthetic)", crossing())):
        if frames is None:
            det = load_detections(DATA / "alphapose_halpe26_multi.json")
            frames, _ = video_frames(det.frames, det.path)
            tracks = people(frames, det.layout.joints)
        else:
            tracks = link(frames, 17)
        rows.append(f"| {name} | {len(tracks)} | {len(frames)} | {pick_switches(tracks)} | {len(tracks.switches)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="official-layout MixSTE weights for F=27, dim=64, depth=4, heads=4")
    ap.add_argument("--out", help="also write the tables (markdown) here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(2)
    patched, what = model(args.checkpoint)
    lines = [f"Model: {what}; HoT n=1 f=9 (linear recovery). Machine: {platform.machine()}, "
             f"{torch.get_num_threads()} threads, load average (1 min) {os.getloadavg()[0]:.1f} at the start.", "",
             "| format | file | frames | people (in file) | result | time (s) |", "| --- | --- | ---: | ---: | --- | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, about, path, options in cases(Path(tmp)):
            t0 = time.perf_counter()
            try:
                lifted = hotpatch.lift_people(patched, path, **{"person": None, **options})
                statures = ", ".join(f"{x.summary['poses']['stature_mm']:.0f}" for x in lifted)
                result = f"lifted {len(lifted)} person(s) {[x.track.person for x in lifted]}; stature {statures} mm"
                frames = str(len(lifted[0].poses))
                tracked = lifted[0].track.tracking.get("people", 1)
            except hotpatch.HotpatchError as err:
                text = str(err).replace(str(path), path.name)
                result, frames, tracked = f"refused: {text[:170]}{'...' if len(text) > 170 else ''}", "-", "-"
            seconds = time.perf_counter() - t0
            lines.append(f"| {fmt} | {path.name}: {about} | {frames} | {tracked} | {result} | {seconds:.2f} |")
    lines += ["", *switches_table()]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
