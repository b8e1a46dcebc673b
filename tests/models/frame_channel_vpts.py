"""Small VPTs with layers over frames as channels inside blocks that also attend over frames
(issue 27, pattern 5), and frame-sized layers of other types (the general rule).

* :class:`GroupedFormer` — each block attends over frames, then runs a grouped
  ``Conv1d(F, F, 3, groups=3)`` and ``GroupNorm(3, F)`` on (B, F, C) tokens (frames as channels).
* :class:`JointGroupedFormer` — joint tokens (B·J, F, C): a depthwise ``Conv1d(F, F, 3,
  groups=F)`` and ``GroupNorm(9, F)`` after the attention.
* :class:`PerFrameFormer` — a ``PReLU(F)`` and a per-frame gain module (a weight of F entries,
  no torch layer type) over frames as channels: no gathering twin, but each keeps frames apart.
* :class:`FrameMixFormer` — a block-owned (1, F, C) bias added inside the block's forward, and a
  custom layer that mixes frames through an (F,) weight (a weighted mean over frames): refused.
* :class:`StageNormFormer` — a StridedFormer whose second stage (F/3 tokens) normalises with
  ``BatchNorm1d(F/3)``, its positions as channels (a layer sized by F/s); :class:`StageMixFormer`
  mixes them with ``Linear(F/3, F/3)`` (refused).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from author_vpts import Attention, Block, Mlp
from frame_use_vpts import StridedFormer

J, C, DIM = 17, 2, 32


class GroupedBlock(nn.Module):
    def __init__(self, dim, num_frame, heads, conv_groups=3, norm_groups=3):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.tconv = nn.Conv1d(num_frame, num_frame, 3, padding=1, groups=conv_groups)
        self.gn = nn.GroupNorm(norm_groups, num_frame)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + F.gelu(self.gn(self.tconv(x)))
        return x + self.mlp(self.norm2(x))


class GroupedFormer(nn.Module):
    def __init__(self, num_frame=27, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(J * C, DIM)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)
        self.blocks = nn.ModuleList([GroupedBlock(DIM, num_frame, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, f, j, 3)


class JointGroupedFormer(nn.Module):
    def __init__(self, num_frame=27, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(C, DIM)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)
        self.blocks = nn.ModuleList(
            [GroupedBlock(DIM, num_frame, heads, conv_groups=num_frame, norm_groups=9) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x).permute(0, 2, 1, 3).reshape(b * j, f, DIM) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = x.reshape(b, j, f, DIM).permute(0, 2, 1, 3)
        return self.head(self.norm(x))


class FrameGain(nn.Module):
    """A learned gain per frame on (B, F, C) tokens: no torch layer type has this shape."""

    def __init__(self, num_frame):
        super().__init__()
        self.gain = nn.Parameter(1 + 0.1 * torch.randn(num_frame))

    def forward(self, x):
        return x * self.gain[:, None]


class PerFrameBlock(nn.Module):
    def __init__(self, dim, num_frame, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.act = nn.PReLU(num_frame, init=0.1)
        self.gain = FrameGain(num_frame)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.gain(self.act(x))
        return x + self.mlp(self.norm2(x))


class PerFrameFormer(GroupedFormer):
    def __init__(self, num_frame=27, depth=3, heads=4):
        super().__init__(num_frame, depth, heads)
        self.blocks = nn.ModuleList([PerFrameBlock(DIM, num_frame, heads) for _ in range(depth)])


class FrameMean(nn.Module):
    """A weighted mean over frames with an (F,) weight: mixes frames, no gathering twin."""

    def __init__(self, num_frame):
        super().__init__()
        self.weight = nn.Parameter(torch.softmax(torch.randn(num_frame), 0))

    def forward(self, x):
        return x + (x * self.weight[:, None]).sum(1, keepdim=True)


class FrameMeanBlock(PerFrameBlock):
    def __init__(self, dim, num_frame, heads):
        super().__init__(dim, num_frame, heads)
        del self.act, self.gain
        self.mix = FrameMean(num_frame)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = self.mix(x)
        return x + self.mlp(self.norm2(x))


class OwnBiasBlock(PerFrameBlock):
    def __init__(self, dim, num_frame, heads):
        super().__init__(dim, num_frame, heads)
        del self.act, self.gain
        self.frame_bias = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)

    def forward(self, x):
        x = x + self.attn(self.norm1(x) + self.frame_bias)
        return x + self.mlp(self.norm2(x))


class FrameMixFormer(GroupedFormer):
    """Blocks 0-1 mix frames with :class:`FrameMean`, block 2 adds its own (1, F, C) bias."""

    def __init__(self, num_frame=27, heads=4):
        super().__init__(num_frame, 3, heads)
        self.blocks = nn.ModuleList([FrameMeanBlock(DIM, num_frame, heads), FrameMeanBlock(DIM, num_frame, heads),
                                     OwnBiasBlock(DIM, num_frame, heads)])


class StageBlock(Block):
    """A block of a strided stage of ``length`` tokens with a layer over its positions as channels."""

    def __init__(self, dim, heads, length, mix=False):
        super().__init__(dim, heads)
        self.mix = mix
        self.pos_layer = nn.Linear(length, length) if mix else nn.BatchNorm1d(length)

    def forward(self, x):
        x = super().forward(x)
        if self.mix:
            return x + self.pos_layer(x.transpose(1, 2)).transpose(1, 2)
        return x + self.pos_layer(x)


class StageNormFormer(StridedFormer):
    def __init__(self, num_frame=27, heads=4, mix=False):
        super().__init__(num_frame, heads=heads)
        self.stages[1] = nn.ModuleList([StageBlock(DIM, heads, num_frame // 3, mix) for _ in range(2)])


class StageMixFormer(StageNormFormer):
    def __init__(self, num_frame=27, heads=4):
        super().__init__(num_frame, heads, mix=True)


ALL = {
    "grouped": (GroupedFormer, (2, 27, J, C)),
    "joint_grouped": (JointGroupedFormer, (2, 27, J, C)),
    "per_frame": (PerFrameFormer, (2, 27, J, C)),
}
REFUSED = {"frame_mix": (FrameMixFormer, (2, 27, J, C)), "stage_mix": (StageMixFormer, (2, 27, J, C))}
STAGED = {"stage_norm": (StageNormFormer, (2, 27, J, C))}  # seq2frame: no per-frame property tests


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode (norms with non-trivial affine and statistics) and a matching input batch."""
    cls, shape = {**ALL, **REFUSED, **STAGED}[name]
    torch.manual_seed(seed)
    model = cls()
    for m in model.modules():
        if isinstance(m, (nn.GroupNorm, nn.BatchNorm1d)):
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval(), torch.randn(shape)
