"""Keypoint files written the way pose detectors write them, for the tests (not a test module):
a projected clip of tiny moving poses, COCO / AlphaPose results and MMPose predictions."""

from __future__ import annotations

import json

import numpy as np

import tinypose
from hotpatch.data import project_to_pixels, virtual_camera, world_to_camera

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
