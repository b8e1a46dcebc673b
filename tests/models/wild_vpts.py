"""VPT code in the styles found in the wild, beyond tests/models/author_vpts.py.

Patterns: Python branches on the input's rank and sizes at the top of ``forward``; a helper from
a small package that torch.fx cannot trace (a DCT over time that loops over ``x.shape``); a
submodule whose ``forward`` iterates a tensor; and lifters that are not transformers (a
VideoPose3D-style temporal convolution net, a GCN and an MLP) which HoT cannot patch.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

import wild_dct
from author_vpts import Block

# ------------------------------------------------------------- branches on the input's shape


class ShapeBranchVPT(nn.Module):
    """Accepts (F, J, C) or (B, F, J, C), 2D keypoints with or without the detector's
    confidence; spatial (B·F, J, C) and temporal (B·J, F, C) blocks, MixSTE-style."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.num_frame = num_frame
        self.joint_embed = nn.Linear(2, dim)
        self.spatial_pos = nn.Parameter(torch.randn(1, num_joints, dim) * 0.02)
        self.temporal_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.s_blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.t_blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        if len(x.shape) == 3:  # a single clip (F, J, C)
            x = x[None, :]
        if x.dim() == 5:  # (B, F, J, C, M): keep the first person
            x = x[..., 0]
        b, f, j, c = x.shape
        if c == 3:  # (x, y, confidence): the confidence is not used
            x = x[..., :2]
        if x.shape[-1] != 2:
            raise ValueError("expected 2D keypoints")
        if f != self.num_frame:  # resample the clip to the trained length
            x = F.interpolate(rearrange(x, "b f j c -> b (j c) f"), size=self.num_frame, mode="linear")
            x = rearrange(x, "b (j c) f -> b f j c", j=j)
            f = self.num_frame
        x = self.joint_embed(x) + self.spatial_pos
        x = rearrange(x, "b f j c -> (b j) f c") + self.temporal_pos
        x = rearrange(x, "(b j) f c -> (b f) j c", j=j)
        for s_blk, t_blk in zip(self.s_blocks, self.t_blocks):
            x = s_blk(x)
            x = rearrange(x, "(b f) j c -> (b j) f c", f=f)
            x = t_blk(x)
            x = rearrange(x, "(b j) f c -> (b f) j c", j=j)
        x = self.head(self.norm(x))
        return rearrange(x, "(b f) j c -> b f j c", f=f)


class BatchBranchVPT(nn.Module):
    """Branches on the batch size, which changes at run time: cannot be decided once."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=2, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        if b == 1:  # single-clip inference: average with the flipped clip
            x = torch.cat([x, x.flip(1)])
        x = self.embed(x.reshape(x.shape[0], f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)[:b].view(b, f, j, 3)


class InnerFrameBranchVPT(nn.Module):
    """Branches on the frame count of the tokens between blocks (after the cut it would be f)."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for blk in self.blocks:
            if x.shape[1] == self.pos_embed.shape[1]:
                x = x + self.pos_embed
            x = blk(x)
        return self.head(x).view(b, f, j, 3)


# ------------------------------------------------- an untraceable helper from another package


class FreqVPT(nn.Module):
    """Temporal blocks on frames, then a DCT over time and blocks on the frequency
    coefficients (PoseFormerV2-style), then the inverse DCT and a per-frame head."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.time_blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.time_norm = nn.LayerNorm(dim)
        self.freq_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.freq_blocks = nn.ModuleList([Block(dim, heads) for _ in range(2)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> b f (j c)")) + self.pos_embed
        for blk in self.time_blocks:
            x = blk(x)
        x = self.time_norm(x)
        x = wild_dct.dct(x, dim=1) + self.freq_embed
        for blk in self.freq_blocks:
            x = blk(x)
        x = wild_dct.idct(x, dim=1)
        return self.head(x).view(b, f, j, 3)


class FreqOnlyVPT(nn.Module):
    """Every block works on DCT coefficients of the clip: no block sees frames."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.freq_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = wild_dct.dct(x.reshape(b, f, j * c), dim=1)
        x = self.embed(x) + self.freq_embed
        for blk in self.blocks:
            x = blk(x)
        x = wild_dct.idct(self.head(x), dim=1)
        return x.view(b, f, j, 3)


# ----------------------------------------------- a submodule whose forward iterates a tensor


class RootRelative(nn.Module):
    """Per frame: joints relative to the root joint, scaled by a learned factor."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        frames = []
        for pose in x.unbind(1):  # iterates a tensor: fx cannot follow this loop
            frames.append((pose - pose[:, :1]) * self.scale)
        return torch.stack(frames, dim=1)


class IterNormVPT(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.normalise = RootRelative()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frame, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.normalise(x)
        x = self.embed(x.flatten(2)) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x).reshape(b, f, j, 3)


class GuardedEncoder(nn.Module):
    """Holds the blocks and branches on tensor values: it cannot be kept opaque."""

    def __init__(self, dim=32, depth=3, heads=4):
        super().__init__()
        self.layers = nn.ModuleList([Block(dim, heads) for _ in range(depth)])

    def forward(self, x):
        if torch.isnan(x).any():
            return x
        for layer in self.layers:
            x = layer(x)
        return x


class GuardedEncoderVPT(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, dim=32):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_frame, dim))
        self.encoder = GuardedEncoder(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.encoder(self.embed(x.reshape(b, f, -1)) + self.pos_embed)
        return self.head(x).view(b, f, j, 3)


# -------------------------------------------------------------- lifters that are not transformers


class TemporalConvNet(nn.Module):
    """VideoPose3D's TCN: dilated Conv1d over frames, each output frame from a window."""

    def __init__(self, num_joints_in=17, in_features=2, num_joints_out=17, filter_widths=(3, 3, 3),
                 dropout=0.25, channels=64):
        super().__init__()
        self.num_joints_in = num_joints_in
        self.in_features = in_features
        self.num_joints_out = num_joints_out
        self.filter_widths = filter_widths
        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.pad = [filter_widths[0] // 2]
        self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, filter_widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)
        layers_conv, layers_bn = [], []
        next_dilation = filter_widths[0]
        for i in range(1, len(filter_widths)):
            self.pad.append((filter_widths[i] - 1) * next_dilation // 2)
            layers_conv.append(nn.Conv1d(channels, channels, filter_widths[i], dilation=next_dilation, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            layers_conv.append(nn.Conv1d(channels, channels, 1, dilation=1, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            next_dilation *= filter_widths[i]
        self.layers_conv = nn.ModuleList(layers_conv)
        self.layers_bn = nn.ModuleList(layers_bn)

    def forward(self, x):
        assert len(x.shape) == 4
        assert x.shape[-2] == self.num_joints_in
        assert x.shape[-1] == self.in_features
        sz = x.shape[:3]
        x = x.view(x.shape[0], x.shape[1], -1)
        x = x.permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            pad = self.pad[i + 1]
            res = x[:, :, pad: x.shape[2] - pad]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x)
        x = x.permute(0, 2, 1)
        x = x.view(sz[0], -1, self.num_joints_out, 3)
        return x


class GraphConv(nn.Module):
    def __init__(self, adj, in_dim, out_dim):
        super().__init__()
        self.register_buffer("adj", adj / adj.sum(-1, keepdim=True))
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x):  # (B, F, J, C)
        return torch.einsum("ij,bfjc->bfic", self.adj, self.linear(x))


class ResGraphBlock(nn.Module):
    def __init__(self, adj, dim):
        super().__init__()
        self.gconv1 = GraphConv(adj, dim, dim)
        self.gconv2 = GraphConv(adj, dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return x + self.gconv2(F.relu(self.gconv1(self.norm(x))))


class GCNLifter(nn.Module):
    """A SemGCN-style lifter: graph convolutions over the skeleton, frame by frame."""

    def __init__(self, num_joints=17, dim=32, depth=3):
        super().__init__()
        adj = torch.eye(num_joints) + torch.diag(torch.ones(num_joints - 1), 1) + torch.diag(torch.ones(num_joints - 1), -1)
        self.input = GraphConv(adj, 2, dim)
        self.layers = nn.Sequential(*[ResGraphBlock(adj, dim) for _ in range(depth)])
        self.output = GraphConv(adj, dim, 3)

    def forward(self, x):
        return self.output(self.layers(F.relu(self.input(x))))


class LinearStage(nn.Module):
    def __init__(self, dim, p=0.5):
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.bn1 = nn.BatchNorm1d(dim)
        self.w2 = nn.Linear(dim, dim)
        self.bn2 = nn.BatchNorm1d(dim)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        y = self.dropout(F.relu(self.bn1(self.w1(x))))
        y = self.dropout(F.relu(self.bn2(self.w2(y))))
        return x + y


class MLPLifter(nn.Module):
    """Martinez et al.'s simple baseline on a whole clip flattened into one vector."""

    def __init__(self, num_frame=27, num_joints=17, dim=128, stages=2):
        super().__init__()
        self.num_joints = num_joints
        self.w1 = nn.Linear(num_frame * num_joints * 2, dim)
        self.stages = nn.ModuleList([LinearStage(dim) for _ in range(stages)])
        self.w2 = nn.Linear(dim, num_frame * num_joints * 3)

    def forward(self, x):
        b, f = x.shape[:2]
        y = self.w1(x.reshape(b, -1))
        for stage in self.stages:
            y = stage(y)
        return self.w2(y).view(b, f, self.num_joints, 3)


# ---------------------------------------------------------------- more shape idioms


def _root_centre(x):
    """The author's own helper next to the model: loops over a tensor's joints."""
    joints = [x[:, :, k] - x[:, :, :1].squeeze(2) for k in range(len(x[0, 0]))]
    return torch.stack(joints, dim=2)


class StarUnpackVPT(nn.Module):
    """``*_, c = x.shape``, a loop over ``x.shape`` and an own untraceable helper."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        *lead, j, c = x.shape
        sizes = [s for s in x.shape]
        x = _root_centre(x)
        x = self.embed(x.reshape(sizes[0], sizes[1], j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(x).view(*lead, j, 3)


class PoseHead(nn.Module):
    """A head that serves seq2seq and seq2frame models: branches on the token count."""

    def __init__(self, dim, num_joints):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.shape[1] == 1:  # a single (centre) frame
            return self.fc(self.norm(x[:, 0]))
        return self.fc(self.norm(x))


class HeadBranchVPT(nn.Module):
    """Branches after the blocks: on the rank and width of the tokens (fixed) in ``forward``,
    on the frame count inside the head (which then stays one opaque call)."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.head = PoseHead(dim, num_joints)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        if x.dim() == 3 and x.shape[-1] == self.pos_embed.shape[-1]:
            x = x.contiguous()
        return self.head(x).view(b, f, j, 3)


class MixerBlock(nn.Module):
    """MLP-Mixer: a token MLP across the frames (weights sized by F), then a channel MLP."""

    def __init__(self, num_frame, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_fc1 = nn.Linear(num_frame, 2 * num_frame)
        self.token_fc2 = nn.Linear(2 * num_frame, num_frame)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_fc1 = nn.Linear(dim, 2 * dim)
        self.channel_fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        y = self.norm1(x).transpose(1, 2)
        x = x + self.token_fc2(F.gelu(self.token_fc1(y))).transpose(1, 2)
        return x + self.channel_fc2(F.gelu(self.channel_fc1(self.norm2(x))))


class MixerLifter(nn.Module):
    """An MLP-only lifter that mixes frames with MLPs instead of attention."""

    def __init__(self, num_frame=27, num_joints=17, dim=32, depth=3):
        super().__init__()
        self.embed = nn.Linear(num_joints * 2, dim)
        self.blocks = nn.ModuleList([MixerBlock(num_frame, dim) for _ in range(depth)])
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, -1))
        for blk in self.blocks:
            x = blk(x)
        return self.head(x).view(b, f, j, 3)


PATCHABLE = {
    "shape_branch": (ShapeBranchVPT, (2, 27, 17, 3)),
    "freq": (FreqVPT, (2, 27, 17, 2)),
    "iter_norm": (IterNormVPT, (2, 27, 17, 2)),
    "star_unpack": (StarUnpackVPT, (2, 27, 17, 2)),
    "head_branch": (HeadBranchVPT, (2, 27, 17, 2)),
}

NOT_TRANSFORMERS = {
    "tcn": (TemporalConvNet, (2, 27, 17, 2)),
    "gcn": (GCNLifter, (2, 27, 17, 2)),
    "mlp": (MLPLifter, (2, 27, 17, 2)),
    "mixer": (MixerLifter, (2, 27, 17, 2)),
}

ALL = {
    **PATCHABLE,
    **NOT_TRANSFORMERS,
    "batch_branch": (BatchBranchVPT, (2, 27, 17, 2)),
    "inner_frame_branch": (InnerFrameBranchVPT, (2, 27, 17, 2)),
    "freq_only": (FreqOnlyVPT, (2, 27, 17, 2)),
    "guarded_encoder": (GuardedEncoderVPT, (2, 27, 17, 2)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = ALL[name]
    torch.manual_seed(seed)
    model = cls().eval()
    return model, torch.randn(shape)
