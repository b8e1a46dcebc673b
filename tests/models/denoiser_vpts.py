"""VPTs with several inputs, as diffusion-based lifters and masked-sequence models write them.

* :class:`DiffusionDenoiser` — ``forward(x_2d, y_noisy, t)``: the 2D condition (B, F, J, 2)
  and the noisy 3D poses (B, F, J, 3) are concatenated per joint; the timestep (B,) becomes a
  sinusoidal embedding and an MLP, which every block receives as a second argument (an
  adaLN-style shift and scale); spatial and temporal blocks alternate (MixSTE layout,
  (B·F, J, C) and (B·J, F, C) tokens); an optional camera (B, 9) is added when given.
* :class:`MaskedSeqVPT` — ``forward(x, mask=None)``: a PoseFormer-like temporal transformer on
  (B, F, C) tokens whose (B, F) validity mask (True = a real frame) is the key padding mask of
  every block's ``nn.MultiheadAttention`` and zeroes padded frames of the output.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange

from gated_vpts import Mlp

FRAMES, JOINTS, DIM = 27, 17, 32


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features (the DDPM convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj(rearrange(attn @ v, "b h n d -> b n (h d)"))


class ConditionedBlock(nn.Module):
    """A transformer block modulated by a (B, C) condition: ``norm(x) * (1 + scale) + shift``.
    The tokens are (B·G, N, C) with the batch the outer factor of the first axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)
        self.ada = nn.Linear(dim, dim * 2)

    def forward(self, x, cond):
        shift, scale = self.ada(cond).chunk(2, dim=-1)
        groups = x.shape[0] // cond.shape[0]
        shift = shift.repeat_interleave(groups, dim=0)[:, None]
        scale = scale.repeat_interleave(groups, dim=0)[:, None]
        x = x + self.attn(self.norm1(x) * (1 + scale) + shift)
        return x + self.mlp(self.norm2(x))


class DiffusionDenoiser(nn.Module):
    """A D3DP/DiffPose-style denoiser: predicts the clean 3D poses from the 2D condition, the
    noisy 3D poses and the diffusion timestep (and, optionally, the camera)."""

    def __init__(self, frames: int = FRAMES, joints: int = JOINTS, dim: int = DIM, depth: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(2 + 3, dim)
        self.spatial_pos = nn.Parameter(torch.randn(1, joints, dim) * 0.02)
        self.temporal_pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.camera = nn.Linear(9, dim)
        self.spatial = nn.ModuleList(ConditionedBlock(dim) for _ in range(depth))
        self.temporal = nn.ModuleList(ConditionedBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x_2d, y_noisy, t, camera=None):
        b, f, j, _ = x_2d.shape
        cond = self.time_mlp(timestep_embedding(t, self.dim))
        if camera is not None:
            cond = cond + self.camera(camera)
        h = self.embed(torch.cat([x_2d, y_noisy], dim=-1))
        for i, (s_blk, t_blk) in enumerate(zip(self.spatial, self.temporal)):
            h = rearrange(h, "b f j c -> (b f) j c")
            if i == 0:
                h = h + self.spatial_pos
            h = s_blk(h, cond)
            h = rearrange(h, "(b f) j c -> (b j) f c", f=f)
            if i == 0:
                h = h + self.temporal_pos
            h = t_blk(h, cond)
            h = rearrange(h, "(b j) f c -> b f j c", j=j)
        return self.head(self.norm(h))


class MaskedBlock(nn.Module):
    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x, mask=None):
        h = self.norm1(x)
        pad = None if mask is None else ~mask
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class MaskedSeqVPT(nn.Module):
    """A temporal-only lifter on (B, F, J·2) tokens whose optional (B, F) bool mask marks the
    real frames of a padded clip."""

    def __init__(self, frames: int = FRAMES, joints: int = JOINTS, dim: int = DIM, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(joints * 2, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.blocks = nn.ModuleList(MaskedBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, joints * 3)

    def forward(self, x, mask=None):
        b, f, j, _ = x.shape
        h = self.embed(x.flatten(2)) + self.pos
        for blk in self.blocks:
            h = blk(h, mask)
        out = self.head(self.norm(h)).view(b, f, j, 3)
        if mask is not None:
            out = out * mask[:, :, None, None]
        return out


def denoiser_inputs(batch: int = 2, frames: int = FRAMES, joints: int = JOINTS, seed: int = 0, camera: bool = False):
    """``(x_2d, y_noisy, t[, camera])`` for :class:`DiffusionDenoiser`."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, joints, 2, generator=gen)
    y = torch.randn(batch, frames, joints, 3, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    extra = (torch.randn(batch, 9, generator=gen),) if camera else ()
    return (x, y, t, *extra)


def masked_inputs(batch: int = 2, frames: int = FRAMES, joints: int = JOINTS, seed: int = 0):
    """``{"x": ..., "mask": ...}`` for :class:`MaskedSeqVPT`: the last frames of sample 0 are padding."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, joints, 2, generator=gen)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[0, frames - 5:] = False
    return {"x": x, "mask": mask}
