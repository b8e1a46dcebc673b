"""Build the two files of this folder that are not a detector's own file (see README.md).

    python tests/data/detectors/build_derived.py      # rewrites mediapipe_pose_test_landmarks.json

``videopose3d_custom_npz`` builds VideoPose3D's ``data_2d_custom`` layout in memory (the tests
call it; a pickled .npz is not kept in the repository).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: MediaPipe Pose's expected 2D landmarks (pixels) for its test image ``pose.jpg``:
#: EXPECTED_POSE_LANDMARKS of google-ai-edge/mediapipe, mediapipe/python/solutions/pose_test.py
#: (commit 139237092fedef164a17840aceb4e628244f8173, Apache-2.0).
MEDIAPIPE_TEST_LANDMARKS = [
    [460, 283], [467, 273], [471, 273], [474, 273], [465, 273], [465, 273], [466, 273], [491, 277], [480, 277],
    [470, 294], [465, 294], [545, 319], [453, 329], [622, 323], [375, 316], [696, 316], [299, 307], [719, 316],
    [278, 306], [721, 311], [274, 304], [713, 313], [283, 306], [520, 476], [467, 471], [612, 550], [358, 490],
    [701, 613], [349, 611], [709, 624], [363, 630], [730, 633], [303, 628],
]
#: The frame size the pixels are divided by: chosen by us (the test image's size is not in the source).
MEDIAPIPE_FRAME = (1000, 750)


def mediapipe_dump() -> list:
    """One frame, 33 landmarks as MediaPipe gives them (fractions of the frame), no z / visibility."""
    w, h = MEDIAPIPE_FRAME
    return [{"frame": 0, "pose_landmarks": [{"x": x / w, "y": y / h} for x, y in MEDIAPIPE_TEST_LANDMARKS]}]


def videopose3d_custom_npz(path: Path, keypoints: np.ndarray, size: tuple[int, int], video: str = "clip") -> Path:
    """Write ``keypoints`` (T, 17, 2) COCO-17 as VideoPose3D's ``data_2d_custom_*.npz``: the
    layout its ``data/prepare_data_2d_custom.py`` writes (pickled dicts in ``np.savez_compressed``)."""
    metadata = {"layout_name": "coco", "num_joints": 17,
                "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
                "video_metadata": {video: {"w": size[0], "h": size[1]}}}
    positions = {video: {"custom": [np.asarray(keypoints, dtype=np.float32)]}}
    np.savez_compressed(path, positions_2d=positions, metadata=metadata)
    assert zipfile.is_zipfile(path)
    return path


if __name__ == "__main__":
    (HERE / "mediapipe_pose_test_landmarks.json").write_text(json.dumps(mediapipe_dump()) + "\n")
