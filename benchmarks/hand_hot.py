"""Hand-written HoT forwards of the MixSTE and MotionBERT recipes: the speed reference.

What a researcher would write by hand, following the paper and the official HoT code's
structure: an explicit loop over the host's blocks, DPC-kNN on the joint-pooled tokens
(float32, matmul-based distances as in the official code) after block ``n``, a gather, the
learnable (1, f, C) positional embedding, and TRA before the head. The host's modules and
the patched model's TRA / embedding are reused, so the three models compute the same thing
(up to clustering ties) and only the way the code is produced differs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange


def cluster_centres(tokens: torch.Tensor, keep: int, k: int = 2) -> torch.Tensor:
    """DPC-kNN centres of (B, F, C) tokens, sorted in time (official-style, float32)."""
    c = tokens.shape[-1]
    dist = torch.cdist(tokens, tokens) / math.sqrt(c)
    nearest = dist.topk(k, dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    denser = (density[:, None, :] > density[:, :, None]).to(tokens.dtype)
    far = dist.flatten(1).max(dim=-1).values[:, None, None]
    delta = (dist * denser + far * (1 - denser)).min(dim=-1).values
    index = (density * delta).topk(keep, dim=-1).indices
    return index.sort(dim=-1).values


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x[torch.arange(x.shape[0], device=x.device)[:, None], index]


class HandHoTMixSTE(nn.Module):
    """MixSTE + TPC after temporal block ``n`` + TRA, written out by hand."""

    def __init__(self, host: nn.Module, tra: nn.Module, pos_embed: torch.Tensor, n: int, keep: int) -> None:
        super().__init__()
        self.host, self.tra, self.n, self.keep = host, tra, n, keep
        self.pos_embed = pos_embed  # (1, f, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.host
        b, frames, joints, _ = x.shape
        x = h.TTE_forward(h.STE_forward(x))
        x = rearrange(x, "(b n) f c -> b f n c", n=joints)
        t = frames
        for i in range(1, h.block_depth):
            if i == self.n:
                index = cluster_centres(x.mean(dim=2), self.keep)
                x = _take(x, index) + self.pos_embed[:, :, None]
                t = self.keep
            x = rearrange(x, "b f n c -> (b f) n c")
            x = h.Spatial_norm(h.STEblocks[i](x))
            x = rearrange(x, "(b f) n c -> (b n) f c", f=t)
            x = h.Temporal_norm(h.TTEblocks[i](x))
            x = rearrange(x, "(b n) f c -> b f n c", n=joints)
        x = self.tra(x)  # (B, f, J, C) -> (B, F, J, C)
        return h.head(x).view(b, frames, joints, -1)


class HandHoTMotionBERT(nn.Module):
    """MotionBERT (DSTformer) + TPC after layer ``n`` + TRA after the final norm, by hand."""

    def __init__(self, host: nn.Module, tra: nn.Module, pos_embed: torch.Tensor, n: int, keep: int) -> None:
        super().__init__()
        self.host, self.tra, self.n, self.keep = host, tra, n, keep
        self.pos_embed = pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.host
        b, frames, joints, c = x.shape
        x = h.joints_embed(x.reshape(-1, joints, c)) + h.pos_embed
        x = x.reshape(b, frames, joints, -1) + h.temp_embed[:, :frames]
        x = h.pos_drop(x.reshape(b * frames, joints, -1))
        t = frames
        for i, (blk_st, blk_ts) in enumerate(zip(h.blocks_st, h.blocks_ts)):
            if i == self.n:
                xb = x.reshape(b, t, joints, -1)
                xb = _take(xb, cluster_centres(xb.mean(dim=2), self.keep)) + self.pos_embed[:, :, None]
                t = self.keep
                x = xb.reshape(b * t, joints, -1)
            x_st, x_ts = blk_st(x, t), blk_ts(x, t)
            alpha = h.ts_attn[i](torch.cat([x_st, x_ts], dim=-1)).softmax(dim=-1)
            x = x_st * alpha[:, :, 0:1] + x_ts * alpha[:, :, 1:2]
        x = h.norm(x).reshape(b, t, joints, -1)
        x = self.tra(x)
        return h.head(h.pre_logits(x))


def hand_written(name: str, host: nn.Module, patched: nn.Module, n: int, keep: int) -> nn.Module:
    """The hand-written HoT of recipe ``name``, sharing weights with ``host`` and ``patched``."""
    cls = {"mixste": HandHoTMixSTE, "motionbert": HandHoTMotionBERT}[name]
    tra = patched.hotpatch_recover.recoverer
    pos_embed = patched.hotpatch_prune.pruner.pos_embed
    return cls(host, tra, pos_embed, n, keep).eval()
