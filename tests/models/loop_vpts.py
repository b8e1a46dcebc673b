"""Small VPTs whose layers are stored as ``ModuleList([attention, feed_forward])`` and called one
by one by the parent's loop, the residual adds written in the parent (issue 27, pattern 3: the
layout of vit-pytorch and of transformer-building libraries). No module is "the block"; the loop
iteration is. Before issue 27 each gave ``NoTemporalBlocksError: ... Found no transformer blocks``.

* :class:`LoopVPT` — ``for attn, ff in self.layers: x = attn(x) + x; x = ff(x) + x``.
* :class:`RegressorLoopVPT` — ``[attn, ff, regressor]``: a regressor per layer updates a second
  per-frame stream (the poses) after every layer; the model returns that stream.
* :class:`FactorisedLoopVPT` — ``[spatial_attn, temporal_attn, ff]`` over (B, F, J, C) with the
  rearranges inside the loop (ViViT's factorised self-attention).
* :class:`SharedNormLoopVPT` — the loop body also calls a norm of the parent, shared by every
  iteration, and functional dropout.
* :class:`SharedRegressorLoopVPT` — one regressor of the parent updates the pose stream after
  every iteration (outside the blocks).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from author_vpts import Attention, Mlp

J, C = 17, 32


class PreNormAttention(nn.Module):
    def __init__(self, dim: int = C, heads: int = 4) -> None:
        super().__init__()
        self.norm, self.attn = nn.LayerNorm(dim), Attention(dim, heads)

    def forward(self, x):
        return self.attn(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int = C) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        return self.net(x)


class LoopVPT(nn.Module):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(J * 2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, C) * 0.02)
        self.layers = nn.ModuleList([nn.ModuleList([PreNormAttention(), FeedForward()]) for _ in range(depth)])
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.head(self.norm(x)).reshape(b, f, j, 3)


class RegressorLoopVPT(nn.Module):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(J * 2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, C) * 0.02)
        self.layers = nn.ModuleList([
            nn.ModuleList([PreNormAttention(), FeedForward(), nn.Linear(C, J * 3)]) for _ in range(depth)
        ])

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos
        poses = x.new_zeros(b, f, j * 3)
        for attn, ff, regress in self.layers:
            x = attn(x) + x
            x = ff(x) + x
            poses = poses + regress(x)  # the second stream, refined after every layer
        return poses.reshape(b, f, j, 3)


class FactorisedLoopVPT(nn.Module):
    def __init__(self, frames: int = 27, depth: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, J, C) * 0.02)
        self.layers = nn.ModuleList([
            nn.ModuleList([PreNormAttention(), PreNormAttention(), FeedForward()]) for _ in range(depth)
        ])
        self.head = nn.Linear(C, 3)

    def forward(self, x):
        batch, frames, joints, _ = x.shape
        x = self.embed(x) + self.pos
        for spatial_attn, temporal_attn, ff in self.layers:
            x = rearrange(x, "b f n d -> (b f) n d")
            x = spatial_attn(x) + x
            x = rearrange(x, "(b f) n d -> (b n) f d", b=batch, f=frames)
            x = temporal_attn(x) + x
            x = ff(x) + x
            x = rearrange(x, "(b n) f d -> b f n d", b=batch, n=joints)
        return self.head(x)


class SharedNormLoopVPT(LoopVPT):
    """The loop body also calls a module of the parent (one norm shared by every iteration) and
    functional dropout between the two layers."""

    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth)
        self.between = nn.LayerNorm(C)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos
        for attn, ff in self.layers:
            x = attn(x) + x
            x = F.dropout(self.between(x), p=0.1, training=self.training)
            x = ff(x) + x
        return self.head(self.norm(x)).reshape(b, f, j, 3)


class SharedRegressorLoopVPT(LoopVPT):
    """One regressor of the parent refines the pose stream after every iteration."""

    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth)
        self.regress = nn.Linear(C, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos
        poses = self.head(x)
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
            poses = poses + self.regress(self.norm(x))
        return poses.reshape(b, f, j, 3)


MODELS = {"loop": LoopVPT, "regressor": RegressorLoopVPT, "factorised": FactorisedLoopVPT,
          "shared": SharedNormLoopVPT, "shared_regressor": SharedRegressorLoopVPT}


def build(name: str, batch: int = 2, frames: int = 27):
    """A model (eval mode, seeded weights) and a clip of ``batch`` samples."""
    torch.manual_seed(0)
    model = MODELS[name](frames=frames).eval()
    return model, torch.randn(batch, frames, J, 2)
