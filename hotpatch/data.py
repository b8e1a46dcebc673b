"""Pose data for lifting models: Human3.6M (VideoPose3D layout), mocap clips, windows.

Every loader returns ``{"train": [...], "test": [...]}`` lists of :class:`PoseSequence`:
2D inputs in normalised screen coordinates (``x / w * 2 - [1, h / w]``) and root-relative
3D targets in the camera frame, in metres. :class:`WindowDataset` cuts sequences into
F-frame windows (seq2seq or seq2frame, edge-padded) for a torch ``DataLoader``.

Two file formats are read:

* Human3.6M as VideoPose3D prepares it: ``data_3d_h36m.npz`` and ``data_2d_h36m_<det>.npz``.
  These hold *pickled* Python dicts, so :func:`load_h36m` calls ``np.load(allow_pickle=True)``
  -- on the paths you pass it and nothing else. Only load files you trust.
* The mocap clips format of ``shared/data/README.md`` (plain arrays, no pickle), where 2D
  inputs come from projecting the 3D joints through virtual cameras (:func:`load_clips`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from hotpatch.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "H36M_JOINTS_32_TO_17",
    "H36M_LEFT",
    "H36M_RIGHT",
    "H36M_TRAIN_SUBJECTS",
    "H36M_TEST_SUBJECTS",
    "Camera",
    "DataFileNotFoundError",
    "DataKeyError",
    "DataShapeError",
    "PoseSequence",
    "WindowDataset",
    "clip_style",
    "flip_pose",
    "h36m_camera",
    "image_coordinates",
    "load_clips",
    "load_h36m",
    "make_windows",
    "normalize_screen_coordinates",
    "project_to_pixels",
    "quaternion_to_matrix",
    "virtual_camera",
    "window_frames",
    "world_to_camera",
]

# --------------------------------------------------------------------------- skeleton

#: The 17 of Human3.6M's 32 joints that everyone uses (hip, legs, spine, head, arms).
H36M_JOINTS_32_TO_17: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
#: Left / right joints of the 17-joint skeleton, paired in order (hip, knee, foot, shoulder, elbow, wrist).
H36M_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
H36M_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)
H36M_TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
NUM_JOINTS = 17


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file does not exist."""


class DataKeyError(DataError, LookupError):
    """A data file lacks a key (an array, a subject, an action)."""


class DataShapeError(DataError, ValueError):
    """An array in a data file (or passed in) has the wrong shape or type."""


# --------------------------------------------------------------------------- cameras

# The four Human3.6M cameras (public calibration, as listed by VideoPose3D):
# id, principal point (px), focal length (px), radial k1 k2 k3, tangential p1 p2, width, height, azimuth (deg).
_H36M_INTRINSICS: tuple[tuple[Any, ...], ...] = (
    ("54138969", (512.54150390625, 515.4514770507812), (1145.0494384765625, 1143.7811279296875),
     (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
     (-0.0009756988729350269, -0.00142447161488235), 1000, 1002, 70.0),
    ("55011271", (508.8486328125, 508.0649108886719), (1149.6756591796875, 1147.5916748046875),
     (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
     (-0.0016190266469493508, -0.0027408944442868233), 1000, 1000, -70.0),
    ("58860488", (519.8158569335938, 501.40264892578125), (1149.1407470703125, 1148.7989501953125),
     (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
     (0.0014843869721516967, -0.0007599993259645998), 1000, 1000, 110.0),
    ("60457274", (514.9682006835938, 501.88201904296875), (1145.5113525390625, 1144.77392578125),
     (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
     (-0.0005872055771760643, -0.0018133620033040643), 1000, 1002, -110.0),
)

# Per subject, per camera (same order as above): orientation quaternion (w, x, y, z) rotating
# camera axes into world axes, and the camera centre in world coordinates (mm).
_H36M_EXTRINSICS: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]] = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera, optionally with Human3.6M-style lens distortion.

    ``rotation`` maps world axes to camera axes (x right, y down, z forward) and
    ``position`` is the camera centre in world coordinates, in metres, so that
    ``x_cam = rotation @ (x_world - position)``.
    """

    name: str
    focal: tuple[float, float]
    center: tuple[float, float]
    res_w: int
    res_h: int
    rotation: np.ndarray
    position: np.ndarray
    radial: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tangential: tuple[float, float] = (0.0, 0.0)
    azimuth: float = 0.0


def quaternion_to_matrix(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion given as (w, x, y, z); it need not be unit length."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def h36m_camera(subject: str, index: int) -> Camera:
    """One of the four calibrated Human3.6M cameras (``index`` 0-3) for ``subject`` (S1, S5-S9, S11)."""
    if subject not in _H36M_EXTRINSICS:
        raise DataKeyError(
            f"no Human3.6M camera calibration for subject {subject!r}; calibrations exist for "
            f"{sorted(_H36M_EXTRINSICS)}. Leave that subject out of the split."
        )
    if not 0 <= index < 4:
        raise DataKeyError(f"Human3.6M has cameras 0-3, got camera index {index}.")
    cam_id, center, focal, radial, tangential, w, h, azimuth = _H36M_INTRINSICS[index]
    quat, translation_mm = _H36M_EXTRINSICS[subject][index]
    return Camera(
        name=cam_id,
        focal=focal,
        center=center,
        res_w=w,
        res_h=h,
        rotation=quaternion_to_matrix(quat).T,  # the quaternion turns camera axes into world axes
        position=np.asarray(translation_mm, dtype=np.float64) / 1000.0,
        radial=radial,
        tangential=tangential,
        azimuth=azimuth,
    )


def world_to_camera(points: np.ndarray, camera: Camera) -> np.ndarray:
    """World points (..., 3) in metres → camera frame (x right, y down, z forward)."""
    return (np.asarray(points, dtype=np.float64) - camera.position) @ camera.rotation.T


def project_to_pixels(points_cam: np.ndarray, camera: Camera, distort: bool = True) -> np.ndarray:
    """Camera-frame points (..., 3) → pixel coordinates (..., 2).

    With ``distort``, applies the Human3.6M distortion model on ``(x, y) = (X/Z, Y/Z)``:
    ``r2 = x² + y²``, ``d = 1 + k1·r2 + k2·r2² + k3·r2³ + p1·x + p2·y``,
    ``x' = x·d + p2·r2``, ``y' = y·d + p1·r2``; then ``u = fx·x' + cx``, ``v = fy·y' + cy``.
    """
    points_cam = np.asarray(points_cam, dtype=np.float64)
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    if distort and (any(camera.radial) or any(camera.tangential)):
        k1, k2, k3 = camera.radial
        p1, p2 = camera.tangential
        r2 = np.sum(xy**2, axis=-1, keepdims=True)
        d = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + p1 * xy[..., :1] + p2 * xy[..., 1:]
        xy = xy * d + np.array([p2, p1]) * r2
    return xy * np.asarray(camera.focal) + np.asarray(camera.center)


def normalize_screen_coordinates(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels (..., 2) → [-1, 1] across the width, keeping the aspect ratio: ``x / w * 2 - [1, h / w]``."""
    return np.asarray(pixels) / w * 2 - np.array([1.0, h / w])


def image_coordinates(normalized: np.ndarray, w: int, h: int) -> np.ndarray:
    """Inverse of :func:`normalize_screen_coordinates`."""
    return (np.asarray(normalized) + np.array([1.0, h / w])) * w / 2


def virtual_camera(
    target: Sequence[float] | np.ndarray,
    azimuth: float,
    distance: float,
    height: float,
    *,
    focal: float = 1145.0,
    size: int = 1000,
    name: str = "virtual",
) -> Camera:
    """A distortion-free camera in a Y-up world, ``distance`` m from ``target`` horizontally,
    at world height ``height``, at ``azimuth`` degrees about the Y axis, looking at ``target``.

    Intrinsics are Human3.6M-like by default: focal 1145 px, a ``size``×``size`` image,
    principal point at its centre.
    """
    target = np.asarray(target, dtype=np.float64)
    a = math.radians(azimuth)
    position = np.array([target[0] + distance * math.sin(a), height, target[2] + distance * math.cos(a)])
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return Camera(
        name=name,
        focal=(focal, focal),
        center=(size / 2, size / 2),
        res_w=size,
        res_h=size,
        rotation=np.stack([right, down, forward]),
        position=position,
        azimuth=azimuth,
    )


# --------------------------------------------------------------------------- sequences


@dataclass(eq=False)
class PoseSequence:
    """One continuous sequence seen from one camera.

    ``keypoints``: (N, 17, 2) float32, normalised screen coordinates.
    ``positions``: (N, 17, 3) float32, camera frame, root (joint 0) subtracted, metres.
    ``scores``: optional (N, 17) detector confidences, the third input channel of models that
    take one (default: ones).
    """

    name: str
    keypoints: np.ndarray
    positions: np.ndarray
    camera: Camera | None = field(default=None, repr=False)
    scores: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.positions)


def _make_sequence(name: str, positions_cam: np.ndarray, pixels: np.ndarray, camera: Camera) -> PoseSequence:
    return PoseSequence(
        name=name,
        keypoints=normalize_screen_coordinates(pixels, camera.res_w, camera.res_h).astype(np.float32),
        positions=(positions_cam - positions_cam[:, :1]).astype(np.float32),
        camera=camera,
    )


def _open_npz(path: str | Path, what: str, allow_pickle: bool) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(
            f"{what} file {str(path)!r} does not exist; pass the path to an existing .npz file."
        )
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except Exception as e:  # zip / format errors surface as many types
        raise DataError(
            f"could not read {what} file {str(path)!r} as .npz ({e}); expected a file written by np.savez."
        ) from e


def _get_key(npz: Any, key: str, path: str | Path, expected: str) -> Any:
    if key not in npz.files:
        raise DataKeyError(
            f"{str(path)!r} has no key {key!r} (found keys {sorted(npz.files)}); expected {expected}."
        )
    try:
        return npz[key]
    except ValueError as e:  # object arrays without allow_pickle
        raise DataError(f"key {key!r} of {str(path)!r} could not be read ({e}); expected {expected}.") from e


def _pickled_dict(npz: Any, key: str, path: str | Path, expected: str) -> dict:
    value = _get_key(npz, key, path, expected)
    obj = value.item() if isinstance(value, np.ndarray) and value.dtype == object and value.shape == () else None
    if not isinstance(obj, dict):
        raise DataShapeError(
            f"key {key!r} of {str(path)!r} holds {value.dtype} {value.shape}, not a pickled dict; expected {expected}."
        )
    return obj


def _check_array(a: Any, shape: tuple[int | None, ...], where: str, path: str | Path) -> np.ndarray:
    """Check ``a`` is a numeric array of ``shape`` (None: any size there)."""
    wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    a = np.asarray(a)
    ok = a.dtype.kind in "fiu" and a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape))
    if not ok:
        raise DataShapeError(
            f"{where} in {str(path)!r} is {a.dtype} {a.shape}; expected a numeric array of shape {wanted}."
        )
    return a


def load_h36m(
    path_3d: str | Path,
    path_2d: str | Path | None = None,
    *,
    train_subjects: Sequence[str] = H36M_TRAIN_SUBJECTS,
    test_subjects: Sequence[str] = H36M_TEST_SUBJECTS,
    distort: bool = True,
) -> dict[str, list[PoseSequence]]:
    """Human3.6M in VideoPose3D's layout → ``{"train": [...], "test": [...]}``, one sequence per
    subject, action and camera (named ``"S9/Walking/54138969"``).

    ``path_3d``: ``data_3d_h36m.npz``, key ``positions_3d``: dict subject → action → (N, 32, 3)
    world positions in metres (reduced to the 17 usual joints; (N, 17, 3) is accepted as is).
    ``path_2d``: ``data_2d_h36m_<detector>.npz``, key ``positions_2d``: dict subject → action →
    four (N, 17, 2) pixel arrays (trimmed to the 3D length), and ``metadata``. Without it, the
    2D inputs are the ground-truth projections through the calibrated cameras.

    Both files are pickles: they are opened with ``np.load(allow_pickle=True)``, which can run
    code stored in the file. Only pass paths to files you trust; nothing else is ever loaded.
    """
    poses_3d = _pickled_dict(
        _open_npz(path_3d, "Human3.6M 3D", allow_pickle=True), "positions_3d", path_3d,
        "a pickled dict subject -> action -> (N, 32, 3) array",
    )
    poses_2d = None
    if path_2d is not None:
        npz_2d = _open_npz(path_2d, "Human3.6M 2D", allow_pickle=True)
        poses_2d = _pickled_dict(
            npz_2d, "positions_2d", path_2d, "a pickled dict subject -> action -> [4 x (N, 17, 2)]"
        )
        if "metadata" in npz_2d.files:
            _check_2d_metadata(_pickled_dict(npz_2d, "metadata", path_2d, "a pickled dict"), path_2d)
        else:
            log.warning("%s has no 'metadata'; assuming Human3.6M-17 joint order", path_2d)

    splits: dict[str, list[PoseSequence]] = {}
    for split, subjects in (("train", train_subjects), ("test", test_subjects)):
        splits[split] = []
        for subject in subjects:
            if subject not in poses_3d:
                raise DataKeyError(
                    f"{str(path_3d)!r} has no subject {subject!r} (found {sorted(poses_3d)}); "
                    f"pass {split}_subjects= with subjects the file has."
                )
            cameras = [h36m_camera(subject, i) for i in range(4)]
            for action, world in poses_3d[subject].items():
                world = _check_array(world, (None, None, 3), f"positions_3d[{subject!r}][{action!r}]", path_3d)
                if world.shape[1] == 32:
                    world = world[:, H36M_JOINTS_32_TO_17]
                elif world.shape[1] != NUM_JOINTS:
                    _check_array(world, (None, 32, 3), f"positions_3d[{subject!r}][{action!r}]", path_3d)
                views = _h36m_views(poses_2d, subject, action, len(world), path_2d) if poses_2d is not None else None
                for i, camera in enumerate(cameras):
                    positions_cam = world_to_camera(world, camera)
                    pixels = views[i] if views is not None else project_to_pixels(positions_cam, camera, distort)
                    name = f"{subject}/{action}/{camera.name}"
                    splits[split].append(_make_sequence(name, positions_cam, pixels, camera))
        log.info("Human3.6M %s: %d sequences, %d frames", split, len(splits[split]), sum(map(len, splits[split])))
    return splits


def _check_2d_metadata(metadata: dict, path: str | Path) -> None:
    joints = metadata.get("num_joints", NUM_JOINTS)
    if joints != NUM_JOINTS:
        raise DataShapeError(
            f"{str(path)!r} has num_joints={joints} (layout {metadata.get('layout_name')!r}); "
            f"expected 17 joints in Human3.6M order. Convert the detections to the H36M-17 layout first."
        )
    symmetry = metadata.get("keypoints_symmetry")
    if symmetry is not None and [list(map(int, s)) for s in symmetry] != [list(H36M_LEFT), list(H36M_RIGHT)]:
        raise DataShapeError(
            f"{str(path)!r} has keypoints_symmetry={[list(s) for s in symmetry]}; expected Human3.6M-17's "
            f"{[list(H36M_LEFT), list(H36M_RIGHT)]}. Reorder the joints to the H36M-17 layout first."
        )


def _h36m_views(poses_2d: dict, subject: str, action: str, length: int, path: str | Path | None) -> list[np.ndarray]:
    where = f"positions_2d[{subject!r}][{action!r}]"
    if subject not in poses_2d or action not in poses_2d[subject]:
        raise DataKeyError(
            f"{str(path)!r} has no {where} but the 3D file has that action; expected 2D detections for "
            f"every 3D sequence. Use the matching 2D file, or omit path_2d to use ground-truth projections."
        )
    views = poses_2d[subject][action]
    if not isinstance(views, (list, tuple)) or len(views) != 4:
        raise DataShapeError(
            f"{where} in {str(path)!r} holds {type(views).__name__}; expected a list of 4 camera views."
        )
    out = []
    for i, view in enumerate(views):
        view = _check_array(view, (None, NUM_JOINTS, 2), f"{where}[{i}]", path)
        if len(view) < length:
            raise DataShapeError(
                f"{where}[{i}] in {str(path)!r} has {len(view)} frames but the 3D sequence has {length}; "
                f"expected at least as many 2D frames as 3D frames."
            )
        out.append(view[:length])
    return out


# --------------------------------------------------------------------------- mocap clips


def clip_style(name: str) -> str:
    """The style field of a clip name ``dataset-{1,2}_{content}_{style}_{id}``."""
    name = str(name)
    parts = name.split("_")
    if len(parts) < 4:
        raise DataShapeError(
            f"clip name {name!r} has {len(parts)} '_'-separated fields; expected dataset_content_style_id."
        )
    return parts[2]


def load_clips(
    path: str | Path,
    *,
    cameras_per_clip: int = 4,
    noise_px: float = 0.0,
    seed: int = 0,
    test_styles: Sequence[str] = ("normal",),
    max_clips: int | None = None,
    distance: tuple[float, float] = (4.0, 6.0),
    height: tuple[float, float] = (1.2, 1.5),
    focal: float = 1145.0,
    size: int = 1000,
) -> dict[str, list[PoseSequence]]:
    """Mocap clips (``shared/data/README.md`` layout) seen through virtual cameras.

    Each clip is filmed by ``cameras_per_clip`` cameras at evenly spread azimuths (random
    offset and ±10° jitter), at a world height drawn from ``height`` (chest height, Y up),
    ``distance`` m plus the clip's horizontal travel radius away from the clip's mean joint
    position, looking at it. Gaussian noise of ``noise_px`` pixels is added to the 2D joints.
    Cameras and noise depend only on ``seed`` and the clip's index in the file.

    Split: a clip is a test clip when its style (3rd field of its name) is in ``test_styles``.
    ``max_clips`` keeps that many clips per split, evenly spread through the file.
    Sequences are named ``"{clip name}/cam{k}"``. The file is read without pickle.
    """
    npz = _open_npz(path, "clips", allow_pickle=False)
    positions = _get_key(npz, "positions", path, "(N, 17, 3) float metres")
    positions = _check_array(positions, (None, NUM_JOINTS, 3), "'positions'", path)
    offsets = _get_key(npz, "clip_offsets", path, "(S + 1,) int64 clip boundaries")
    offsets = _check_array(offsets, (None,), "'clip_offsets'", path)
    names = np.asarray(_get_key(npz, "clip_names", path, "(S,) str clip names"))
    if names.ndim != 1 or len(offsets) != len(names) + 1:
        raise DataShapeError(
            f"{str(path)!r} has {names.shape} clip_names and {offsets.shape} clip_offsets; "
            f"expected S names and S + 1 offsets."
        )
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(positions) or np.any(np.diff(offsets) < 1)):
        raise DataShapeError(
            f"clip_offsets in {str(path)!r} run {offsets[:1]}...{offsets[-1:]} for {len(positions)} frames; expected "
            f"strictly increasing offsets from 0 to {len(positions)}."
        )
    if cameras_per_clip < 1:
        raise DataError(f"cameras_per_clip={cameras_per_clip}; expected at least 1.")

    is_test = np.array([clip_style(n) in test_styles for n in names], dtype=bool)
    splits: dict[str, list[PoseSequence]] = {}
    for split, members in (("train", np.flatnonzero(~is_test)), ("test", np.flatnonzero(is_test))):
        if max_clips is not None and len(members) > max_clips:
            members = members[np.linspace(0, len(members) - 1, max_clips).round().astype(int)]
        splits[split] = []
        for c in members:
            clip = positions[offsets[c]:offsets[c + 1]].astype(np.float64)
            splits[split].extend(_film_clip(str(names[c]), clip, int(c), cameras_per_clip, noise_px, seed,
                                            distance, height, focal, size))
        log.info("clips %s: %d clips, %d sequences, %d frames", split, len(members), len(splits[split]),
                 sum(map(len, splits[split])))
    return splits


def _film_clip(
    name: str, clip: np.ndarray, index: int, n: int, noise_px: float, seed: int,
    distance: tuple[float, float], height: tuple[float, float], focal: float, size: int,
) -> list[PoseSequence]:
    """Film one clip with ``n`` virtual cameras; randomness from ``(seed, index)`` only."""
    rng = np.random.default_rng([seed, index])
    target = clip.reshape(-1, 3).mean(0)
    travel = np.max(np.linalg.norm((clip[:, 0] - target)[:, [0, 2]], axis=-1))
    azimuths = rng.uniform(0, 360) + 360 * np.arange(n) / n + rng.uniform(-10, 10, n)
    distances = rng.uniform(*distance, n) + travel
    heights = rng.uniform(*height, n)
    out = []
    for k in range(n):
        camera = virtual_camera(target, azimuths[k] % 360, distances[k], heights[k],
                                focal=focal, size=size, name=f"cam{k}")
        positions_cam = world_to_camera(clip, camera)
        pixels = project_to_pixels(positions_cam, camera)
        if noise_px > 0:
            pixels = pixels + rng.normal(0.0, noise_px, pixels.shape)
        out.append(_make_sequence(f"{name}/cam{k}", positions_cam, pixels, camera))
    return out


# --------------------------------------------------------------------------- windows

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def make_windows(lengths: Sequence[int], frames: int, mode: str = "seq2seq", stride: int | None = None) -> np.ndarray:
    """Windows over sequences of the given lengths, as an int64 array of rows (sequence, start).

    A window covers frames ``start .. start + frames - 1``, clamped to the sequence (edge padding).
    ``seq2seq``: starts every ``stride`` frames (default ``frames``: non-overlapping, every frame
    exactly once) until a window reaches the last frame. ``seq2frame``: one window per centre
    frame ``0, stride, 2·stride, ...`` (default stride 1), centre at offset ``frames // 2``.
    """
    if frames < 1:
        raise DataError(f"frames={frames}; expected a window length of at least 1.")
    if mode not in ("seq2seq", "seq2frame"):
        raise DataError(f"mode={mode!r}; expected 'seq2seq' or 'seq2frame'.")
    stride = stride if stride is not None else (frames if mode == "seq2seq" else 1)
    if stride < 1:
        raise DataError(f"stride={stride}; expected at least 1.")
    rows = []
    for s, n in enumerate(lengths):
        if mode == "seq2seq":
            starts = stride * np.arange(max(0, -(-(n - frames) // stride)) + 1)
        else:
            starts = np.arange(0, n, stride) - frames // 2
        rows.append(np.stack([np.full(len(starts), s), starts], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)


def window_frames(start: int, length: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (frames,) of a window, edge-padded into ``[0, length)``, and its mask of real frames."""
    idx = start + np.arange(frames)
    return np.clip(idx, 0, length - 1), (idx >= 0) & (idx < length)


def flip_pose(x: ArrayT, left: Sequence[int] = H36M_LEFT, right: Sequence[int] = H36M_RIGHT) -> ArrayT:
    """Mirror poses (..., J, C): negate x (channel 0) and swap left/right joints. Its own inverse.

    Works for normalised 2D (centred on the image) and camera-frame 3D, numpy or torch.
    """
    perm = np.arange(x.shape[-2])
    perm[list(left)], perm[list(right)] = list(right), list(left)
    if isinstance(x, torch.Tensor):
        out = x[..., torch.as_tensor(perm, device=x.device), :].clone()
    else:
        out = np.array(x[..., perm, :], copy=True)
    out[..., 0] = -out[..., 0]
    return out


class WindowDataset(Dataset):
    """F-frame windows over :class:`PoseSequence` s, for a torch ``DataLoader``.

    Item ``i`` is a dict: ``inputs`` (F, 17, C) float32 (C = 2, or 3 with a confidence channel
    when ``confidence``: the sequence's ``scores``, or ones), ``targets`` (F, 17, 3) float32, ``valid`` (F,) bool (False on
    edge padding), ``index`` (i). With ``flip_prob > 0`` a window is mirrored (:func:`flip_pose`)
    by a draw that depends only on ``seed``, the epoch (:meth:`set_epoch`) and ``i``.
    In seq2frame mode the window's centre frame is ``frames // 2``.
    """

    def __init__(
        self,
        sequences: Sequence[PoseSequence],
        frames: int,
        *,
        mode: str = "seq2seq",
        stride: int | None = None,
        flip_prob: float = 0.0,
        confidence: bool = False,
        seed: int = 0,
    ) -> None:
        for seq in sequences:
            n = len(seq.positions)
            if n < 1 or seq.keypoints.shape != (n, NUM_JOINTS, 2) or seq.positions.shape != (n, NUM_JOINTS, 3):
                raise DataShapeError(
                    f"sequence {seq.name!r} has keypoints {seq.keypoints.shape} and positions {seq.positions.shape}; "
                    f"expected (N, 17, 2) and (N, 17, 3) with N >= 1."
                )
            if seq.scores is not None and seq.scores.shape != (n, NUM_JOINTS):
                raise DataShapeError(f"sequence {seq.name!r} has scores {seq.scores.shape}; expected ({n}, 17).")
        self.sequences = list(sequences)
        self.frames = frames
        self.mode = mode
        self.flip_prob = flip_prob
        self.confidence = confidence
        self.seed = seed
        self.windows = make_windows([len(s) for s in self.sequences], frames, mode, stride)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Redraw the flips for ``epoch`` (deterministic given the seed)."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        self.flips = rng.random(len(self.windows)) < self.flip_prob

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, start = self.windows[i]
        seq = self.sequences[s]
        idx, valid = window_frames(int(start), len(seq), self.frames)
        inputs, targets = seq.keypoints[idx], seq.positions[idx]
        if self.confidence:  # before flipping: a flip swaps left/right joints, scores included
            scores = seq.scores[idx][..., None] if seq.scores is not None else np.ones_like(inputs[..., :1])
            inputs = np.concatenate([inputs, scores.astype(inputs.dtype)], axis=-1)
        if self.flips[i]:
            inputs, targets = flip_pose(inputs), flip_pose(targets)
        return {
            "inputs": torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
            "targets": torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)),
            "valid": torch.from_numpy(valid),
            "index": int(i),
        }

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``indices`` stacked into one batch (what a DataLoader's default collate gives)."""
        items = [self[int(i)] for i in indices]
        if not items:
            raise DataError("batch() got no indices; expected at least one window index.")
        out = {k: torch.stack([it[k] for it in items]) for k in ("inputs", "targets", "valid")}
        out["index"] = torch.tensor([it["index"] for it in items])
        return out

    def stitch(self, predictions: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Per-window predictions (W, F, 17, 3), in window order, → one (N, 17, 3) array per sequence.

        seq2seq: each real frame comes from the window that covers it (the last one when windows
        overlap). seq2frame: frame t comes from the window centred on t (NaN where no window is
        centred, i.e. with stride > 1). Flipped windows must be un-flipped by the caller.
        """
        pred = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
        if pred.shape[:2] != (len(self.windows), self.frames):
            raise DataShapeError(
                f"predictions have shape {pred.shape}; expected ({len(self.windows)}, {self.frames}, J, 3), "
                f"one per window."
            )
        out = [np.full((len(s),) + pred.shape[2:], np.nan, dtype=pred.dtype) for s in self.sequences]
        bounds = np.searchsorted(self.windows[:, 0], np.arange(len(self.sequences) + 1))
        centre = self.frames // 2
        for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            starts = self.windows[lo:hi, 1]
            if self.mode == "seq2frame":
                out[s][starts + centre] = pred[lo:hi, centre]
            else:
                idx = starts[:, None] + np.arange(self.frames)
                valid = idx < len(out[s])
                out[s][idx[valid]] = pred[lo:hi][valid]
        return out
