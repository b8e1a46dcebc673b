"""MHFormer (Li et al., CVPR 2022): the multi-hypothesis transformer, a seq2frame model.

A re-implementation with the module tree and state_dict keys of the authors' ``Model``
(Vegetebird/MHFormer, ``model/mhformer.py`` with ``model/module/trans.py`` and
``trans_hypothesis.py``), so their plain-state_dict checkpoints load with strict key matching.

Three stages:

- MHG: the pose sequence is laid out as (B, 2J, F) — one token per joint coordinate, the F
  frames as its features — and three residual transformer encoders produce three hypotheses.
  These blocks attend across the 34 coordinate tokens, not across frames.
- Embedding: a kernel-1 Conv1d per hypothesis maps (B, 2J, F) to C channels; the result is
  transposed to (B, F, C), one token per frame.
- SHR / CHI: per-hypothesis self-attention across frames with a shared MLP (SHR blocks), then
  cross-hypothesis attention (one CHI block); a Conv1d head regresses every frame, and the
  caller evaluates the centre frame. Output (B, F, J, 3).
"""

from __future__ import annotations

import os
from functools import partial
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
from einops import rearrange

from hotpatch.checkpoint import LoadReport, load_checkpoint_file
from hotpatch.errors import ConfigError
from ._common import apply_overrides, check_blocks, constants_getattr, mark_source, recipe_constant
from ._layers import Attention, DropPath, Mlp


__getattr__ = constants_getattr("mhformer", __name__)  # DEFAULTS and INPUT, read from recipes/mhformer/


#: Parameters indexed by frame, with the frame axis: a checkpoint for another F is refused.
FRAME_KEYS = {"Transformer_hypothesis.pos_embed_1": 1}

MHG_HEADS = 9  # heads of the MHG encoders, whose width is F


# ----------------------------------------------------------------- module/trans.py

class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_hidden_dim, qkv_bias=False, qk_scale=None, drop=0., attn_drop=0.,
                 drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class Transformer(nn.Module):
    """The MHG encoder: ``length`` tokens of width ``embed_dim`` (here 2J tokens of width F)."""

    def __init__(self, depth=3, embed_dim=512, mlp_hidden_dim=1024, h=8, drop_rate=0.1, length=27):
        super().__init__()
        drop_path_rate = 0.2
        attn_drop_rate = 0.
        qkv_bias = True
        qk_scale = None
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.pos_embed = nn.Parameter(torch.zeros(1, length, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.ModuleList([
            Block(dim=embed_dim, num_heads=h, mlp_hidden_dim=mlp_hidden_dim, qkv_bias=qkv_bias, qk_scale=qk_scale,
                  drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(depth)])
        self.norm = norm_layer(embed_dim)

    def forward(self, x):
        x += self.pos_embed
        x = self.pos_drop(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x


# ----------------------------------------------------------------- module/trans_hypothesis.py

class Cross_Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0., proj_drop=0.):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5

        self.linear_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.linear_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.linear_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x_1, x_2, x_3):
        B, N, C = x_1.shape
        q = self.linear_q(x_1).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        k = self.linear_k(x_2).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        v = self.linear_v(x_3).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)

        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))

        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj_drop(self.proj(x))
        return x


class SHR_Block(nn.Module):
    """Self-hypothesis refinement: one attention per hypothesis, one MLP over all three."""

    def __init__(self, dim, num_heads, mlp_hidden_dim, qkv_bias=False, qk_scale=None, drop=0., attn_drop=0.,
                 drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1_1 = norm_layer(dim)
        self.norm1_2 = norm_layer(dim)
        self.norm1_3 = norm_layer(dim)

        self.attn_1 = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                attn_drop=attn_drop, proj_drop=drop)
        self.attn_2 = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                attn_drop=attn_drop, proj_drop=drop)
        self.attn_3 = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                attn_drop=attn_drop, proj_drop=drop)

        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim * 3)
        self.mlp = Mlp(in_features=dim * 3, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop)

    def forward(self, x_1, x_2, x_3):
        x_1 = x_1 + self.drop_path(self.attn_1(self.norm1_1(x_1)))
        x_2 = x_2 + self.drop_path(self.attn_2(self.norm1_2(x_2)))
        x_3 = x_3 + self.drop_path(self.attn_3(self.norm1_3(x_3)))

        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = x + self.drop_path(self.mlp(self.norm2(x)))

        x_1 = x[:, :, :x.shape[2] // 3]
        x_2 = x[:, :, x.shape[2] // 3: x.shape[2] // 3 * 2]
        x_3 = x[:, :, x.shape[2] // 3 * 2: x.shape[2]]
        return x_1, x_2, x_3


class CHI_Block(nn.Module):
    """Cross-hypothesis interaction: each hypothesis queries the other two, then a shared MLP."""

    def __init__(self, dim, num_heads, mlp_hidden_dim, qkv_bias=False, qk_scale=None, drop=0., attn_drop=0.,
                 drop_path=0., act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm3_11 = norm_layer(dim)
        self.norm3_12 = norm_layer(dim)
        self.norm3_13 = norm_layer(dim)

        self.norm3_21 = norm_layer(dim)
        self.norm3_22 = norm_layer(dim)
        self.norm3_23 = norm_layer(dim)

        self.norm3_31 = norm_layer(dim)
        self.norm3_32 = norm_layer(dim)
        self.norm3_33 = norm_layer(dim)

        self.attn_1 = Cross_Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                      attn_drop=attn_drop, proj_drop=drop)
        self.attn_2 = Cross_Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                      attn_drop=attn_drop, proj_drop=drop)
        self.attn_3 = Cross_Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                      attn_drop=attn_drop, proj_drop=drop)

        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim * 3)
        self.mlp = Mlp(in_features=dim * 3, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop)

    def forward(self, x_1, x_2, x_3):
        x_1 = x_1 + self.drop_path(self.attn_1(self.norm3_11(x_2), self.norm3_12(x_3), self.norm3_13(x_1)))
        x_2 = x_2 + self.drop_path(self.attn_2(self.norm3_21(x_1), self.norm3_22(x_3), self.norm3_23(x_2)))
        x_3 = x_3 + self.drop_path(self.attn_3(self.norm3_31(x_1), self.norm3_32(x_2), self.norm3_33(x_3)))

        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = x + self.drop_path(self.mlp(self.norm2(x)))

        x_1 = x[:, :, :x.shape[2] // 3]
        x_2 = x[:, :, x.shape[2] // 3: x.shape[2] // 3 * 2]
        x_3 = x[:, :, x.shape[2] // 3 * 2: x.shape[2]]
        return x_1, x_2, x_3


class Transformer_hypothesis(nn.Module):
    """``depth - 1`` SHR blocks and one CHI block over F frame tokens of width ``embed_dim``."""

    def __init__(self, depth=3, embed_dim=512, mlp_hidden_dim=1024, h=8, drop_rate=0.1, length=27):
        super().__init__()
        drop_path_rate = 0.20
        attn_drop_rate = 0.
        qkv_bias = True
        qk_scale = None
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.pos_embed_1 = nn.Parameter(torch.zeros(1, length, embed_dim))
        self.pos_embed_2 = nn.Parameter(torch.zeros(1, length, embed_dim))
        self.pos_embed_3 = nn.Parameter(torch.zeros(1, length, embed_dim))

        self.pos_drop_1 = nn.Dropout(p=drop_rate)
        self.pos_drop_2 = nn.Dropout(p=drop_rate)
        self.pos_drop_3 = nn.Dropout(p=drop_rate)

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]  # stochastic depth decay

        self.SHR_blocks = nn.ModuleList([
            SHR_Block(dim=embed_dim, num_heads=h, mlp_hidden_dim=mlp_hidden_dim, qkv_bias=qkv_bias,
                      qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                      norm_layer=norm_layer)
            for i in range(depth - 1)])
        self.CHI_blocks = nn.ModuleList([
            CHI_Block(dim=embed_dim, num_heads=h, mlp_hidden_dim=mlp_hidden_dim, qkv_bias=qkv_bias,
                      qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[depth - 1],
                      norm_layer=norm_layer)
            for _ in range(1)])

        self.norm = norm_layer(embed_dim * 3)

    def forward(self, x_1, x_2, x_3):
        x_1 += self.pos_embed_1
        x_2 += self.pos_embed_2
        x_3 += self.pos_embed_3

        x_1 = self.pos_drop_1(x_1)
        x_2 = self.pos_drop_2(x_2)
        x_3 = self.pos_drop_3(x_3)

        for i, blk in enumerate(self.SHR_blocks):
            x_1, x_2, x_3 = self.SHR_blocks[i](x_1, x_2, x_3)

        x_1, x_2, x_3 = self.CHI_blocks[0](x_1, x_2, x_3)

        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = self.norm(x)
        return x


# ----------------------------------------------------------------- model/mhformer.py

def _embedding(in_channels, channel, frames):
    # Long clips embed with a bare Conv1d; short ones (F <= 27) add BatchNorm, ReLU and dropout.
    if frames > 27:
        return nn.Conv1d(in_channels, channel, kernel_size=1)
    return nn.Sequential(
        nn.Conv1d(in_channels, channel, kernel_size=1),
        nn.BatchNorm1d(channel, momentum=0.1),
        nn.ReLU(inplace=True),
        nn.Dropout(0.25),
    )


class Model(nn.Module):
    def __init__(self, args):
        super().__init__()

        ## MHG
        self.norm_1 = nn.LayerNorm(args.frames)
        self.norm_2 = nn.LayerNorm(args.frames)
        self.norm_3 = nn.LayerNorm(args.frames)

        self.Transformer_encoder_1 = Transformer(4, args.frames, args.frames * 2, length=2 * args.n_joints, h=MHG_HEADS)
        self.Transformer_encoder_2 = Transformer(4, args.frames, args.frames * 2, length=2 * args.n_joints, h=MHG_HEADS)
        self.Transformer_encoder_3 = Transformer(4, args.frames, args.frames * 2, length=2 * args.n_joints, h=MHG_HEADS)

        ## Embedding
        self.embedding_1 = _embedding(2 * args.n_joints, args.channel, args.frames)
        self.embedding_2 = _embedding(2 * args.n_joints, args.channel, args.frames)
        self.embedding_3 = _embedding(2 * args.out_joints, args.channel, args.frames)

        ## SHR & CHI
        self.Transformer_hypothesis = Transformer_hypothesis(args.layers, args.channel, args.d_hid, length=args.frames)

        ## Regression
        self.regression = nn.Sequential(
            nn.BatchNorm1d(args.channel * 3, momentum=0.1),
            nn.Conv1d(args.channel * 3, 3 * args.out_joints, kernel_size=1),
        )

    def forward(self, x):
        B, F, J, C = x.shape
        x = rearrange(x, 'b f j c -> b (j c) f').contiguous()

        ## MHG
        x_1 = x + self.Transformer_encoder_1(self.norm_1(x))
        x_2 = x_1 + self.Transformer_encoder_2(self.norm_2(x_1))
        x_3 = x_2 + self.Transformer_encoder_3(self.norm_3(x_2))

        ## Embedding
        x_1 = self.embedding_1(x_1).permute(0, 2, 1).contiguous()
        x_2 = self.embedding_2(x_2).permute(0, 2, 1).contiguous()
        x_3 = self.embedding_3(x_3).permute(0, 2, 1).contiguous()

        ## SHR & CHI
        x = self.Transformer_hypothesis(x_1, x_2, x_3)

        ## Regression
        x = x.permute(0, 2, 1).contiguous()
        x = self.regression(x)
        x = rearrange(x, 'b (j c) f -> b f j c', j=J).contiguous()
        return x


_NAMES = {"frames": "frames", "joints": "n_joints", "dim": "channel", "depth": "layers"}


def build(frames: int | None = None, **overrides: Any) -> Model:
    """MHFormer as the paper ran it (F=351, C=512, MLP 1024, 3 hypothesis layers, 17 joints).

    ``overrides`` take the option names of the official code (``channel``, ``d_hid``, ``layers``,
    ``n_joints``, ``out_joints``) or ``dim``, ``depth``, ``joints``. F must be a multiple of 9
    (the MHG encoders have 9 heads over a width of F).
    """
    given, overrides = dict(overrides), dict(overrides)
    if "channels" in overrides:
        if overrides.pop("channels") != 2:
            raise ConfigError("mhformer.build() got channels != 2; MHFormer lifts 2D keypoints only (channels=2)")
    paper = recipe_constant("mhformer", "DEFAULTS")  # F, J of recipes/mhformer/ (its default)
    config = dict(frames=paper["frames"], n_joints=paper["joints"], out_joints=None,
                  channel=512, d_hid=1024, layers=3)
    config = apply_overrides("mhformer", config, _NAMES, frames, overrides)
    check_blocks("mhformer", config, depth="layers")
    if config["out_joints"] is None:
        config["out_joints"] = config["n_joints"]
    if config["frames"] % MHG_HEADS:
        raise ConfigError(
            f"mhformer.build() got frames={config['frames']}; MHFormer's MHG encoders have {MHG_HEADS} heads "
            f"over a width of F, so F must be a multiple of {MHG_HEADS} (e.g. 27, 81, 243, 351)"
        )
    return mark_source(Model(SimpleNamespace(**config)), "mhformer", frames, given)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load an official MHFormer / TPC-MHFormer checkpoint (a plain state_dict, or any layout
    ``read_state_dict`` reads)."""
    return load_checkpoint_file(model, path, strict=strict, frame_keys=FRAME_KEYS)
