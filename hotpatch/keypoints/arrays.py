"""Keypoint arrays: ``.npy`` / ``.npz`` files, and VideoPose3D's custom 2D data set.

* A plain array (``.npy``, or an ``.npz`` holding one 3-D array or one named ``keypoints``, with
  optional ``width`` / ``height``): (T, J, 2 | 3) pixels, an optional third channel of scores.
  The layout comes from ``--layout``, else the joint count; a 17-joint array names no order, so
  :func:`hotpatch.keypoints.order.array_order` checks it is Human3.6M-17 and refuses one that looks
  like COCO-17 (pass ``--layout``).
* VideoPose3D's ``data_2d_custom_NAME.npz`` (its ``prepare_data_2d_custom.py``): ``positions_2d`` =
  ``{video: {"custom": [(T, 17, 2) array]}}`` and ``metadata`` = ``{"layout_name": "coco", ...,
  "video_metadata": {video: {"w", "h"}}}``, both pickled dicts. They are read with an unpickler
  that builds NumPy arrays and plain containers only; anything else in the file is refused unless
  ``trust`` (``--trust``: full unpickling, which runs code stored in the file).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.joint_layouts import LAYOUTS, JointLayout, layout_for
from hotpatch.keypoints.model import Detection, Detections, missing_to_nan
from hotpatch.keypoints.order import array_order

__all__ = ["is_videopose3d", "read_array"]

#: The globals a pickled dict of NumPy arrays needs (NumPy 1.x and 2.x module names).
_SAFE = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_SAFE |= {("numpy", "ndarray"), ("numpy", "dtype")}
_VP3D_LAYOUTS = {"coco": "coco17", "h36m": "h36m17"}


class _Refused(Exception):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def _safe_object(path: Path, key: str, trust: bool) -> Any:
    """The pickled object array ``key`` of the ``.npz`` at ``path``, unpickled safely (or fully if ``trust``)."""
    if trust:
        with np.load(path, allow_pickle=True, encoding="latin1") as data:
            return data[key]
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = reader(fh)
            if not dtype.hasobject:
                return np.lib.format.read_array(zf.open(f"{key}.npy"))
            return _ArraysOnly(fh, encoding="latin1").load()
    except _Refused as exc:
        raise DataError(f"{path}: {key} holds a pickled {exc}, which hotpatch does not unpickle unasked; pass --trust "
                        "to load the file by full unpickling (this runs code stored in the file)") from exc
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: cannot read {key} ({type(exc).__name__}: {exc}); expected VideoPose3D's "
                        "data_2d_custom .npz") from exc


def is_videopose3d(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "positions_2d.npy" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _videopose3d(path: Path, trust: bool) -> Detections:
    positions = _safe_object(path, "positions_2d", trust)
    positions = positions.item() if isinstance(positions, np.ndarray) and positions.dtype.hasobject else positions
    meta = _safe_object(path, "metadata", trust) if _has(path, "metadata") else {}
    meta = meta.item() if isinstance(meta, np.ndarray) and meta.dtype.hasobject else meta
    if not isinstance(positions, dict) or not positions:
        raise DataError(f"{path}: positions_2d is not a dict of videos; expected VideoPose3D's data_2d_custom layout "
                        "{video: {'custom': [(T, 17, 2) array]}}")
    if len(positions) > 1:
        names = ", ".join(sorted(map(str, positions))[:5])
        raise DataError(f"{path} holds {len(positions)} videos ({names}); hotpatch lifts one video per file: save "
                        "each video's positions_2d entry on its own")
    video, entry = next(iter(positions.items()))
    arrays = entry.get("custom") if isinstance(entry, dict) else None
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise DataError(f"{path}: positions_2d[{video!r}] has no 'custom' list of arrays; expected VideoPose3D's "
                        "data_2d_custom layout")
    kp = np.asarray(arrays[0], dtype=np.float64)
    name = _VP3D_LAYOUTS.get(str(meta.get("layout_name", "coco")) if isinstance(meta, dict) else "coco")
    if name is None:
        raise DataError(f"{path}: metadata layout_name {meta.get('layout_name')!r} is not one hotpatch reads "
                        f"({', '.join(_VP3D_LAYOUTS)})")
    size = ((meta.get("video_metadata") or {}).get(video) or {}) if isinstance(meta, dict) else {}
    det = _detections(path, "videopose3d", kp, LAYOUTS[name], "the file's metadata (layout_name)")
    det.width, det.height = size.get("w"), size.get("h")
    return det


def _has(path: Path, key: str) -> bool:
    with zipfile.ZipFile(path) as zf:
        return f"{key}.npy" in zf.namelist()


def _detections(path: Path, fmt: str, kp: np.ndarray, layout: JointLayout, how: str) -> Detections:
    if kp.ndim != 3 or kp.shape[2] not in (2, 3) or kp.shape[1] != layout.joints or len(kp) == 0:
        raise DataError(f"{path} holds an array of shape {kp.shape}; expected (T, {layout.joints}, 2) or "
                        f"(T, {layout.joints}, 3) {layout.description} keypoints in pixels (x, y[, score]), T >= 1.")
    scores = kp[..., 2:3] if kp.shape[2] == 3 else np.ones(kp.shape[:2] + (1,))
    full = missing_to_nan(np.concatenate([kp[..., :2], scores], axis=-1))
    frames = {t: [Detection(full[t], float(np.nanmean(full[t, :, 2])) if np.isfinite(full[t, :, 2]).any() else 0.0)]
              for t in range(len(full))}
    return Detections(path, fmt, frames, layout, how, has_scores=kp.shape[2] == 3)


def read_array(path: Path, layout: str | None = None, trust: bool = False) -> Detections:
    """The detections of an ``.npy`` / ``.npz`` keypoint file (see the module docstring)."""
    if path.suffix.lower() == ".npz" and is_videopose3d(path):
        return _videopose3d(path, trust)
    width = height = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        hint = " (an .npz of pickled objects: pass --trust to unpickle it)" if "allow_pickle" in str(exc) else ""
        raise DataError(f"{path} is not a readable .npy/.npz array{hint}; save it with numpy.save / numpy.savez "
                        "(no pickled objects).") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            arrays = [k for k in keys if loaded[k].ndim == 3]
            key = "keypoints" if "keypoints" in keys else arrays[0] if len(arrays) == 1 else None
            if key is None:
                raise DataError(f"{path} holds {keys}; expected one (T, J, 2|3) array or one named 'keypoints'.")
            kp = np.asarray(loaded[key], dtype=np.float64)
            width = int(loaded["width"]) if "width" in keys else None
            height = int(loaded["height"]) if "height" in keys else None
    else:
        kp = np.asarray(loaded, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] not in (2, 3) or len(kp) == 0:
        raise DataError(f"{path} holds an array of shape {kp.shape}; expected (T, 17, 2) or (T, 17, 3) Human3.6M-17 "
                        "keypoints in pixels (x, y[, score]) with T >= 1 (or another layout with --layout).")
    if layout is not None:
        chosen, how = LAYOUTS[layout], "--layout"
    elif kp.shape[1] == 17:
        evidence = array_order(missing_to_nan(np.concatenate([kp[..., :2], np.ones(kp.shape[:2] + (1,))], -1)))
        if evidence.looks_coco:
            raise DataError(f"{path} holds (T, 17, {kp.shape[2]}) keypoints in an unnamed joint order that looks like "
                            f"COCO-17, not Human3.6M-17: {evidence.describe()}. Pass --layout coco17 if they are "
                            "COCO-17, or --layout h36m17 to read them as Human3.6M-17 anyway")
        chosen, how = LAYOUTS["h36m17"], "assumed for 17 unnamed joints (checked: " + evidence.describe() + ")"
    else:
        chosen, how = layout_for(kp.shape[1], str(path)), "joint count"
    det = _detections(path, "array", kp, chosen, how)
    det.width, det.height = width, height
    return det
