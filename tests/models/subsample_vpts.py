"""Small VPTs that subsample their own clip on the frame axis (issue 27, pattern 4).

* :class:`SubsampleVPT` — ``x = x[:, ::3]`` before the embedding: 27 frames in, 9 tokens, a
  (1, 9, C) temporal embedding, (B, 9, J, 3) out.
* :class:`OffsetSubsampleVPT` — ``x[:, s::k]`` with s=2, k=4 (7 tokens of 27), the sizes read
  again after the slice (``b, t, j, c = x.shape``), joint tokens (B, T, J, C).
* :class:`MidSliceVPT` — two blocks see all 27 frames, then ``x[:, 1::3]`` keeps a third of the
  tokens (a strided stage written as a slice) before two more blocks with their own (1, 9, C)
  embedding; (B, 9, J, 3) out.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from author_vpts import Block

J, C, DIM = 17, 2, 32


class SubsampleVPT(nn.Module):
    def __init__(self, num_frame=27, step=3, depth=3, heads=4):
        super().__init__()
        self.step = step
        tokens = len(range(0, num_frame, step))
        self.embed = nn.Linear(J * C, DIM)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, DIM) * 0.02)
        self.blocks = nn.ModuleList([Block(DIM, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, J * 3)

    def forward(self, x):
        x = x[:, :: self.step]
        b, t, j, c = x.shape
        x = self.embed(x.reshape(b, t, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, t, j, 3)


class OffsetSubsampleVPT(nn.Module):
    """Joint tokens; every 4th frame from frame 2 (7 tokens of 27)."""

    def __init__(self, num_frame=27, start=2, step=4, depth=3, heads=4):
        super().__init__()
        self.start, self.step = start, step
        tokens = len(range(start, num_frame, step))
        self.embed = nn.Linear(C, DIM)
        self.time_embed = nn.Parameter(torch.randn(1, tokens, 1, DIM) * 0.02)
        self.blocks = nn.ModuleList([Block(DIM, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 3)

    def forward(self, x):
        x = x[:, self.start :: self.step]
        b, t, j, c = x.shape
        x = self.embed(x) + self.time_embed
        x = x.permute(0, 2, 1, 3).reshape(b * j, t, -1)  # attention over the tokens of each joint
        for blk in self.blocks:
            x = blk(x)
        x = x.reshape(b, j, t, -1).permute(0, 2, 1, 3)
        return self.head(self.norm(x))


class MidSliceVPT(nn.Module):
    def __init__(self, num_frame=27, start=1, step=3, heads=4):
        super().__init__()
        self.start, self.step = start, step
        self.embed = nn.Linear(J * C, DIM)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)
        self.stage_embed = nn.Parameter(torch.randn(1, len(range(start, num_frame, step)), DIM) * 0.02)
        self.full = nn.ModuleList([Block(DIM, heads) for _ in range(2)])
        self.thin = nn.ModuleList([Block(DIM, heads) for _ in range(2)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.full:
            x = blk(x)
        x = x[:, self.start :: self.step] + self.stage_embed
        for blk in self.thin:
            x = blk(x)
        return self.head(self.norm(x)).view(b, -1, j, 3)


ALL = {
    "subsample": (SubsampleVPT, (2, 27, J, C)),
    "offset_subsample": (OffsetSubsampleVPT, (2, 27, J, C)),
    "mid_slice": (MidSliceVPT, (2, 27, J, C)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = ALL[name]
    torch.manual_seed(seed)
    return cls().eval(), torch.randn(shape)
