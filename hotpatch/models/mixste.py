"""MixSTE (Zhang et al., CVPR 2022): the seq2seq mixed spatio-temporal encoder, ``MixSTE2``.

A re-implementation with the module tree and state_dict keys of the authors' ``MixSTE2``
(JinluZhang1126/MixSTE, ``common/model_cross.py``), so their checkpoints (``{'model_pos': ...}``
saved from ``nn.DataParallel``) load with strict key matching. Spatial blocks attend over the
J joints of one frame, temporal blocks over the F frames of one joint; the two alternate and
share one spatial and one temporal LayerNorm.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from einops import rearrange

from hotpatch.checkpoint import LoadReport, load_checkpoint_file
from ._common import apply_overrides, check_blocks, constants_getattr, mark_source, recipe_constant
from ._layers import Attention, DropPath, Mlp


__getattr__ = constants_getattr("mixste", __name__)  # DEFAULTS and INPUT, read from recipes/mixste/


#: Parameters indexed by frame, with the frame axis: a checkpoint for another F is refused.
FRAME_KEYS = {"Temporal_pos_embed": 1}


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=False, qk_scale=None, drop=0., attn_drop=0.,
                 drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class MixSTE2(nn.Module):
    def __init__(self, num_frame=9, num_joints=17, in_chans=2, embed_dim_ratio=32, depth=4,
                 num_heads=8, mlp_ratio=2., qkv_bias=True, qk_scale=None,
                 drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2, norm_layer=None):
        """
        Args:
            num_frame: input frames F (the temporal positional embedding has this length)
            num_joints: joints J
            in_chans: channels per input joint (2 for 2D keypoints)
            embed_dim_ratio: feature width C of both spatial and temporal blocks
            depth: number of spatial-temporal block pairs
            mlp_ratio: MLP hidden width over C
        """
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        embed_dim = embed_dim_ratio
        out_dim = 3

        self.Spatial_patch_to_embedding = nn.Linear(in_chans, embed_dim_ratio)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, embed_dim_ratio))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, num_frame, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]  # stochastic depth decay
        self.block_depth = depth

        self.STEblocks = nn.ModuleList([
            Block(dim=embed_dim_ratio, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                  norm_layer=norm_layer)
            for i in range(depth)])
        self.TTEblocks = nn.ModuleList([
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                  norm_layer=norm_layer)
            for i in range(depth)])

        self.Spatial_norm = norm_layer(embed_dim_ratio)
        self.Temporal_norm = norm_layer(embed_dim)

        self.head = nn.Sequential(
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, out_dim),
        )

    def STE_forward(self, x):
        b, f, n, c = x.shape
        x = rearrange(x, 'b f n c -> (b f) n c')
        x = self.Spatial_patch_to_embedding(x)
        x += self.Spatial_pos_embed
        x = self.pos_drop(x)

        blk = self.STEblocks[0]
        x = blk(x)
        x = self.Spatial_norm(x)
        x = rearrange(x, '(b f) n cw -> (b n) f cw', f=f)
        return x

    def TTE_forward(self, x):
        assert len(x.shape) == 3, "TTE_forward expects a (b n) f cw tensor"
        b, f, _ = x.shape
        x += self.Temporal_pos_embed
        x = self.pos_drop(x)

        blk = self.TTEblocks[0]
        x = blk(x)
        x = self.Temporal_norm(x)
        return x

    def ST_forward(self, x):
        assert len(x.shape) == 4, "ST_forward expects a b f n cw tensor"
        b, f, n, cw = x.shape
        for i in range(1, self.block_depth):
            x = rearrange(x, 'b f n cw -> (b f) n cw')
            steblock = self.STEblocks[i]
            tteblock = self.TTEblocks[i]

            x = steblock(x)
            x = self.Spatial_norm(x)
            x = rearrange(x, '(b f) n cw -> (b n) f cw', f=f)

            x = tteblock(x)
            x = self.Temporal_norm(x)
            x = rearrange(x, '(b n) f cw -> b f n cw', n=n)
        return x

    def forward(self, x):
        b, f, n, c = x.shape
        x = self.STE_forward(x)           # (b n) f cw
        x = self.TTE_forward(x)           # (b n) f cw
        x = rearrange(x, '(b n) f cw -> b f n cw', n=n)
        x = self.ST_forward(x)            # b f n cw
        x = self.head(x)                  # b f n 3
        x = x.view(b, f, n, -1)
        return x


_NAMES = {"frames": "num_frame", "joints": "num_joints", "channels": "in_chans", "dim": "embed_dim_ratio"}


def build(frames: int | None = None, **overrides: Any) -> MixSTE2:
    """MixSTE as the paper ran it (F=243, C=512, 8 block pairs, 8 heads, MLP ratio 2).

    ``overrides`` take the constructor's names or the short ones ``joints``, ``channels``
    and ``dim`` (e.g. ``build(27, dim=32, depth=2)`` for a tiny test model).
    """
    paper = recipe_constant("mixste", "DEFAULTS")  # F, J, C of recipes/mixste/ (its default)
    config = dict(num_frame=paper["frames"], num_joints=paper["joints"], in_chans=paper["channels"],
                  embed_dim_ratio=512, depth=8, num_heads=8, mlp_ratio=2., qkv_bias=True, qk_scale=None,
                  drop_path_rate=0.1)
    config = apply_overrides("mixste", config, _NAMES, frames, overrides)
    check_blocks("mixste", config, depth="depth", dim="embed_dim_ratio", heads="num_heads")
    return mark_source(MixSTE2(**config), "mixste", frames, overrides)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load an official MixSTE / HoT-MixSTE checkpoint (any of the layouts ``read_state_dict`` reads)."""
    return load_checkpoint_file(model, path, strict=strict, frame_keys=FRAME_KEYS)
