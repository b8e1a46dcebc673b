"""Test VPTs whose blocks receive a per-frame table and use it in a layout of their own (issue 27).

* :class:`TableInsideVPT` — blocks take the tokens as (B, F, J, C) and a (1, F, C) time table
  passed from the parent (``blk(x, self.time_pos)``); inside, the block views its tokens as
  (B·J, F, C) and adds the table to that view before attending over frames. The table has no
  batch axis and does not depend on the input's values; after a cut it must describe each
  sample's kept frames *in the layout of the view it is added to*.
* :class:`TableInsideHeadsVPT` — the same, the table added to a (B·H, F, C) view (H heads of
  C channels each, a multi-head split done by hand).
* :class:`TableRowVPT` — refused: the block adds ``table[0]`` (its first row, (F, C)) to the
  (B·J, F, C) view; gathered per sample, row 0 would be the first sample's frames for every sample.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from author_vpts import Attention, Block, Mlp


class TableBlock(nn.Module):
    """Attention over the joints of each frame, then over the frames of each joint, the time
    table added to the (B·J, F, C) view."""

    def __init__(self, dim, heads):
        super().__init__()
        self.spatial = Block(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x, table):
        b, f, j, c = x.shape
        x = rearrange(self.spatial(rearrange(x, "b f j c -> (b f) j c")), "(b f) j c -> (b j) f c", b=b)
        x = x + table
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return rearrange(x, "(b j) f c -> b f j c", b=b)


class TableInsideVPT(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(in_chans, dim)
        self.time_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.5)
        self.blocks = nn.ModuleList([TableBlock(dim, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))

    def forward(self, x):
        x = self.embed(x)
        for blk in self.blocks:
            x = blk(x, self.time_pos)
        return self.head(x)


class HeadsTableBlock(nn.Module):
    """Attention over frames with the heads split by hand: the tokens viewed as (B·H, F, C/H)
    and a (1, F, C/H) table added to every head."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x, table):
        b, f, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (rearrange(t, "b f (h d) -> (b h) f d", h=self.heads) for t in (q, k, v))
        q, k = q + table, k + table
        a = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.proj(rearrange(a @ v, "(b h) f d -> b f (h d)", b=b))
        return x + self.mlp(self.norm2(x))


class TableInsideHeadsVPT(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.time_pos = nn.Parameter(torch.randn(1, num_frame, dim // heads) * 0.5)
        self.blocks = nn.ModuleList([HeadsTableBlock(dim, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_joints * 3))

    def forward(self, x):
        b, f, j, _ = x.shape
        x = self.embed(x.flatten(2))
        for blk in self.blocks:
            x = blk(x, self.time_pos)
        return self.head(x).reshape(b, f, j, 3)


class RowTableBlock(TableBlock):
    def forward(self, x, table):
        b, f, j, c = x.shape
        x = rearrange(self.spatial(rearrange(x, "b f j c -> (b f) j c")), "(b f) j c -> (b j) f c", b=b)
        x = x + table[0]
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return rearrange(x, "(b j) f c -> b f j c", b=b)


class TableRowVPT(TableInsideVPT):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__(num_frame, num_joints, in_chans, dim, depth, heads)
        self.blocks = nn.ModuleList([RowTableBlock(dim, heads) for _ in range(depth)])


ALL = {"table_inside": TableInsideVPT, "table_inside_heads": TableInsideHeadsVPT, "table_row": TableRowVPT}


def build(name: str, seed: int = 0, batch: int = 2) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    torch.manual_seed(seed)
    model = ALL[name]().eval()
    return model, torch.randn(batch, 27, 17, 2)
