"""Tiny pose data and models for the evaluation / fine-tuning tests (no real data)."""

from __future__ import annotations

import numpy as np
import torch

from hotpatch.data import PoseSequence

PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15])


def sequences(lengths=(20, 13, 27), seed=0) -> list[PoseSequence]:
    """Smoothly moving 17-joint poses with a simple perspective projection as the 2D input."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        t = np.linspace(0, 2, n)[:, None, None]
        base = 0.3 * rng.normal(size=(1, 17, 3))
        pos = base + 0.1 * np.sin(3 * t + rng.normal(size=(1, 17, 3)))
        pos = (pos - pos[:, :1]).astype(np.float32)
        kp = (pos[..., :2] / (pos[..., 2:] + 5.0)).astype(np.float32)
        out.append(PoseSequence(f"seq{i}", kp, pos))
    return out


def write_clips(path, lengths=(30, 22, 41, 25, 35, 28), seed=0):
    """A clips .npz (shared/data/README.md layout); clips 0 and 3 have style 'normal' (test)."""
    rng = np.random.default_rng(seed)
    clips, names = [], []
    for i, n in enumerate(lengths):
        t = np.linspace(0, 2, n)[:, None, None]
        body = np.array([0.0, 1.0, 0.0]) + 0.3 * rng.normal(size=(1, 17, 3))
        clips.append(body + 0.1 * np.sin(3 * t + rng.normal(size=(1, 17, 3))))
        names.append(f"dataset-1_walk_{'normal' if i % 3 == 0 else 'angry'}_{i:03d}")
    np.savez(path, positions=np.concatenate(clips).astype(np.float32),
             clip_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
             clip_names=np.array(names), joint_names=np.array([f"j{i}" for i in range(17)]),
             parents=PARENTS, fps=np.float64(30.0))
    return path


def mixste(frames=9, seed=0, drop_path_rate=0.0, **kw):
    """A tiny MixSTE from the recipe (dim 16, 2 block pairs, 2 heads)."""
    from hotpatch.models import get

    torch.manual_seed(seed)
    cfg = dict(dim=16, depth=2, num_heads=2, drop_path_rate=drop_path_rate)
    cfg.update(kw)
    return get("mixste").build(frames, **cfg)
