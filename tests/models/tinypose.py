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


def walks(lengths=(120,) * 30, seed=0) -> list[PoseSequence]:
    """One body (the same bones in every sequence) whose joints swing in bursts: pauses, slow and
    fast stretches of 6-30 frames at random, turned by a random yaw per sequence and seen in
    perspective. Unlike :func:`sequences` a lifter can learn it, and frames are not equally
    informative (a pause repeats itself), so pruners and recoveries rank differently per clip."""
    rng = np.random.default_rng(seed)
    body = 0.3 * np.random.default_rng(1234).normal(size=(1, 17, 3))
    out = []
    for i, n in enumerate(lengths):
        speed, t = np.zeros(n), 0
        while t < n:
            span = int(rng.integers(6, 30))
            speed[t:t + span] = rng.choice([0.0, 0.05, 0.3])
            t += span
        phase = np.cumsum(np.convolve(speed, np.ones(3) / 3, mode="same"))[:, None, None]
        pos = body + 0.1 * np.sin(phase * rng.uniform(0.5, 1.5, size=(1, 17, 3)) + rng.uniform(0, 6.3, size=(1, 17, 3)))
        yaw = rng.uniform(-0.6, 0.6)
        turn = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        pos = pos @ turn.T
        pos = (pos - pos[:, :1]).astype(np.float32)
        kp = (5 * pos[..., :2] / (pos[..., 2:] + 5.0)).astype(np.float32)
        out.append(PoseSequence(f"walk{i}", kp, pos))
    return out


class TemporalLifter(torch.nn.Module):
    """A small temporal-only lifter: one token per frame (B, F, C), ``depth`` attention blocks."""

    def __init__(self, frames=27, dim=32, depth=4, heads=4):
        super().__init__()
        from author_vpts import Block

        self.embed = torch.nn.Linear(17 * 2, dim)
        self.pos_embed = torch.nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.blocks = torch.nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, 17 * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, f, j, 3)


def trained_lifter(frames=27, steps=400, seed=0) -> torch.nn.Module:
    """:class:`TemporalLifter` trained on :func:`walks` (a few seconds on one CPU thread), in eval mode."""
    from hotpatch.data import WindowDataset

    torch.manual_seed(seed)
    model = TemporalLifter(frames)
    data = WindowDataset(walks(seed=3), frames, stride=frames // 3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = data.batch(torch.randint(len(data), (32,), generator=gen).tolist())
        loss = (model(batch["inputs"]) - batch["targets"]).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()
