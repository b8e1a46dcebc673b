"""VPTs whose residual branches start (almost) switched off, as MetaFormer / CaiT / ReZero
authors write them: a per-channel layer scale initialised to 1e-5, one initialised to 0, and a
zero-initialised scalar gate on the temporal branch. On a fresh model the temporal branch
changes other frames' outputs by ~1e-5 of a frame's own change, or not at all, so a block
can only be recognised as temporal by where its attention mixes tokens.

Each uses a different attention: hand-written ``q @ k.transpose(-2, -1)`` with heads split
by einops, ``F.scaled_dot_product_attention``, and ``nn.MultiheadAttention`` on (F, B·J, C)
tokens (``batch_first=False``); two have a spatial and a temporal attention in one block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class LayerScale(nn.Module):
    def __init__(self, dim, init_values=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EinopsAttention(nn.Module):
    """Multi-head self-attention over the middle axis of (B, N, C); heads split with einops."""

    def __init__(self, dim, heads=4):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        attn = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        attn = attn.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class SDPAttention(nn.Module):
    """Attention through ``F.scaled_dot_product_attention``; tokens on axis -2."""

    def __init__(self, dim, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


# ------------------------------------------------------- 1: MetaFormer layer scale 1e-5


class STBlock(nn.Module):
    """Spatial then temporal attention in one block, each branch scaled by a LayerScale."""

    def __init__(self, dim, heads, init_values=1e-5):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = EinopsAttention(dim, heads)
        self.ls_s = LayerScale(dim, init_values)
        self.norm_t = nn.LayerNorm(dim)
        self.attn_t = EinopsAttention(dim, heads)
        self.ls_t = LayerScale(dim, init_values)
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)
        self.ls_m = LayerScale(dim, init_values)

    def forward(self, x):
        b, f, n, c = x.shape
        x = rearrange(x, "b f n c -> (b f) n c")
        x = x + self.ls_s(self.attn_s(self.norm_s(x)))
        x = rearrange(x, "(b f) n c -> (b n) f c", f=f)
        x = x + self.ls_t(self.attn_t(self.norm_t(x)))
        x = x + self.ls_m(self.mlp(self.norm_m(x)))
        return rearrange(x, "(b n) f c -> b f n c", n=n)


class LayerScaleVPT(nn.Module):
    def __init__(self, num_frames=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4, init_values=1e-5):
        super().__init__()
        self.embed = nn.Linear(in_chans, dim)
        self.pos_s = nn.Parameter(torch.randn(1, 1, num_joints, dim) * 0.02)
        self.pos_t = nn.Parameter(torch.randn(1, num_frames, 1, dim) * 0.02)
        self.blocks = nn.ModuleList([STBlock(dim, heads, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        assert x.dim() == 4, "expects (B, F, J, C)"
        x = self.embed(x) + self.pos_s + self.pos_t
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


# -------------------------------------------------------- 2: layer scale 0, SDPA, (B, F, C)


class GammaBlock(nn.Module):
    """CaiT-style: ``gamma_1``/``gamma_2`` parameters multiply the branches (here from 0)."""

    def __init__(self, dim, heads, init_values=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SDPAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        x = x + self.gamma_2 * self.mlp(self.norm2(x))
        return x


class ZeroScaleVPT(nn.Module):
    """Spatial blocks on (B·F, J, C), then temporal blocks on (B, F, J·C)."""

    def __init__(self, num_frames=27, num_joints=17, in_chans=2, dim=8, depth=3, heads=4):
        super().__init__()
        embed = dim * num_joints
        self.joint_embed = nn.Linear(in_chans, dim)
        self.spatial_pos = nn.Parameter(torch.randn(1, num_joints, dim) * 0.02)
        self.temporal_pos = nn.Parameter(torch.randn(1, num_frames, embed) * 0.02)
        self.spatial = nn.ModuleList([GammaBlock(dim, 2) for _ in range(depth)])
        self.temporal = nn.ModuleList([GammaBlock(embed, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed)
        self.head = nn.Linear(embed, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.joint_embed(rearrange(x, "b f j c -> (b f) j c")) + self.spatial_pos
        for blk in self.spatial:
            x = blk(x)
        x = rearrange(x, "(b f) j c -> b f (j c)", f=f) + self.temporal_pos
        for blk in self.temporal:
            x = blk(x)
        x = self.head(self.norm(x))
        return x.reshape(b, f, j, 3)


# ------------------------------------------- 3: ReZero gate on nn.MultiheadAttention (F, B·J, C)


class ReZeroBlock(nn.Module):
    """Spatial attention (batch first) and a temporal ``nn.MultiheadAttention`` on (F, B·J, C)
    whose output passes a scalar gate initialised to zero (ReZero)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.spatial = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.temporal = nn.MultiheadAttention(dim, heads)
        self.norm_s = nn.LayerNorm(dim)
        self.norm_t = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x, num_joints):
        # x: (F, B·J, C)
        f = x.shape[0]
        s = rearrange(x, "f (b j) c -> (b f) j c", j=num_joints)
        h = self.norm_s(s)
        s = s + self.spatial(h, h, h, need_weights=False)[0]
        x = rearrange(s, "(b f) j c -> f (b j) c", f=f)
        h = self.norm_t(x)
        x = x + self.alpha * self.temporal(h, h, h)[0]
        return x + self.mlp(x)


class ReZeroVPT(nn.Module):
    def __init__(self, num_frames=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__()
        self.num_joints = num_joints
        self.embed = nn.Linear(in_chans, dim)
        self.pos = nn.Parameter(torch.randn(num_frames, 1, dim) * 0.02)
        self.blocks = nn.ModuleList([ReZeroBlock(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(self.embed(x), "b f j c -> f (b j) c") + self.pos
        for blk in self.blocks:
            x = blk(x, self.num_joints)
        x = self.head(x)
        return rearrange(x, "f (b j) c -> b f j c", j=j)


ALL = {
    "layer_scale": LayerScaleVPT,
    "zero_scale": ZeroScaleVPT,
    "rezero": ReZeroVPT,
}
# blocks and their kinds, as the authors built them
KINDS = {
    "layer_scale": ["temporal"] * 4,
    "zero_scale": ["spatial"] * 3 + ["temporal"] * 3,
    "rezero": ["temporal"] * 4,
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch (B=2, F=27, J=17, C=2)."""
    torch.manual_seed(seed)
    model = ALL[name]().eval()
    return model, torch.randn(2, 27, 17, 2)
