"""A VPT that re-injects its input into every temporal block (as lifters that add the 2D
input back at each stage do): ``h = blk(h) + reinject(x)``, computed from the raw input inside
the loop. After the cut that re-injected tensor still has all F frames (it is made from the
input, not from pruned tokens) and is read next to pruned tokens."""

from __future__ import annotations

import torch
import torch.nn as nn

from author_vpts import Block


class ReinjectFormer(nn.Module):
    """(B, F, J, 2) -> (B, F, J, 3); tokens (B, F, J·C)."""

    def __init__(self, frames: int = 27, joints: int = 17, dim: int = 4, depth: int = 3, heads: int = 2) -> None:
        super().__init__()
        width = joints * dim
        self.embed = nn.Linear(2, dim)
        self.reinject = nn.Linear(2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, frames, width) * 0.02)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, joints * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, j, _ = x.shape
        h = self.embed(x).reshape(b, f, -1) + self.pos_embed
        for blk in self.blocks:
            h = blk(h) + self.reinject(x).reshape(b, f, -1)
        return self.head(self.norm(h)).reshape(b, f, j, 3)


def build(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    return ReinjectFormer().eval(), torch.randn(2, 27, 17, 2)
