"""``--data`` options shared by ``hotpatch eval`` and ``hotpatch finetune`` (not a command itself).

DATA is either the mocap clips format (``positions`` / ``clip_offsets`` / ``clip_names``, e.g.
``bandai_h36m17.npz``; 2D inputs from virtual cameras) or Human3.6M in VideoPose3D's layout
(``data_3d_h36m.npz`` with ``positions_3d``, optionally ``--data-2d data_2d_h36m_<det>.npz``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from hotpatch.data import DataFileNotFoundError, PoseSequence, load_clips, load_h36m
from hotpatch.cli._options import nonnegative_float, positive_int
from hotpatch.errors import DataError

log = logging.getLogger(__name__)


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = parser.add_argument_group("data" if required else "data (optional)")
    g.add_argument("--data", required=required, metavar="PATH",
                   help="mocap clips .npz (bandai_h36m17.npz layout) or Human3.6M data_3d_h36m.npz "
                        "(a pickle: only pass files you trust)")
    g.add_argument("--data-2d", metavar="PATH",
                   help="Human3.6M 2D detections data_2d_h36m_<det>.npz (default: ground-truth projections)")
    g.add_argument("--max-clips", type=positive_int, metavar="N",
                   help="use N clips (clips format) or N sequences (Human3.6M) per split, evenly spread")
    g.add_argument("--cameras", type=positive_int, default=4, metavar="K",
                   help="virtual cameras per mocap clip (default: 4)")
    g.add_argument("--noise-px", type=nonnegative_float, default=0.0, metavar="PX",
                   help="Gaussian noise (pixels) on projected 2D joints of mocap clips (default: 0)")
    g.add_argument("--data-seed", type=int, default=0, metavar="S", help="seed of cameras and noise (default: 0)")


def data_kind(path: str | Path) -> str:
    """``"clips"`` or ``"h36m"``, from the keys of the .npz at ``path``."""
    path = Path(path)
    _check_file("--data", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except Exception as e:  # not a zip / npz
        raise DataError(f"could not read {str(path)!r} as .npz ({e}); expected a clips or Human3.6M .npz file.") from e
    if {"positions", "clip_offsets", "clip_names"} <= keys:
        return "clips"
    if "positions_3d" in keys:
        return "h36m"
    raise DataError(
        f"{str(path)!r} has keys {sorted(keys)}; expected a clips file (positions, clip_offsets, clip_names) "
        "or Human3.6M's data_3d_h36m.npz (positions_3d)."
    )


def check_data_files(args: argparse.Namespace) -> str:
    """Before a model is built: ``--data`` is a readable clips or Human3.6M .npz (its kind is
    returned) and ``--data-2d`` an existing file."""
    kind = data_kind(args.data)
    if getattr(args, "data_2d", None):
        if kind == "clips":
            raise DataError(f"--data-2d is for Human3.6M; {args.data} is a mocap clips file. Drop --data-2d.")
        _check_file("--data-2d", Path(args.data_2d))
    return kind


def _check_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise DataFileNotFoundError(f"{flag} {str(path)!r} is a directory; pass the .npz file in it")
    if not path.is_file():
        raise DataFileNotFoundError(f"data file {str(path)!r} does not exist; pass {flag} with an existing .npz file.")


def _spread(items: list[PoseSequence], limit: int | None) -> list[PoseSequence]:
    if limit is None or len(items) <= limit:
        return items
    keep = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in keep]


def load_splits(args: argparse.Namespace) -> dict[str, list[PoseSequence]]:
    """``{"train": [...], "test": [...]}`` from the ``add_data_arguments`` options."""
    if args.max_clips is not None and args.max_clips < 1:
        raise DataError(f"--max-clips {args.max_clips}: expected at least 1.")
    kind = check_data_files(args)
    if kind == "clips":
        splits = load_clips(args.data, cameras_per_clip=args.cameras, noise_px=args.noise_px, seed=args.data_seed,
                            max_clips=args.max_clips)
    else:
        splits = load_h36m(args.data, args.data_2d)
        splits = {k: _spread(v, args.max_clips) for k, v in splits.items()}
    log.info("data %s (%s): %d train / %d test sequences", args.data, kind, len(splits["train"]), len(splits["test"]))
    return splits
