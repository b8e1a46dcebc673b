"""Lifters built from other people's model code (PyPI packages pinned in the ``corpus`` extra),
each in a thin keypoints-in / poses-out shell: (B, F, J, 2) -> (B, F, J, 3) (or (B, 1, J, 3) for
a model that outputs one frame). The shell is ours (a Linear in, a Linear out, reshapes); the
blocks and, where a package ships one, the whole encoder are theirs, run as installed.

Every class builds a small model with its defaults (``hotpatch.load`` rebuilds it from
``corpus_models:Class``). ``tests/corpus/README.md`` describes each one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from thirdparty import load_file, stub

FRAMES, JOINTS, DIM = 27, 17, 32


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, F, J, 2) -> (B, F, J·2)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _poses(y: torch.Tensor, joints: int = JOINTS) -> torch.Tensor:
    """(B, F, J·3) -> (B, F, J, 3)."""
    return y.reshape(y.shape[0], y.shape[1], joints, 3)


# ------------------------------------------------------------------------- x-transformers


class XTransformersLifter(nn.Module):
    """x-transformers' ``ContinuousTransformerWrapper`` over an ``Encoder``: frames are the
    sequence, the 17 keypoints one token's features (a learned absolute position embedding up to
    ``max_seq_len``, projections in and out: all theirs)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 3, heads: int = 4):
        super().__init__()
        from x_transformers import ContinuousTransformerWrapper, Encoder

        self.net = ContinuousTransformerWrapper(
            dim_in=2 * JOINTS, dim_out=3 * JOINTS, max_seq_len=frames,
            attn_layers=Encoder(dim=dim, depth=depth, heads=heads, attn_dim_head=dim // heads))

    def forward(self, x):
        return _poses(self.net(_flat(x)))


class XTransformersSpaceTime(nn.Module):
    """MixSTE's layout from x-transformers parts: per layer a one-layer ``Encoder`` over the
    joints of each frame, then one over the frames of each joint (rotary positions over time)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 3, heads: int = 4):
        super().__init__()
        from x_transformers import Encoder

        self.embed = nn.Linear(2, dim)
        self.joint_pos = nn.Parameter(torch.randn(1, JOINTS, dim) * 0.02)
        self.spatial = nn.ModuleList([Encoder(dim=dim, depth=1, heads=heads, attn_dim_head=dim // heads)
                                      for _ in range(depth)])
        self.temporal = nn.ModuleList([Encoder(dim=dim, depth=1, heads=heads, attn_dim_head=dim // heads,
                                               rotary_pos_emb=True, verbose=False) for _ in range(depth)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, _ = x.shape
        x = (self.embed(x) + self.joint_pos).reshape(b * f, j, -1)
        for s, t in zip(self.spatial, self.temporal):
            x = s(x)
            x = x.reshape(b, f, j, -1).transpose(1, 2).reshape(b * j, f, -1)
            x = t(x)
            x = x.reshape(b, j, f, -1).transpose(1, 2).reshape(b * f, j, -1)
        return self.head(x).reshape(b, f, j, 3)


# ------------------------------------------------------------------- vit-pytorch (ViViT)


def _vivit():
    return load_file("vit_pytorch.vivit")  # the package __init__ imports torchvision


class ViViTFactorisedSelfAttention(nn.Module):
    """vit-pytorch ViViT's ``FactorizedTransformer``: per layer spatial attention over the joints,
    temporal attention over the frames and a feed-forward, kept as ``ModuleList([attn, attn, ff])``
    and called piecewise by its loop, residual adds in the loop (issue 27 pattern 3)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, JOINTS, dim) * 0.02)
        self.encoder = _vivit().FactorizedTransformer(dim, depth, heads, dim // heads, 2 * dim, use_flash_attn=False)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x) + self.pos))


class ViViTFactorisedEncoder(nn.Module):
    """vit-pytorch ViViT's factorised encoder as a PoseFormer-style lifter: its ``Transformer``
    over the joints of each frame, the joints averaged, its ``Transformer`` over the frames
    (``ModuleList([attn, ff])`` per layer, residuals in the loop), a per-frame head."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        super().__init__()
        vivit = _vivit()
        self.embed = nn.Linear(2, dim)
        self.joint_pos = nn.Parameter(torch.randn(1, JOINTS, dim) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.spatial = vivit.Transformer(dim, depth, heads, dim // heads, 2 * dim, use_flash_attn=False)
        self.temporal = vivit.Transformer(dim, depth, heads, dim // heads, 2 * dim, use_flash_attn=False)
        self.head = nn.Linear(dim, 3 * JOINTS)

    def forward(self, x):
        b, f, j, _ = x.shape
        x = self.spatial((self.embed(x) + self.joint_pos).reshape(b * f, j, -1))
        x = x.reshape(b, f, j, -1).mean(2) + self.frame_pos
        return _poses(self.head(self.temporal(x)))


# ------------------------------------------------------------------------ timesformer-pytorch


class TimeSformerLifter(nn.Module):
    """The whole ``TimeSformer`` (divided space-time attention, rotary positions, a class token);
    the 16 joints of a frame are a 4 x 4 image of 1 x 1 patches with 2 channels. Its output is
    the class token's: the head (``num_classes`` = F·J·3) regresses the clip from one token."""

    joints = 16

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        super().__init__()
        from timesformer_pytorch import TimeSformer

        self.frames = frames
        self.net = TimeSformer(dim=dim, num_frames=frames, num_classes=frames * self.joints * 3, image_size=4,
                               patch_size=1, channels=2, depth=depth, heads=heads, dim_head=dim // heads)

    def forward(self, x):
        b, f = x.shape[:2]
        video = x.reshape(b, f, 4, 4, 2).permute(0, 1, 4, 2, 3)
        return self.net(video).reshape(b, f, self.joints, 3)


# ------------------------------------------------------------------------------------ mmpose


def _mmpose(name: str):
    """An mmpose backbone file; mmpose's ``models`` package imports xtcocotools and more."""
    return load_file(f"mmpose.models.backbones.{name}")


class DSTFormerLifter(nn.Module):
    """mmpose's ``DSTFormer`` backbone (MotionBERT: dual-stream spatio-temporal attention, the
    streams fused by learned weights) with a per-joint head."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        super().__init__()
        self.backbone = _mmpose("dstformer").DSTFormer(in_channels=2, feat_size=dim, depth=depth, num_heads=heads,
                                                       mlp_ratio=2, num_keypoints=JOINTS, seq_len=frames)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        return self.head(self.backbone(x))


class VideoPose3DLifter(nn.Module):
    """mmpose's ``TCN`` backbone (VideoPose3D: dilated temporal convolutions, no attention); the
    27-frame receptive field maps to the centre frame, a 1x1 Conv1d regresses its pose."""

    def __init__(self, frames: int = FRAMES, channels: int = 64):
        super().__init__()
        self.backbone = _mmpose("tcn").TCN(in_channels=2 * JOINTS, stem_channels=channels, num_blocks=2,
                                           kernel_sizes=(3, 3, 3), dropout=0.1)
        self.head = nn.Conv1d(channels, 3 * JOINTS, 1)

    def forward(self, x):
        b = x.shape[0]
        y = self.backbone(_flat(x).transpose(1, 2))[-1]
        return self.head(y).transpose(1, 2).reshape(b, -1, JOINTS, 3)


# ---------------------------------------------------------------------------- diffpose-video


def _timm_drop_path():
    """timm's own ``DropPath`` (its ``layers/drop.py``), standing in for ``timm.models.layers``,
    whose package imports torchvision."""
    return load_file("timm.layers.drop").DropPath


class DiffPoseMixSTE(nn.Module):
    """The ``MixSTE2`` that diffpose-video ships (its own lifter, unchanged: (B, F, J, 2) in,
    (B, F, J, 3) out, stochastic depth 0.2 from timm's DropPath)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 3, heads: int = 4):
        super().__init__()
        drop_path = _timm_drop_path()
        layers = stub("timm.models.layers", DropPath=drop_path)
        module = load_file("diffpose_video.models.mixste", stubs={
            "timm": stub("timm", models=stub("timm.models", layers=layers)),
            "timm.models": stub("timm.models", layers=layers), "timm.models.layers": layers})
        self.net = module.MixSTE2(num_frame=frames, num_joints=JOINTS, embed_dim_ratio=dim, depth=depth, num_heads=heads)

    def forward(self, x):
        return self.net(x)


# ------------------------------------------------- sequence encoders over frames (B, F, C)


class _SequenceLifter(nn.Module):
    """A Linear from the 17 keypoints of a frame to one token, an encoder over the frames, a
    Linear to the frame's 17 joints: the shell of the sequence encoders below."""

    def __init__(self, encoder: nn.Module, dim: int = DIM):
        super().__init__()
        self.embed = nn.Linear(2 * JOINTS, dim)
        self.encoder = encoder
        self.head = nn.Linear(dim, 3 * JOINTS)

    def forward(self, x):
        return _poses(self.head(self.encoder(self.embed(_flat(x)))))


class ConformerLifter(_SequenceLifter):
    """lucidrains' ``Conformer`` (speech): feed-forward halves, attention with Shaw relative
    positions built from ``torch.arange`` of the length, a depthwise Conv1d over time with
    BatchNorm, in each ``ConformerBlock``."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        from conformer import Conformer

        super().__init__(Conformer(dim, depth=depth, dim_head=dim // heads, heads=heads, ff_mult=2,
                                   conv_kernel_size=7), dim)


class LinformerLifter(_SequenceLifter):
    """``Linformer``: keys and values projected along the sequence by (F, k) parameters (k = 8
    here), layers run by its ``SequentialSequence``."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        from linformer import Linformer

        super().__init__(Linformer(dim=dim, seq_len=frames, depth=depth, k=8, heads=heads), dim)


class NystromformerLifter(_SequenceLifter):
    """``Nystromformer``: attention through 8 landmarks (means of segments of the sequence, padded
    to a multiple of the landmarks in ``forward``), a residual depthwise Conv2d over the values."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        from nystrom_attention import Nystromformer

        super().__init__(Nystromformer(dim=dim, depth=depth, dim_head=dim // heads, heads=heads, num_landmarks=8,
                                       attn_values_residual_conv_kernel=7), dim)


class LocalTransformerLifter(_SequenceLifter):
    """local-attention's ``LocalTransformer`` without token embeddings: windowed attention (9
    frames, looking one window back and forward), rotary positions, hyper-connection residual
    streams."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        from local_attention import LocalTransformer

        super().__init__(LocalTransformer(num_tokens=None, max_seq_len=frames, dim=dim, depth=depth, causal=False,
                                          local_attn_window_size=9, dim_head=dim // heads, heads=heads,
                                          ff_mult=2), dim)


class PerformerLifter(_SequenceLifter):
    """``Performer``: FAVOR+ linear attention through random features (no (F, F) matrix), the
    feature projection redrawn every so many calls in training."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        from performer_pytorch import Performer

        super().__init__(Performer(dim=dim, depth=depth, heads=heads, dim_head=dim // heads, causal=False,
                                   nb_features=16, ff_mult=2), dim)



class MambaLifter(_SequenceLifter):
    """mambapy's pure-PyTorch ``Mamba``: per layer a causal depthwise Conv1d over time and a
    selective state-space scan run as a ``torch.autograd.Function`` (parallel scan over the
    sequence padded to a power of two); no attention (issue 27 pattern 7)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2):
        from mambapy.mamba import Mamba, MambaConfig

        super().__init__(Mamba(MambaConfig(d_model=dim, n_layers=depth, d_state=8, expand_factor=2)), dim)

# ------------------------------------------------------------- torch.nn's own blocks


class TorchEncoderSeqFirst(nn.Module):
    """``nn.TransformerEncoder`` in its default (L, B, C) order with a sine position table and a
    key padding mask built in ``forward`` from the clip length (issue 27 pattern 1)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 3, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(2 * JOINTS, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 3 * JOINTS)

    def forward(self, x):
        b, f = x.shape[:2]
        position = torch.arange(f, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, self.embed.out_features, 2) * (-9.2103 / self.embed.out_features))
        table = torch.zeros(f, self.embed.out_features)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)
        tokens = self.embed(_flat(x)).transpose(0, 1) + table[:, None]
        padding = torch.zeros(b, f, dtype=torch.bool)
        y = self.encoder(tokens, src_key_padding_mask=padding)
        return _poses(self.head(y.transpose(0, 1)))


class TorchMultiheadSpaceTime(nn.Module):
    """Blocks of ``nn.MultiheadAttention`` (batch_first) and an MLP, spatial over joints then
    temporal over frames, the temporal ones given a key padding mask of ones(batch, frames)."""

    def __init__(self, frames: int = FRAMES, dim: int = DIM, depth: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(_MhaBlock(dim, heads) for _ in range(2 * depth))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, _ = x.shape
        x = self.embed(x) + self.pos
        valid = x.new_ones(b, f).bool()
        for i, block in enumerate(self.blocks):
            if i % 2 == 0:
                x = block(x.reshape(b * f, j, -1)).reshape(b, f, j, -1)
            else:
                mask = ~valid.repeat_interleave(j, 0)
                x = block(x.transpose(1, 2).reshape(b * j, f, -1), mask).reshape(b, j, f, -1).transpose(1, 2)
        return self.head(x)


class _MhaBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, key_padding_mask=None):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))
