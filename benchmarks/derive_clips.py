"""Write a shifted copy of a clips file (``shared/data/README.md`` layout) for held-out testing.

No second motion-capture set can be downloaded here, so ``benchmarks/accuracy.py --test-data``
is exercised on motion that differs from the training clips in the two ways a capture from
another studio usually does: the capture rate (the clips are resampled in time, e.g. 30 -> 50
fps like Human3.6M) and the performers' proportions (every bone of a clip is scaled by one
body factor times a per-bone factor, positions rebuilt down the kinematic tree). Only clips
of the chosen styles are kept (by default ``normal``: the test split). The output is a plain
``.npz`` in the same layout; it is derived from the input, so its licence is the input's
(Bandai-Namco: CC BY-NC 4.0): write it outside the repository and never commit it.

    python benchmarks/derive_clips.py ../shared/data/bandai_h36m17.npz /tmp/bandai_shifted.npz --fps 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotpatch.atomic import write_npz  # noqa: E402


def resample(clip: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear interpolation of (T, J, 3) positions from ``src_fps`` to ``dst_fps``."""
    t = len(clip)
    duration = (t - 1) / src_fps
    times = np.arange(0.0, duration + 1e-9, 1.0 / dst_fps)
    src = times * src_fps
    lo = np.clip(np.floor(src).astype(int), 0, t - 1)
    hi = np.clip(lo + 1, 0, t - 1)
    w = (src - lo)[:, None, None]
    return (1 - w) * clip[lo] + w * clip[hi]


def rescale_bones(clip: np.ndarray, parents: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Positions with bone j (parent -> j) scaled by ``scale[j]``, the root left in place."""
    out = np.empty_like(clip)
    for j, p in enumerate(parents):  # parents come before children in Human3.6M-17 order
        out[:, j] = clip[:, j] if p < 0 else out[:, p] + scale[j] * (clip[:, j] - clip[:, p])
    return out


def derive(src: dict[str, np.ndarray], *, fps: float, body: tuple[float, float], bone_jitter: float,
           styles: tuple[str, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """The shifted arrays (see the module docstring)."""
    rng = np.random.default_rng(seed)
    parents = np.asarray(src["parents"])
    offsets, names = src["clip_offsets"], np.asarray(src["clip_names"])
    src_fps = float(src["fps"])
    if any(p >= j for j, p in enumerate(parents) if p >= 0):
        raise ValueError("parents must come before their children")
    clips, kept = [], []
    for c, name in enumerate(names):
        if styles and str(name).split("_")[2] not in styles:
            continue
        clip = src["positions"][offsets[c]:offsets[c + 1]].astype(np.float64)
        scale = rng.uniform(*body) * rng.uniform(1 - bone_jitter, 1 + bone_jitter, len(parents))
        left, right = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]  # one performer: symmetric limbs
        scale[right] = scale[left]
        moved = rescale_bones(clip, parents, scale)
        clips.append(resample(moved, src_fps, fps) if fps != src_fps else moved)
        kept.append(str(name))
    if not clips:
        raise ValueError(f"no clip has a style in {styles}")
    out_offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
    return {
        "positions": np.concatenate(clips).astype(np.float32),
        "clip_offsets": out_offsets,
        "clip_names": np.asarray(kept),
        "joint_names": np.asarray(src["joint_names"]),
        "parents": parents.astype(np.int64),
        "fps": np.float64(fps),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="clips .npz (e.g. ../shared/data/bandai_h36m17.npz)")
    p.add_argument("output", help="where to write the shifted .npz (outside the repository)")
    p.add_argument("--fps", type=float, default=50.0, help="capture rate of the output (default: 50, as Human3.6M)")
    p.add_argument("--body", type=float, nargs=2, default=(0.88, 1.12), metavar=("LO", "HI"),
                   help="range of each clip's body scale (default: 0.88 1.12)")
    p.add_argument("--bone-jitter", type=float, default=0.06, help="per-bone scale jitter (default: ±6%%)")
    p.add_argument("--styles", default="normal", help="comma-separated styles to keep (default: normal, the test split)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.output)
    if out.resolve().is_relative_to(Path(__file__).resolve().parent.parent):
        print(f"refusing to write {out} inside the repository: the data's licence forbids committing it",
              file=sys.stderr)
        return 2
    with np.load(args.source) as src:
        arrays = derive(dict(src), fps=args.fps, body=tuple(args.body), bone_jitter=args.bone_jitter,
                        styles=tuple(s for s in args.styles.split(",") if s), seed=args.seed)
    write_npz(out, **arrays)
    print(f"wrote {out}: {len(arrays['clip_names'])} clips, {len(arrays['positions'])} frames at {args.fps:g} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
