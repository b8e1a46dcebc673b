"""Cameras: Human3.6M's calibrated cameras, virtual cameras for mocap clips, projection and
screen-coordinate normalisation (``x / w * 2 - [1, h / w]``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hotpatch.errors import DataKeyError

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
