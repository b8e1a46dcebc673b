"""Small video pose transformers written the way their authors write them.

Between them they contain every pattern hotpatch must handle: einops everywhere, shape
asserts, ``b, f, n, c = x.shape`` reused after the blocks, ``x += pos_embed``, a
``return_rep`` flag, blocks that take the frame count (``blk(x, F)``), shared norms called
after every block, (B, F, C), (B·F, J, C) with (B·J, F, C) and (B, 34, F) layouts, timm-style
DropPath, (1, F, C) and (1, maxlen, 1, C) temporal embeddings, functional dropout, literal
frame counts, positional embeddings used after the cut, ``nn.TransformerEncoderLayer`` with
(F, B, C) tokens, several frame-carrying streams, and a centre-frame output.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def drop_path(x, drop_prob: float = 0.0, training: bool = False):
    if drop_prob == 0.0 or not training:
        return x
    keep = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, drop_prob=None):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=4, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=2.0, drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attn_drop=drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


# ----------------------------------------------------------------------------- MixSTE-like


class MixSTELike(nn.Module):
    """Alternating spatial (B·F, J, C) and temporal (B·J, F, C) blocks, shared norms."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4, drop_path_rate=0.1, drop_rate=0.0):
        super().__init__()
        self.Spatial_patch_to_embedding = nn.Linear(in_chans, dim)
        self.Spatial_pos_embed = nn.Parameter(torch.randn(1, num_joints, dim) * 0.02)
        self.Temporal_pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.block_depth = depth
        self.STEblocks = nn.ModuleList([Block(dim, heads, drop_path=dpr[i]) for i in range(depth)])
        self.TTEblocks = nn.ModuleList([Block(dim, heads, drop_path=dpr[i]) for i in range(depth)])
        self.Spatial_norm = nn.LayerNorm(dim, eps=1e-6)
        self.Temporal_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))

    def STE_forward(self, x):
        b, f, n, c = x.shape
        x = rearrange(x, "b f n c  -> (b f) n c")
        x = self.Spatial_patch_to_embedding(x)
        x += self.Spatial_pos_embed
        x = self.pos_drop(x)
        x = self.STEblocks[0](x)
        x = self.Spatial_norm(x)
        x = rearrange(x, "(b f) n cw -> (b n) f cw", f=f)
        return x

    def TTE_foward(self, x):
        assert len(x.shape) == 3, "shape is equal to 3"
        b, f, _ = x.shape
        x += self.Temporal_pos_embed
        x = self.pos_drop(x)
        x = self.TTEblocks[0](x)
        x = self.Temporal_norm(x)
        return x

    def ST_foward(self, x):
        assert len(x.shape) == 4, "shape is equal to 4"
        b, f, n, cw = x.shape
        for i in range(1, self.block_depth):
            x = rearrange(x, "b f n cw -> (b f) n cw")
            x = self.STEblocks[i](x)
            x = self.Spatial_norm(x)
            x = rearrange(x, "(b f) n cw -> (b n) f cw", f=f)
            x = self.TTEblocks[i](x)
            x = self.Temporal_norm(x)
            x = rearrange(x, "(b n) f cw -> b f n cw", n=n)
        return x

    def forward(self, x):
        b, f, n, c = x.shape
        x = self.STE_forward(x)
        x = self.TTE_foward(x)
        x = rearrange(x, "(b n) f cw -> b f n cw", n=n)
        x = self.ST_foward(x)
        x = self.head(x)
        x = x.view(b, f, n, -1)
        return x


# ------------------------------------------------------------------------- MotionBERT-like


class DualAttention(nn.Module):
    def __init__(self, dim, num_heads, st_mode):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.mode = st_mode

    def forward(self, x, seqlen=1):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.mode == "temporal":
            x = self.forward_temporal(q, k, v, seqlen=seqlen)
        else:
            x = self.forward_spatial(q, k, v)
        return self.proj(x)

    def forward_spatial(self, q, k, v):
        B, _, N, C = q.shape
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = attn @ v
        return x.transpose(1, 2).reshape(B, N, C * self.num_heads)

    def forward_temporal(self, q, k, v, seqlen=8):
        B, _, N, C = q.shape
        qt = q.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)
        kt = k.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)
        vt = v.reshape(-1, seqlen, self.num_heads, N, C).permute(0, 2, 3, 1, 4)
        attn = ((qt @ kt.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = attn @ vt
        x = x.permute(0, 3, 2, 1, 4).reshape(B, N, C * self.num_heads)
        return x


class DualBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, drop_path=0.0, st_mode="stage_st"):
        super().__init__()
        self.st_mode = st_mode
        self.norm1_s = nn.LayerNorm(dim)
        self.norm1_t = nn.LayerNorm(dim)
        self.attn_s = DualAttention(dim, num_heads, "spatial")
        self.attn_t = DualAttention(dim, num_heads, "temporal")
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2_s = nn.LayerNorm(dim)
        self.norm2_t = nn.LayerNorm(dim)
        self.mlp_s = Mlp(dim, int(dim * mlp_ratio))
        self.mlp_t = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, seqlen=1):
        if self.st_mode == "stage_st":
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


class MotionBERTLike(nn.Module):
    """Dual-stream (ST and TS) blocks on (B·F, J, C) tokens fused by learned weights."""

    def __init__(self, dim_in=3, dim_out=3, dim_feat=32, dim_rep=64, depth=3, num_heads=4, num_joints=17, maxlen=27, drop_path_rate=0.1):
        super().__init__()
        self.joints_embed = nn.Linear(dim_in, dim_feat)
        self.pos_drop = nn.Dropout(p=0.0)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks_st = nn.ModuleList([DualBlock(dim_feat, num_heads, drop_path=dpr[i], st_mode="stage_st") for i in range(depth)])
        self.blocks_ts = nn.ModuleList([DualBlock(dim_feat, num_heads, drop_path=dpr[i], st_mode="stage_ts") for i in range(depth)])
        self.norm = nn.LayerNorm(dim_feat)
        self.pre_logits = nn.Sequential(OrderedDict([("fc", nn.Linear(dim_feat, dim_rep)), ("act", nn.Tanh())]))
        self.head = nn.Linear(dim_rep, dim_out)
        self.temp_embed = nn.Parameter(torch.randn(1, maxlen, 1, dim_feat) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, num_joints, dim_feat) * 0.02)
        self.ts_attn = nn.ModuleList([nn.Linear(dim_feat * 2, 2) for _ in range(depth)])
        for i in range(depth):
            self.ts_attn[i].weight.data.normal_(0, 0.1)
            self.ts_attn[i].bias.data.fill_(0.5)

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
            alpha = torch.cat([x_st, x_ts], dim=-1)
            BF, J = alpha.shape[:2]
            alpha = self.ts_attn[idx](alpha)
            alpha = alpha.softmax(dim=-1)
            x = x_st * alpha[:, :, 0:1] + x_ts * alpha[:, :, 1:2]
        x = self.norm(x)
        x = x.reshape(B, F, J, -1)
        x = self.pre_logits(x)
        if return_rep:
            return x
        x = self.head(x)
        return x


# --------------------------------------------------------------------------- MHFormer-like


class MultiStreamBlock(nn.Module):
    """Three hypothesis streams: own attention each, one MLP over their concatenation."""

    def __init__(self, dim, num_heads, hidden, drop_path=0.0):
        super().__init__()
        self.norm1_1 = nn.LayerNorm(dim)
        self.norm1_2 = nn.LayerNorm(dim)
        self.norm1_3 = nn.LayerNorm(dim)
        self.attn_1 = Attention(dim, num_heads)
        self.attn_2 = Attention(dim, num_heads)
        self.attn_3 = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim * 3)
        self.mlp = Mlp(dim * 3, hidden)

    def forward(self, x_1, x_2, x_3):
        x_1 = x_1 + self.drop_path(self.attn_1(self.norm1_1(x_1)))
        x_2 = x_2 + self.drop_path(self.attn_2(self.norm1_2(x_2)))
        x_3 = x_3 + self.drop_path(self.attn_3(self.norm1_3(x_3)))
        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        x_1 = x[:, :, : x.shape[2] // 3]
        x_2 = x[:, :, x.shape[2] // 3 : x.shape[2] // 3 * 2]
        x_3 = x[:, :, x.shape[2] // 3 * 2 : x.shape[2]]
        return x_1, x_2, x_3


class JointEncoder(nn.Module):
    """MHFormer's first stage: tokens are the 34 joint coordinates, features are frames."""

    def __init__(self, depth, frames, tokens, heads=3):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, frames) * 0.02)
        self.blocks = nn.ModuleList([Block(frames, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(frames)

    def forward(self, x):
        x += self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class MHFormerLike(nn.Module):
    def __init__(self, frames=27, n_joints=17, channel=32, hidden=64, layers=3):
        super().__init__()
        self.norm_1 = nn.LayerNorm(frames)
        self.norm_2 = nn.LayerNorm(frames)
        self.Transformer_encoder_1 = JointEncoder(2, frames, 2 * n_joints)
        self.Transformer_encoder_2 = JointEncoder(2, frames, 2 * n_joints)
        self.embedding_1 = nn.Conv1d(2 * n_joints, channel, kernel_size=1)
        self.embedding_2 = nn.Conv1d(2 * n_joints, channel, kernel_size=1)
        self.embedding_3 = nn.Conv1d(2 * n_joints, channel, kernel_size=1)
        self.pos_embed_1 = nn.Parameter(torch.randn(1, frames, channel) * 0.02)
        self.pos_embed_2 = nn.Parameter(torch.randn(1, frames, channel) * 0.02)
        self.pos_embed_3 = nn.Parameter(torch.randn(1, frames, channel) * 0.02)
        self.SHR_blocks = nn.ModuleList([MultiStreamBlock(channel, 4, hidden) for _ in range(layers)])
        self.norm = nn.LayerNorm(channel * 3)
        self.regression = nn.Sequential(nn.BatchNorm1d(channel * 3), nn.Conv1d(channel * 3, 3 * n_joints, kernel_size=1))

    def forward(self, x):
        B, F, J, C = x.shape
        x = rearrange(x, "b f j c -> b (j c) f").contiguous()
        x_1 = x + self.Transformer_encoder_1(self.norm_1(x))
        x_2 = x_1 + self.Transformer_encoder_2(self.norm_2(x_1))
        x_3 = x_2
        x_1 = self.embedding_1(x_1).permute(0, 2, 1).contiguous()
        x_2 = self.embedding_2(x_2).permute(0, 2, 1).contiguous()
        x_3 = self.embedding_3(x_3).permute(0, 2, 1).contiguous()
        x_1 += self.pos_embed_1
        x_2 += self.pos_embed_2
        x_3 += self.pos_embed_3
        for blk in self.SHR_blocks:
            x_1, x_2, x_3 = blk(x_1, x_2, x_3)
        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = self.norm(x)
        x = x.permute(0, 2, 1).contiguous()
        x = self.regression(x)
        x = rearrange(x, "b (j c) f -> b f j c", j=J).contiguous()
        return x


# -------------------------------------------------------------------------- PoseFormer-like


class PoseFormerLike(nn.Module):
    """Spatial blocks on (B·F, J, C), then temporal blocks on (B, F, J·C); per-frame head.
    Uses functional dropout that follows ``self.training``."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=8, depth=3, heads=4, drop_rate=0.1):
        super().__init__()
        embed_dim = dim * num_joints
        self.drop_rate = drop_rate
        self.Spatial_patch_to_embedding = nn.Linear(in_chans, dim)
        self.Spatial_pos_embed = nn.Parameter(torch.randn(1, num_joints, dim) * 0.02)
        self.Temporal_pos_embed = nn.Parameter(torch.randn(1, num_frame, embed_dim) * 0.02)
        self.Spatial_blocks = nn.ModuleList([Block(dim, 2) for _ in range(depth)])
        self.blocks = nn.ModuleList([Block(embed_dim, heads, drop_path=0.1) for _ in range(depth)])
        self.Spatial_norm = nn.LayerNorm(dim)
        self.Temporal_norm = nn.LayerNorm(embed_dim)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, num_joints * 3))

    def Spatial_forward_features(self, x):
        b, _, f, p = x.shape
        x = rearrange(x, "b c f p  -> (b f) p  c")
        x = self.Spatial_patch_to_embedding(x)
        x += self.Spatial_pos_embed
        x = F.dropout(x, p=self.drop_rate, training=self.training)
        for blk in self.Spatial_blocks:
            x = blk(x)
        x = self.Spatial_norm(x)
        x = rearrange(x, "(b f) w c -> b f (w c)", f=f)
        return x

    def forward_features(self, x):
        b = x.shape[0]
        x += self.Temporal_pos_embed
        x = F.dropout(x, p=self.drop_rate, training=self.training)
        for blk in self.blocks:
            x = blk(x)
        x = self.Temporal_norm(x)
        return x

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        b, _, f, p = x.shape
        x = self.Spatial_forward_features(x)
        x = self.forward_features(x)
        x = self.head(x)
        x = x.view(b, f, p, -1)
        return x


# ---------------------------------------------------------- nn.TransformerEncoderLayer based


class EncoderLayerVPT(nn.Module):
    """Temporal-only model on (F, B, C) tokens (``batch_first=False``), a positional
    embedding added before every layer (so one is used after the cut) and the frame count
    written as a literal in a ``view``."""

    def __init__(self, num_frames=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__()
        self.num_frames = num_frames
        self.num_joints = num_joints
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.layer_pos = nn.Parameter(torch.randn(depth, num_frames, 1, dim) * 0.02)
        self.layers = nn.ModuleList(
            [nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1) for _ in range(depth)]
        )
        self.out = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b = x.shape[0]
        x = x.reshape(b, self.num_frames, -1)
        x = self.embed(x).transpose(0, 1)
        for i, layer in enumerate(self.layers):
            x = x + self.layer_pos[i]
            x = layer(x)
        x = self.out(x.transpose(0, 1))
        return x.view(b, self.num_frames, self.num_joints, 3)


# ----------------------------------------------------------------- seq2frame output model


class CenterFrameVPT(nn.Module):
    """Trained seq2frame: (B, F, C) temporal tokens, returns only the centre frame (B, 1, J, 3)
    by collapsing the frames with a learned weighted mean (a Conv1d over the frame axis)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.weighted_mean = nn.Conv1d(num_frame, 1, kernel_size=1)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> b f (j c)"))
        x = x + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        x = self.weighted_mean(x)
        x = self.head(x)
        return x.view(b, 1, j, -1)


ALL = {
    "mixste": (MixSTELike, (2, 27, 17, 2)),
    "motionbert": (MotionBERTLike, (2, 27, 17, 3)),
    "mhformer": (MHFormerLike, (2, 27, 17, 2)),
    "poseformer": (PoseFormerLike, (2, 27, 17, 2)),
    "encoder_layer": (EncoderLayerVPT, (2, 27, 17, 2)),
    "center_frame": (CenterFrameVPT, (2, 27, 17, 2)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = ALL[name]
    torch.manual_seed(seed)
    model = cls().eval()
    return model, torch.randn(shape)
