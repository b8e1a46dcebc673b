"""Reference baselines for the "other" rows of HoT Table 6 (Li et al., CVPR 2024).

Four video pose transformers re-implemented from their published architecture
descriptions so that parameter counts and FLOPs can be compared with the
numbers printed in the Hourglass Tokenizer paper:

===============  ====  =========  ==========  =====================================
model            F     Param (M)  FLOPs (G)   paper
===============  ====  =========  ==========  =====================================
poseformer       81    9.60       1.63        Zheng et al., ICCV 2021
strided          351   4.35       1.60        Li et al., IEEE TMM 2022
pstmo            243   7.01       1.74        Shan et al., ECCV 2022
stcformer        243   18.93      156.22      Tang et al., CVPR 2023
===============  ====  =========  ==========  =====================================

Every model takes a batch of 2D keypoint sequences shaped ``(B, F, J, 2)``
(Human3.6M: ``J = 17``) and runs on CPU.  Sub-module attribute names follow the
official releases so that ``state_dict`` keys line up with published
checkpoints (minus the input/output axis conventions, which are ``(B, F, J, C)``
here instead of the ``(B, C, F, J, 1)`` layout some originals use).

The implementations are written from the architecture facts only (widths,
depths, heads, strides, kernel sizes, module tree); dropout / stochastic depth
are kept so that training behaviour is plausible, but only inference matters
for the benchmark.

FLOPs conventions
-----------------
``FLOPS_CONVENTION`` records, per model, which counting rule reproduces the
paper's FLOPs entry (measured, see ``count_flops``):

* ``"paper"`` - 2 x MACs of ``nn.Linear`` / ``nn.ConvNd`` layers only, batch 1,
  one clip (the convention HoT uses for its own models).
* ``"macs"``  - MACs of ``nn.Linear`` / ``nn.ConvNd`` only (no factor 2).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "PoseFormer",
    "StridedTransformer",
    "PSTMO",
    "STCFormer",
    "build_poseformer",
    "build_strided",
    "build_pstmo",
    "build_stcformer",
    "BASELINES",
    "PAPER_TABLE6",
    "FLOPS_CONVENTION",
    "count_params",
    "count_flops",
]


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with prob ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(mask_shape).bernoulli_(keep)
        return x * mask / keep


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v over the last two axes."""
    weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1)
    return torch.matmul(weights, v)


# --------------------------------------------------------------------------
# PoseFormer (Zheng et al., "3D Human Pose Estimation with Spatial and
# Temporal Transformers", ICCV 2021)
# --------------------------------------------------------------------------
class _MSA(nn.Module):
    """ViT-style multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        weights = F.dropout(weights, self.attn_drop, self.training)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, dim)
        return self.proj_drop(self.proj(out))


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None, bias: bool = True,
                 drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class _PreNormBlock(nn.Module):
    """Pre-LN transformer block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 eps: float = 1e-6, drop: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _MSA(dim, heads, qkv_bias, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _MLP(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PoseFormer(nn.Module):
    """PoseFormer (Zheng et al., ICCV 2021), seq2frame.

    A spatial transformer (per frame, one token per joint, width 32) followed
    by a temporal transformer (one token per frame, width 32 x 17 = 544), a
    learned weighted mean over frames (1x1 ``Conv1d`` with frames as channels)
    and a LayerNorm + Linear head predicting the centre-frame 3D pose.

    Human3.6M config: ``embed_dim_ratio=32, depth=4, heads=8, mlp_ratio=2,
    qkv_bias=True, LayerNorm eps=1e-6, drop_path=0.2``.

    Input ``(B, F, J, 2)`` -> output ``(B, 1, J, 3)``.
    """

    def __init__(self, num_frame: int = 81, num_joints: int = 17, in_chans: int = 2,
                 embed_dim_ratio: int = 32, depth: int = 4, num_heads: int = 8,
                 mlp_ratio: float = 2.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.2):
        super().__init__()
        self.num_frame, self.num_joints = num_frame, num_joints
        embed_dim = embed_dim_ratio * num_joints
        rates = torch.linspace(0, drop_path_rate, depth).tolist()

        self.Spatial_patch_to_embedding = nn.Linear(in_chans, embed_dim_ratio)
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, embed_dim_ratio))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, num_frame, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.Spatial_blocks = nn.ModuleList(
            _PreNormBlock(embed_dim_ratio, num_heads, mlp_ratio, qkv_bias, r, drop=drop_rate)
            for r in rates)
        self.blocks = nn.ModuleList(
            _PreNormBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, r, drop=drop_rate)
            for r in rates)
        self.Spatial_norm = nn.LayerNorm(embed_dim_ratio, eps=1e-6)
        self.Temporal_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # weighted mean over frames: frames act as Conv1d input channels
        self.weighted_mean = nn.Conv1d(num_frame, 1, kernel_size=1)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 3 * num_joints))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, j, c = x.shape
        # spatial transformer: one sequence of J joint tokens per frame
        tokens = self.Spatial_patch_to_embedding(x.reshape(b * f, j, c)) + self.Spatial_pos_embed
        tokens = self.pos_drop(tokens)
        for blk in self.Spatial_blocks:
            tokens = blk(tokens)
        tokens = self.Spatial_norm(tokens).reshape(b, f, -1)
        # temporal transformer: one token per frame
        tokens = self.pos_drop(tokens + self.Temporal_pos_embed)
        for blk in self.blocks:
            tokens = blk(tokens)
        tokens = self.weighted_mean(self.Temporal_norm(tokens))  # (B, 1, J*32)
        return self.head(tokens).view(b, 1, j, -1)


def build_poseformer(num_frame: int = 81) -> PoseFormer:
    """PoseFormer, Human3.6M setting (F=81 in HoT Table 6)."""
    return PoseFormer(num_frame=num_frame)


# --------------------------------------------------------------------------
# Strided Transformer (Li et al., "Exploiting Temporal Contexts with Strided
# Transformer for 3D Human Pose Estimation", IEEE TMM 2022) and P-STMO
# (Shan et al., "P-STMO: Pre-Trained Spatial Temporal Many-to-One Model for 3D
# Human Pose Estimation", ECCV 2022), which reuses Strided's two encoders.
# --------------------------------------------------------------------------
class _StdNorm(nn.Module):
    """LayerNorm variant of the Strided code base: (x - mean) / (std + eps).

    ``std`` is the unbiased standard deviation over the channel axis; the
    affine parameters are called ``a_2`` (scale) and ``b_2`` (shift).
    """

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        return self.a_2 * centred / (x.std(dim=-1, keepdim=True) + self.eps) + self.b_2


class _SeparateQKVAttention(nn.Module):
    """Multi-head attention with four separate projections (q, k, v, out)."""

    def __init__(self, heads: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        assert d_model % heads == 0
        self.h, self.d_k = heads, d_model // heads
        self.linears = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q, k, v = (proj(x).view(n, length, self.h, self.d_k).transpose(1, 2)
                   for proj in self.linears[:3])
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k), dim=-1)
        out = torch.matmul(self.dropout(weights), v)
        return self.linears[3](out.transpose(1, 2).reshape(n, length, self.h * self.d_k))


class _DenseFFN(nn.Module):
    """Position-wise feed-forward with ReLU (the reference calls it ``gelu``)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class _StridedFFN(nn.Module):
    """Strided feed-forward: 1x1 Conv1d up, then kernel-3 Conv1d down with stride ``s``.

    Shrinks the temporal length from ``T`` to ``floor((T - 1) / s) + 1``.
    """

    def __init__(self, d_model: int, d_ff: int, stride: int, dropout: float = 0.1):
        super().__init__()
        self.w_1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.w_2 = nn.Conv1d(d_ff, d_model, kernel_size=3, stride=stride, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C) -> (N, T', C)
        y = self.w_2(self.dropout(F.relu(self.w_1(x.transpose(1, 2)))))
        return y.transpose(1, 2)


class _Residual(nn.Module):
    """Pre-norm residual wrapper; ``stride > 1`` subsamples the shortcut (MaxPool k=1)."""

    def __init__(self, size: int, dropout: float, stride: int = 1):
        super().__init__()
        self.norm = _StdNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.stride = stride

    def forward(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        shortcut = x if self.stride == 1 else x[:, ::self.stride]
        return shortcut + self.dropout(fn(self.norm(x)))


class _EncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module, dropout: float,
                 stride: int = 1):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.sublayer = nn.ModuleList([_Residual(size, dropout), _Residual(size, dropout, stride)])
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sublayer[0](x, self.self_attn)
        return self.sublayer[1](x, self.feed_forward)


class _LayerStack(nn.Module):
    """Holds ``layers`` and a trailing ``norm``.

    The trailing norm exists in both reference encoders but is never applied
    in their forward pass; it is kept so that parameter counts and
    ``state_dict`` keys match.
    """

    def __init__(self, layers: Sequence[nn.Module], d_model: int, length: int = 0,
                 num_pos: int = 0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = _StdNorm(d_model)
        self.num_pos = num_pos
        for i in range(num_pos):  # per-layer positional embeddings (strided encoder only)
            setattr(self, f"pos_embedding_{i + 1}", nn.Parameter(torch.randn(1, length, d_model)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i < self.num_pos:
                x = x + getattr(self, f"pos_embedding_{i + 1}")[:, : x.shape[1]]
            x = layer(x)
        return x


class VanillaTemporalEncoder(nn.Module):
    """Full-length temporal transformer ("VTE"): pos-embedding + N pre-norm layers."""

    def __init__(self, n_layers: int = 3, d_model: int = 256, d_ff: int = 512, h: int = 8,
                 dropout: float = 0.1, length: int = 27):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.randn(1, length, d_model))
        layers = [_EncoderLayer(d_model, _SeparateQKVAttention(h, d_model),
                                _DenseFFN(d_model, d_ff, dropout), dropout)
                  for _ in range(n_layers)]
        self.model = _LayerStack(layers, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.pos_embedding)


class StridedTemporalEncoder(nn.Module):
    """Strided transformer encoder ("STE"): one layer per stride, each shrinking time.

    Layer ``i`` uses a strided FFN (stride ``stride_num[i]``) and a subsampled
    shortcut; the first three layers add their own learned positional
    embedding (three embeddings in total, independent of the number of
    layers - as in the reference code bases).
    """

    def __init__(self, n_layers: int = 3, d_model: int = 256, d_ff: int = 512, h: int = 8,
                 length: int = 27, stride_num: Sequence[int] = (3, 3, 3), dropout: float = 0.1):
        super().__init__()
        assert len(stride_num) == n_layers
        self.stride_num = list(stride_num)
        layers = [_EncoderLayer(d_model, _SeparateQKVAttention(h, d_model),
                                _StridedFFN(d_model, d_ff, s, dropout), dropout, stride=s)
                  for s in stride_num]
        self.model = _LayerStack(layers, d_model, length=length, num_pos=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _bn_conv_head(channel: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(channel, momentum=0.1), nn.Conv1d(channel, out, kernel_size=1))


class _SeqToFrameLifter(nn.Module):
    """Common body of Strided Transformer and P-STMO.

    ``encoder`` (per-frame 2D-pose embedding, channels-first) -> VTE ->
    (a) ``fcn_1`` head on every frame (full-sequence supervision) and
    (b) STE -> ``fcn`` head on the single remaining token (centre frame).

    Input ``(B, F, J, 2)``; returns ``(centre, full)`` with shapes
    ``(B, 1, J, 3)`` and ``(B, F, J, 3)``.
    """

    encoder: nn.Module

    def __init__(self, frames: int, layers: int, channel: int, d_hid: int,
                 stride_num: Sequence[int], n_joints: int = 17):
        super().__init__()
        self.n_joints = n_joints
        self.Transformer = VanillaTemporalEncoder(layers, channel, d_hid, length=frames)
        self.Transformer_reduce = StridedTemporalEncoder(len(stride_num), channel, d_hid,
                                                         length=frames, stride_num=stride_num)
        self.fcn = _bn_conv_head(channel, 3 * n_joints)
        self.fcn_1 = _bn_conv_head(channel, 3 * n_joints)

    def _to_poses(self, y: torch.Tensor) -> torch.Tensor:  # (B, 3J, T) -> (B, T, J, 3)
        b, _, t = y.shape
        return y.view(b, self.n_joints, 3, t).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, f, j, c = x.shape
        feats = self.encoder(x.reshape(b, f, j * c).transpose(1, 2))  # (B, C, F)
        feats = self.Transformer(feats.transpose(1, 2))               # (B, F, C)
        full = self._to_poses(self.fcn_1(feats.transpose(1, 2)))
        centre = self.Transformer_reduce(feats)                       # (B, 1, C)
        centre = self._to_poses(self.fcn(centre.transpose(1, 2)))
        return centre, full


STRIDES = {27: (3, 3, 3), 351: (3, 9, 13), 9: (1, 3, 3), 81: (3, 3, 3, 3), 243: (3, 3, 3, 3, 3)}


class StridedTransformer(_SeqToFrameLifter):
    """Strided Transformer (Li et al., IEEE TMM 2022), seq2frame.

    Human3.6M F=351 config: ``channel=256, d_hid=512, layers=3, heads=8,
    stride_num=[3, 9, 13]`` (351 -> 117 -> 13 -> 1 tokens).  The pose encoder
    is ``Conv1d(34, 256, 1) + BN + ReLU + Dropout(0.25)``.
    """

    def __init__(self, frames: int = 351, layers: int = 3, channel: int = 256, d_hid: int = 512,
                 stride_num: Sequence[int] | None = None, n_joints: int = 17):
        stride_num = stride_num or STRIDES[frames]
        super().__init__(frames, layers, channel, d_hid, stride_num, n_joints)
        self.encoder = nn.Sequential(
            nn.Conv1d(2 * n_joints, channel, kernel_size=1),
            nn.BatchNorm1d(channel, momentum=0.1),
            nn.ReLU(inplace=True),
            nn.Dropout(0.25),
        )


def build_strided(frames: int = 351) -> StridedTransformer:
    """Strided Transformer, Human3.6M setting (F=351 in HoT Table 6)."""
    return StridedTransformer(frames=frames)


class _ResidualPointwise(nn.Module):
    """Two (1x1 Conv1d, BN, LeakyReLU(0.2), Dropout) stages with an identity shortcut."""

    def __init__(self, size: int, p_dropout: float):
        super().__init__()
        self.w1 = nn.Conv1d(size, size, kernel_size=1)
        self.batch_norm1 = nn.BatchNorm1d(size)
        self.w2 = nn.Conv1d(size, size, kernel_size=1)
        self.batch_norm2 = nn.BatchNorm1d(size)
        self.dropout = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.leaky_relu(self.batch_norm1(self.w1(x)), 0.2))
        y = self.dropout(F.leaky_relu(self.batch_norm2(self.w2(y)), 0.2))
        return x + y


class _MLPPoseEncoder(nn.Module):
    """P-STMO spatial feature extractor (an MLP over the 34 coordinates of a frame)."""

    def __init__(self, channel_in: int, channel_out: int, linear_size: int, block_num: int,
                 p_dropout: float = 0.1):
        super().__init__()
        self.fc_1 = nn.Conv1d(channel_in, linear_size, kernel_size=1)
        self.bn_1 = nn.BatchNorm1d(linear_size)
        self.layers = nn.ModuleList(_ResidualPointwise(linear_size, p_dropout)
                                    for _ in range(block_num))
        self.fc_2 = nn.Conv1d(linear_size, channel_out, kernel_size=1)
        self.dropout = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.leaky_relu(self.bn_1(self.fc_1(x)), 0.2))
        for layer in self.layers:
            x = layer(x)
        return self.fc_2(x)


class PSTMO(_SeqToFrameLifter):
    """P-STMO fine-tuned model (STMO; Shan et al., ECCV 2022), seq2frame.

    Human3.6M F=243 config (the 42.8 mm "P-STMO" row, not P-STMO-S):
    ``channel=256, d_hid=512, layers=4`` (vanilla temporal encoder),
    ``stride_num=[3, 3, 3, 3, 3]``, i.e. five strided layers with stride 3
    (243 -> 81 -> 27 -> 9 -> 3 -> 1), pose encoder = MLP block
    ``34 -> 512`` (+ one residual 512-wide pair) ``-> 256``.
    P-STMO-S is the same with ``layers=3``.
    """

    def __init__(self, frames: int = 243, layers: int = 4, channel: int = 256, d_hid: int = 512,
                 stride_num: Sequence[int] | None = None, n_joints: int = 17):
        stride_num = stride_num or STRIDES[frames]
        super().__init__(frames, layers, channel, d_hid, stride_num, n_joints)
        self.encoder = _MLPPoseEncoder(2 * n_joints, channel, 2 * channel, block_num=1)


def build_pstmo(frames: int = 243, layers: int = 4) -> PSTMO:
    """P-STMO, Human3.6M setting (F=243, 4 VTE layers in HoT Table 6)."""
    return PSTMO(frames=frames, layers=layers)


# --------------------------------------------------------------------------
# STCFormer (Tang et al., "3D Human Pose Estimation with Spatio-Temporal
# Criss-cross Attention", CVPR 2023)
# --------------------------------------------------------------------------
# body part of each Human3.6M joint (hip/torso/head = 0, right leg = 1,
# left leg = 2, left arm = 3, right arm = 4) - used by the structure-enhanced
# positional embedding of STCFormer.
H36M_PARTS = (0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 4, 4, 4)


class _CrissCrossAttention(nn.Module):
    """Spatio-temporal criss-cross attention with its own pre-LN and residual.

    Channels are split in two halves: the first half attends across joints
    within a frame, the second across frames for the same joint.  Each
    branch adds a depthwise 3x3 ``Conv2d`` over the (time, joint) grid of its
    values, and the spatial branch adds a (tiny-scaled) part embedding.
    The attention scale is ``(d/2) ** -0.5`` for both branches.
    """

    def __init__(self, d_coor: int, heads: int = 8, parts: Sequence[int] = H36M_PARTS):
        super().__init__()
        half = d_coor // 2
        self.head = heads
        self.scale = half ** -0.5
        self.layer_norm = nn.LayerNorm(d_coor)
        self.qkv = nn.Linear(d_coor, 3 * d_coor)
        self.proj = nn.Linear(d_coor, d_coor)
        self.emb = nn.Embedding(max(parts) + 1, half // heads)
        self.register_buffer("part", torch.tensor(parts, dtype=torch.long), persistent=False)
        self.sep2_t = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half)
        self.sep2_s = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half)
        self.drop = DropPath(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, c = x.shape
        h, half = self.head, c // 2
        dh = half // h
        # output channels of qkv are laid out as (c, 3): q, k, v interleaved
        q, k, v = self.qkv(self.layer_norm(x)).view(b, t, s, c, 3).unbind(-1)

        def split_heads(z: torch.Tensor) -> torch.Tensor:  # (b,t,s,half) -> (b,h,t,s,dh)
            return z.reshape(b, t, s, h, dh).permute(0, 3, 1, 2, 4)

        def depthwise(conv: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
            # (b,t,s,half) -> conv over the (t, s) grid -> (b,h,t,s,dh)
            y = conv(z.permute(0, 3, 1, 2))
            return y.reshape(b, h, dh, t, s).permute(0, 1, 3, 4, 2)

        qs, ks, vs = (split_heads(z[..., :half]) for z in (q, k, v))
        qt, kt, vt = (split_heads(z[..., half:]).transpose(2, 3) for z in (q, k, v))

        part_emb = self.drop(self.emb(self.part).unsqueeze(0))  # (1, s, dh)
        x_s = _attend(qs, ks, vs, self.scale) + depthwise(self.sep2_s, v[..., :half])
        x_s = x_s + 1e-4 * part_emb
        x_t = _attend(qt, kt, vt, self.scale).transpose(2, 3) + depthwise(self.sep2_t, v[..., half:])
        x_t = x_t + 1e-9 * part_emb

        out = torch.cat((x_s, x_t), dim=-1).permute(0, 2, 3, 1, 4).reshape(b, t, s, c)
        return self.proj(out) + x


class _STCBlock(nn.Module):
    def __init__(self, d_coor: int, heads: int = 8, mlp_ratio: int = 4, drop: float = 0.1):
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_coor)
        self.mlp = _MLP(d_coor, mlp_ratio * d_coor, bias=False, drop=drop)
        self.stc_att = _CrissCrossAttention(d_coor, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stc_att(x)
        return x + self.mlp(self.layer_norm(x))


class _STCStack(nn.Module):
    def __init__(self, num_block: int, d_coor: int):
        super().__init__()
        self.stc_block = nn.ModuleList(_STCBlock(d_coor) for _ in range(num_block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.stc_block:
            x = blk(x)
        return x


class STCFormer(nn.Module):
    """STCFormer (Tang et al., CVPR 2023), seq2seq.

    ``Linear(2, d, bias=False) + GELU`` joint embedding, ``layers`` STC blocks
    (criss-cross attention with 8 heads + bias-free MLP with ratio 4), and a
    bias-free ``Linear(d, 3)`` regression head.  The F=243 Human3.6M model is
    the large variant, ``layers=6, d_hid=512`` (the F=27/81 models use 256).

    Input ``(B, F, J, 2)`` -> output ``(B, F, J, 3)``.
    """

    def __init__(self, layers: int = 6, d_hid: int = 512):
        super().__init__()
        self.pose_emb = nn.Linear(2, d_hid, bias=False)
        self.gelu = nn.GELU()
        self.stcformer = _STCStack(layers, d_hid)
        self.regress_head = nn.Linear(d_hid, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.regress_head(self.stcformer(self.gelu(self.pose_emb(x))))


def build_stcformer(layers: int = 6, d_hid: int = 512) -> STCFormer:
    """STCFormer-L, Human3.6M setting (F=243 in HoT Table 6)."""
    return STCFormer(layers=layers, d_hid=d_hid)


# --------------------------------------------------------------------------
# registry, paper numbers, counting
# --------------------------------------------------------------------------
BASELINES: Dict[str, Tuple[Callable[[], nn.Module], Tuple[int, int, int, int]]] = {
    "poseformer": (build_poseformer, (1, 81, 17, 2)),
    "strided": (build_strided, (1, 351, 17, 2)),
    "pstmo": (build_pstmo, (1, 243, 17, 2)),
    "stcformer": (build_stcformer, (1, 243, 17, 2)),
}

# HoT Table 6: (Param in M, FLOPs in G)
PAPER_TABLE6: Dict[str, Tuple[float, float]] = {
    "poseformer": (9.60, 1.63),
    "strided": (4.35, 1.60),
    "pstmo": (7.01, 1.74),
    "stcformer": (18.93, 156.22),
}

# Which counting rule reproduces each Table 6 FLOPs entry (see count_flops).
FLOPS_CONVENTION: Dict[str, str] = {
    # 2 x Linear/Conv MACs = 1.6247 G (-0.33%); raw MACs (0.81 G) and 2 x fvcore (1.70 G, +4.4%) miss
    "poseformer": "paper",
    # 2 x Linear/Conv MACs of the whole seq2frame net (VTE, STE, both heads) = 1.6007 G (+0.05%)
    "strided": "paper",
    # 2 x Linear/Conv MACs (4-layer VTE, 5 strided layers, both heads) = 1.7332 G (-0.39%); 2 x thop = 1.7367 G
    "pstmo": "paper",
    # 2 x Linear/Conv MACs incl. the depthwise 3x3 convs = 156.19 G (-0.02%) (STCFormer code: 2 x thop)
    "stcformer": "paper",
}


def count_params(model: nn.Module) -> int:
    """Total number of parameter elements (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, x: torch.Tensor, convention: str = "paper") -> int:
    """FLOPs of one forward on ``x`` under ``convention``: "paper" (2 x MACs of Linear/Conv
    layers, ``hotpatch.profile``'s paper counter) or "macs" (half of it)."""
    from hotpatch.profile import profile

    flops = profile(model, x, counters=("paper",), fps=False, memory=False).flops["paper"].value
    if convention == "paper":
        return flops
    if convention == "macs":
        return flops // 2
    raise ValueError(f"unknown FLOPs convention {convention!r}")
