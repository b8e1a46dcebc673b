"""A VPT with timm-style layer scale and a choice of token order, for save/load tests.

``init_values=0.0`` is ReZero / LayerScale-0 (every residual branch starts switched off);
``zero_embed=True`` zero-initialises the joint embedding and positional embeddings (tokens are
all equal until trained); ``joint_major=True`` lays the temporal tokens out as (J·B, F, C)
instead of the usual (B·J, F, C).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from author_vpts import Attention, Mlp
from gated_vpts import LayerScale


class ScaledBlock(nn.Module):
    def __init__(self, dim, num_heads, init_values=0.0, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


class LayerScaleVPT(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4,
                 init_values=0.0, zero_embed=False, joint_major=False):
        super().__init__()
        self.joint_major = joint_major
        self.joint_embed = nn.Linear(in_chans, dim)
        self.spatial_pos = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.temporal_pos = nn.Parameter(torch.zeros(1, num_frame, dim))
        if zero_embed:
            nn.init.zeros_(self.joint_embed.weight)
            nn.init.zeros_(self.joint_embed.bias)
        else:
            nn.init.trunc_normal_(self.spatial_pos, std=0.02)
            nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        self.spatial_blocks = nn.ModuleList([ScaledBlock(dim, heads, init_values) for _ in range(depth)])
        self.temporal_blocks = nn.ModuleList([ScaledBlock(dim, heads, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def to_frames(self, x, j):
        if self.joint_major:
            return rearrange(x, "(j b) f c -> (b f) j c", j=j)
        return rearrange(x, "(b j) f c -> (b f) j c", j=j)

    def to_joints(self, x, f):
        if self.joint_major:
            return rearrange(x, "(b f) j c -> (j b) f c", f=f)
        return rearrange(x, "(b f) j c -> (b j) f c", f=f)

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(x, "b f j c -> (b f) j c")
        x = self.joint_embed(x) + self.spatial_pos
        for i, (sblk, tblk) in enumerate(zip(self.spatial_blocks, self.temporal_blocks)):
            if i > 0:
                x = self.to_frames(x, j)  # the tokens stay (J·B, F, C) between the stages
            x = self.to_joints(sblk(x), f)
            if i == 0:
                x = x + self.temporal_pos
            x = tblk(x)
        x = self.head(self.norm(x))
        if self.joint_major:
            return rearrange(x, "(j b) f c -> b f j c", j=j)
        return rearrange(x, "(b j) f c -> b f j c", j=j)


class TrajectoryVPT(nn.Module):
    """Temporal blocks only, over each joint's trajectory: tokens (B·J, F, C), or (J·B, F, C)
    with ``joint_major``, from the input to the head."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4,
                 init_values=1.0, zero_embed=False, joint_major=False):
        super().__init__()
        self.joint_major = joint_major
        self.embed = nn.Linear(in_chans, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frame, dim))
        if zero_embed:
            nn.init.zeros_(self.embed.weight)
            nn.init.zeros_(self.embed.bias)
        else:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([ScaledBlock(dim, heads, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        pattern = "b f j c -> (j b) f c" if self.joint_major else "b f j c -> (b j) f c"
        x = self.embed(rearrange(x, pattern))
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.head(self.norm(x))
        back = "(j b) f c -> b f j c" if self.joint_major else "(b j) f c -> b f j c"
        return rearrange(x, back, j=j)
