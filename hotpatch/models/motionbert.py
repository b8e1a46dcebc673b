"""MotionBERT (Zhu et al., ICCV 2023): the dual-stream spatio-temporal transformer ``DSTformer``.

A re-implementation with the module tree and state_dict keys of the authors' ``DSTformer``
(Walter0807/MotionBERT, ``lib/model/DSTformer.py``), so the released checkpoints
(``{'model_pos': ...}`` saved from ``nn.DataParallel``) load with strict key matching. Every
block runs on (B·F, J, C) tokens; its temporal attention folds the frames back out with
``seqlen=F``. Two streams (spatial-then-temporal and temporal-then-spatial) are fused per depth
by learned weights.

Two configurations: ``full`` (C=512, MLP ratio 2; the released Human3.6M checkpoints) and
``lite`` (C=256, MLP ratio 4; what the HoT paper measured, 16.00 M parameters).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from hotpatch.checkpoint import LoadReport, load_state_dict, map_hot_keys, read_state_dict
from hotpatch.errors import CheckpointError, ConfigError
from ._common import apply_overrides, check_blocks, constants_getattr, mark_source, recipe_constant
from ._layers import DropPath, Mlp as MLP

#: The two published configurations.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"dim_feat": 512, "mlp_ratio": 2, "depth": 5},
    "lite": {"dim_feat": 256, "mlp_ratio": 4, "depth": 5},
}


__getattr__ = constants_getattr("motionbert", __name__)  # DEFAULTS and INPUT, read from recipes/motionbert/


#: Parameters indexed by frame, with the frame axis: a checkpoint for another F is refused.
FRAME_KEYS = {"temp_embed": 1}


class Attention(nn.Module):
    """Multi-head self-attention over joints (``spatial``) or over frames (``temporal``)."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0., proj_drop=0.,
                 st_mode='spatial'):
        super().__init__()
        if st_mode not in ('spatial', 'temporal'):
            raise NotImplementedError(st_mode)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.mode = st_mode

        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, seqlen=1):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.mode == 'temporal':
            x = self.forward_temporal(q, k, v, seqlen=seqlen)
        else:
            x = self.forward_spatial(q, k, v)
        x = self.proj_drop(self.proj(x))
        return x

    def forward_spatial(self, q, k, v):
        B, _, N, C = q.shape
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C * self.num_heads)
        return x

    def forward_temporal(self, q, k, v, seqlen=8):
        B, _, N, C = q.shape
        # (B*T, H, N, c) -> (B, H, N, T, c): attend across the T frames of each joint
        qt = q.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)
        kt = k.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)
        vt = v.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)

        attn = (qt @ kt.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = attn @ vt
        x = x.permute(0, 3, 2, 1, 4).reshape(B, N, C * self.num_heads)
        return x


class Block(nn.Module):
    """A spatial and a temporal transformer layer, in the order ``stage_st`` or ``stage_ts``."""

    def __init__(self, dim, num_heads, mlp_ratio=4., mlp_out_ratio=1., qkv_bias=True, qk_scale=None, drop=0.,
                 attn_drop=0., drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm, st_mode='stage_st'):
        super().__init__()
        if st_mode not in ('stage_st', 'stage_ts'):
            raise NotImplementedError(st_mode)
        self.st_mode = st_mode
        self.norm1_s = norm_layer(dim)
        self.norm1_t = norm_layer(dim)
        self.attn_s = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                attn_drop=attn_drop, proj_drop=drop, st_mode='spatial')
        self.attn_t = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                attn_drop=attn_drop, proj_drop=drop, st_mode='temporal')
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2_s = norm_layer(dim)
        self.norm2_t = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        mlp_out_dim = int(dim * mlp_out_ratio)
        self.mlp_s = MLP(in_features=dim, hidden_features=mlp_hidden_dim, out_features=mlp_out_dim,
                         act_layer=act_layer, drop=drop)
        self.mlp_t = MLP(in_features=dim, hidden_features=mlp_hidden_dim, out_features=mlp_out_dim,
                         act_layer=act_layer, drop=drop)

    def forward(self, x, seqlen=1):
        if self.st_mode == 'stage_st':
            x = x + self.drop_path(self.attn_s(self.norm1_s(x), seqlen))
            x = x + self.drop_path(self.mlp_s(self.norm2_s(x)))
            x = x + self.drop_path(self.attn_t(self.norm1_t(x), seqlen))
            x = x + self.drop_path(self.mlp_t(self.norm2_t(x)))
        else:
            x = x + self.drop_path(self.attn_t(self.norm1_t(x), seqlen))
            x = x + self.drop_path(self.mlp_t(self.norm2_t(x)))
            x = x + self.drop_path(self.attn_s(self.norm1_s(x), seqlen))
            x = x + self.drop_path(self.mlp_s(self.norm2_s(x)))
        return x


class DSTformer(nn.Module):
    def __init__(self, dim_in=3, dim_out=3, dim_feat=256, dim_rep=512,
                 depth=5, num_heads=8, mlp_ratio=4,
                 num_joints=17, maxlen=243,
                 qkv_bias=True, qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
                 norm_layer=nn.LayerNorm, att_fuse=True):
        super().__init__()
        self.dim_out = dim_out
        self.dim_feat = dim_feat
        self.joints_embed = nn.Linear(dim_in, dim_feat)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]  # stochastic depth decay
        self.blocks_st = nn.ModuleList([
            Block(dim=dim_feat, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer,
                  st_mode='stage_st')
            for i in range(depth)])
        self.blocks_ts = nn.ModuleList([
            Block(dim=dim_feat, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer,
                  st_mode='stage_ts')
            for i in range(depth)])
        self.norm = norm_layer(dim_feat)
        if dim_rep:
            self.pre_logits = nn.Sequential(OrderedDict([
                ('fc', nn.Linear(dim_feat, dim_rep)),
                ('act', nn.Tanh()),
            ]))
        else:
            self.pre_logits = nn.Identity()
        self.head = nn.Linear(dim_rep, dim_out) if dim_out > 0 else nn.Identity()
        self.temp_embed = nn.Parameter(torch.zeros(1, maxlen, 1, dim_feat))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim_feat))
        nn.init.trunc_normal_(self.temp_embed, std=.02)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        self.apply(self._init_weights)
        self.att_fuse = att_fuse
        if self.att_fuse:
            self.ts_attn = nn.ModuleList([nn.Linear(dim_feat * 2, 2) for _ in range(depth)])
            for i in range(depth):
                self.ts_attn[i].weight.data.fill_(0)
                self.ts_attn[i].bias.data.fill_(0.5)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x, return_rep=False):
        B, F, J, C = x.shape
        x = x.reshape(-1, J, C)
        BF = x.shape[0]
        x = self.joints_embed(x)
        x = x + self.pos_embed
        _, J, C = x.shape
        x = x.reshape(-1, F, J, C) + self.temp_embed[:, :F, :, :]
        x = x.reshape(BF, J, C)
        x = self.pos_drop(x)
        for idx, (blk_st, blk_ts) in enumerate(zip(self.blocks_st, self.blocks_ts)):
            x_st = blk_st(x, F)
            x_ts = blk_ts(x, F)
            if self.att_fuse:
                att = self.ts_attn[idx]
                alpha = torch.cat([x_st, x_ts], dim=-1)
                alpha = att(alpha).softmax(dim=-1)
                x = x_st * alpha[:, :, 0:1] + x_ts * alpha[:, :, 1:2]
            else:
                x = (x_st + x_ts) * 0.5
        x = self.norm(x)
        x = x.reshape(B, F, J, -1)
        x = self.pre_logits(x)  # (B, F, J, dim_rep)
        if return_rep:
            return x
        x = self.head(x)
        return x

    def get_representation(self, x):
        return self.forward(x, return_rep=True)


_NAMES = {"frames": "maxlen", "joints": "num_joints", "channels": "dim_in", "dim": "dim_feat"}


def build(frames: int | None = None, variant: str = "lite", **overrides: Any) -> DSTformer:
    """DSTformer in its ``full`` or ``lite`` configuration (depth 5, 8 heads, dim_rep 512).

    ``frames`` sets ``maxlen`` (the model then accepts clips of up to that many frames).
    ``overrides`` take the constructor's names or ``joints``, ``channels``, ``dim``.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"motionbert.build() got variant={variant!r}; expected one of {sorted(VARIANTS)}")
    paper = recipe_constant("motionbert", "DEFAULTS")  # F, J, C of recipes/motionbert/ (its default)
    config = dict(dim_in=paper["channels"], dim_out=3, dim_rep=512, num_heads=8,
                  num_joints=paper["joints"], maxlen=paper["frames"], qkv_bias=True, qk_scale=None,
                  drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), att_fuse=True, **VARIANTS[variant])
    config = apply_overrides("motionbert", config, _NAMES, frames, overrides)
    check_blocks("motionbert", config, depth="depth", dim="dim_feat", heads="num_heads")
    return mark_source(DSTformer(**config), "motionbert", frames, {"variant": variant, **overrides})


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load an official MotionBERT checkpoint (``{'model_pos': ...}``, ``module.`` prefix) or any layout
    ``read_state_dict`` reads; a full checkpoint into a lite model (or back) is refused with advice."""
    state_dict = map_hot_keys(read_state_dict(path))
    _check_variant(model, state_dict, path)
    return load_state_dict(model, state_dict, strict=strict, frame_keys=FRAME_KEYS, source=str(path))


def _check_variant(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    own = model.state_dict().get("joints_embed.weight")
    theirs = state_dict.get("joints_embed.weight")
    if own is None or theirs is None or own.shape[0] == theirs.shape[0]:
        return
    named = {cfg["dim_feat"]: name for name, cfg in VARIANTS.items()}
    advice = (f"build with variant={named[theirs.shape[0]]!r}" if theirs.shape[0] in named
              else f"build with dim_feat={theirs.shape[0]}")
    raise CheckpointError(
        f"{path}: checkpoint has feature width {theirs.shape[0]}, model has {own.shape[0]} "
        f"(joints_embed.weight); {advice}"
    )
