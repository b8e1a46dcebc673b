"""Small VPTs whose blocks mix frames through a learned parameter sized by the frame count (issue
27, pattern 5, the general rule for a parameter one of whose dims is F): low-rank attention in
the style of Linformer, written here.

* :class:`ProjectedFormer` — every block attends from each frame to ``r`` learned summaries of
  the frames: the keys and values (B, F, C) are projected along the frames by (r, F) parameters
  (``e_keys @ k``: the frames on the right of the matmul). Its softmax runs over the r summaries,
  never over frames, and the block runs on fewer frames (it slices its parameters to the
  length it is given), yet those rows were learned for the first positions of the clip, not for
  a sample's kept frames: refused, naming the parameter.
* :class:`AttendThenProjectFormer` — two blocks that attend over frames (patched as usual), then
  one projected block: a cut after the first block leaves the projected block after it (refused
  by the uses analysis, naming the parameter), a cut after the second patches.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from author_vpts import Block, Mlp

J, C, DIM = 17, 2, 32


class SummaryAttention(nn.Module):
    """Attention from every frame to ``rank`` learned mixes of the frames (keys and values)."""

    def __init__(self, dim: int, num_frame: int, rank: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.e_keys = nn.Parameter(torch.randn(rank, num_frame) / num_frame ** 0.5)
        self.e_values = nn.Parameter(torch.randn(rank, num_frame) / num_frame ** 0.5)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        k = self.e_keys[:, :n] @ k  # (r, n) @ (B, n, C): r mixes of the frames
        v = self.e_values[:, :n] @ v
        h, d = self.heads, c // self.heads
        q = q.view(b, n, h, d).transpose(1, 2)
        k = k.view(b, -1, h, d).transpose(1, 2)
        v = v.view(b, -1, h, d).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) * d ** -0.5).softmax(dim=-1)  # over the r mixes
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class ProjectedBlock(nn.Module):
    def __init__(self, dim: int, num_frame: int, rank: int = 6, heads: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SummaryAttention(dim, num_frame, rank, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ProjectedFormer(nn.Module):
    def __init__(self, num_frame: int = 27, depth: int = 3, attending: int = 0) -> None:
        super().__init__()
        self.embed = nn.Linear(J * C, DIM)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)
        self.blocks = nn.ModuleList(
            [Block(DIM, 4) for _ in range(attending)]
            + [ProjectedBlock(DIM, num_frame) for _ in range(depth - attending)]
        )
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, J * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, f, j, 3)


class AttendThenProjectFormer(ProjectedFormer):
    def __init__(self, num_frame: int = 27) -> None:
        super().__init__(num_frame, depth=3, attending=2)


MODELS = {"projected": ProjectedFormer, "attend_then_project": AttendThenProjectFormer}


def build(name: str, batch: int = 2):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    return model, torch.randn(batch, 27, J, C)
