"""Small VPTs written the way recent diffusion-based and U-shaped lifters are (issue 19).

* :class:`HypothesisVPT` — a D3DP-style denoiser: H hypotheses of each clip
  ``(B, H, F, J, C)`` merged with the batch, then with frames for spatial blocks
  ``(B·H·F, J, C)`` and with joints for temporal ones ``(B·H·J, F, C)`` (einops).
* :class:`HypothesisViewVPT` — the same with the factors in another order, by
  ``permute``/``reshape``: ``(B·F·H, J, C)`` for spatial blocks and ``(B·H·J, F, C)``.
* :class:`InplaceVPT` — item assignment in the traced forward: ``x[..., :2] = ...`` and
  ``x[mask] = 0`` on the input, ``x[:, :, idx] += emb`` before the blocks,
  ``x[:, f // 2] += token`` and ``x[:, 18:] = ...`` (writes indexed by frames) after the cut, ``x[..., :2] = y``
  on the output, and a write inside each block.
* :class:`SlicedPosVPT` — a second stage adds ``self.pos_embedding[:, :x.shape[1]]``
  (a (1, F, C) frame embedding sliced to the current length) to the pruned tokens.
* :class:`ContextVPT` — a per-frame context computed once before the blocks from the frame
  positions and fed to every temporal block as a second argument (``blk(x, ctx)``);
  :class:`SpatioTemporalContextVPT` the same in MixSTE's layouts, the context expanded to the batch.
* :class:`UNetPoseNet` — attention only within a frame (over joints); frames mixed by a
  strided Conv2d down and a ConvTranspose2d up (a U-shaped encoder-decoder): no temporal
  transformer block, so hotpatch must refuse it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from author_vpts import Attention, Block, Mlp


# --------------------------------------------------------------------------- (b) hypotheses


class HypothesisVPT(nn.Module):
    """Spatial and temporal blocks over H hypotheses of each clip; returns (B, H, F, J, 3)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4, hypotheses=5):
        super().__init__()
        self.hypotheses, self.depth = hypotheses, depth
        self.embed = nn.Linear(in_chans, dim)
        self.hyp_embed = nn.Parameter(torch.randn(1, hypotheses, 1, 1, dim) * 0.5)
        self.spatial_pos = nn.Parameter(torch.randn(1, num_joints, dim) * 0.02)
        self.temporal_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.spatial = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.temporal = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        h = self.hypotheses
        x = self.embed(x)[:, None] + self.hyp_embed  # (B, H, F, J, C)
        x = rearrange(x, "b h f j c -> (b h) f j c")
        x = rearrange(x, "bh f j c -> (bh f) j c") + self.spatial_pos
        x = self.spatial[0](x)
        x = rearrange(x, "(bh f) j c -> (bh j) f c", f=f) + self.temporal_pos
        x = self.temporal[0](x)
        for i in range(1, self.depth):
            x = rearrange(x, "(bh j) f c -> (bh f) j c", j=j)
            x = self.spatial[i](x)
            x = rearrange(x, "(bh f) j c -> (bh j) f c", f=f)
            x = self.temporal[i](x)
        x = self.head(self.norm(x))
        return rearrange(x, "(b h j) f c -> b h f j c", h=h, j=j)


class HypothesisViewVPT(HypothesisVPT):
    """:class:`HypothesisVPT` written with permute/reshape, hypotheses inside the frames."""

    def forward(self, x):
        b, f, j, c = x.shape
        h = self.hypotheses
        x = self.embed(x)[:, :, None] + self.hyp_embed.transpose(1, 2)  # (B, F, H, J, C)
        x = x.reshape(b * f * h, j, -1) + self.spatial_pos
        x = self.spatial[0](x)
        x = x.reshape(b, f, h, j, -1).permute(0, 2, 3, 1, 4).reshape(b * h * j, f, -1)
        x = x + self.temporal_pos
        x = self.temporal[0](x)
        for i in range(1, self.depth):
            x = x.reshape(b, h, j, f, -1).permute(0, 3, 1, 2, 4).reshape(b * f * h, j, -1)
            x = self.spatial[i](x)
            x = x.reshape(b, f, h, j, -1).permute(0, 2, 3, 1, 4).reshape(b * h * j, f, -1)
            x = self.temporal[i](x)
        x = self.head(self.norm(x))
        return x.reshape(b, h, j, f, 3).permute(0, 1, 3, 2, 4)


# --------------------------------------------------------------------------- (c) in-place writes


class WritingBlock(Block):
    """A block that overwrites part of its attention's output in place."""

    def forward(self, x):
        y = self.attn(self.norm1(x))
        y[..., :4] = y[..., :4] * 0.5
        x = x + y
        return x + self.mlp(self.norm2(x))


class InplaceVPT(nn.Module):
    TORSO = (0, 1, 4, 7, 8)

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.depth = depth
        self.embed = nn.Linear(in_chans, dim)
        self.register_buffer("torso", torch.tensor(self.TORSO))
        self.torso_embed = nn.Parameter(torch.randn(len(self.TORSO), dim) * 0.1)
        self.centre_token = nn.Parameter(torch.randn(num_joints, dim) * 0.1)
        self.temporal_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.spatial = nn.ModuleList([WritingBlock(dim, heads) for _ in range(depth)])
        self.temporal = nn.ModuleList([WritingBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = x.clone()
        x[..., :2] = x[..., :2] - x[:, :, :1, :2]  # root-relative, in place
        x[x.abs() > 1e3] = 0  # masked write
        x = self.embed(x)
        x[:, :, self.torso] += self.torso_embed  # joint-indexed write
        for i in range(self.depth):
            x = rearrange(x, "b f j c -> (b f) j c")
            x = self.spatial[i](x)
            x = rearrange(x, "(b f) j c -> (b j) f c", f=f)
            if i == 0:
                x = x + self.temporal_pos
            x = self.temporal[i](x)
            x = rearrange(x, "(b j) f c -> b f j c", j=j)
            t = x.shape[1]
            x[:, t // 2] += self.centre_token  # indexed by frames (after the cut too)
            x[:, 18:] = x[:, 18:] * 0.5  # a literal frame boundary: the last third of the clip
        x = self.head(self.norm(x))
        x[..., :2] = x[..., :2] + x[..., 2:]  # a write on the output
        return x


# --------------------------------------------------------------------------- (d) sliced embedding


class SlicedPosVPT(nn.Module):
    """Two stages of temporal blocks, each adding its own (1, F, C) frame embedding; the second
    slices it to the length it receives (``pos[:, :x.shape[1]]``)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.5)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_frame, dim) * 0.5)
        self.encoder = nn.ModuleList([Block(dim, heads) for _ in range(depth // 2)])
        self.decoder = nn.ModuleList([Block(dim, heads) for _ in range(depth - depth // 2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.encoder:
            x = blk(x)
        x = x + self.pos_embedding[:, : x.shape[1]]
        for blk in self.decoder:
            x = blk(x)
        return self.head(self.norm(x)).reshape(b, f, j, 3)


# --------------------------------------------------------------------------- (e) side context


class ContextBlock(nn.Module):
    """A temporal block conditioned on a per-frame context: ``blk(x, ctx)``; a context with
    fewer rows than ``x`` (one per sample, ``x`` one per sample and joint) is repeated."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)
        self.ctx = nn.Linear(dim, dim)

    def forward(self, x, ctx):
        ctx = self.ctx(ctx)
        if 1 < ctx.shape[0] < x.shape[0]:
            ctx = ctx.repeat_interleave(x.shape[0] // ctx.shape[0], dim=0)
        x = x + self.attn(self.norm1(x + ctx))
        return x + self.mlp(self.norm2(x))


def frame_encoding(num_frame: int, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of the frame positions, (1, F, dim)."""
    pos = torch.arange(num_frame, dtype=torch.float32)[:, None]
    freq = torch.exp(-torch.arange(0, dim, 2, dtype=torch.float32) * (4.0 / dim))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)[None]


class ContextVPT(nn.Module):
    """Tokens (B, F, C); a per-frame context (1, F, C) computed once from the frame positions
    (an MLP on a sinusoidal encoding, as diffusion lifters embed time) and fed to every block."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.register_buffer("frame_code", frame_encoding(num_frame, dim))
        self.context = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList([ContextBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        ctx = self.context(self.frame_code)
        for blk in self.blocks:
            x = blk(x, ctx)
        return self.head(self.norm(x)).reshape(b, f, j, 3)


class SpatioTemporalContextVPT(nn.Module):
    """MixSTE-like (B·F, J, C) / (B·J, F, C) blocks; the per-frame context is expanded to the
    batch, (B, F, C), and each temporal block repeats it over the joints."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.depth = depth
        self.embed = nn.Linear(in_chans, dim)
        self.frame_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.5)
        self.context = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.spatial = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.temporal = nn.ModuleList([ContextBlock(dim, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3))

    def forward(self, x):
        b, f, j, c = x.shape
        ctx = self.context(self.frame_pos).expand(b, -1, -1)
        x = self.embed(x)
        for i in range(self.depth):
            x = self.spatial[i](rearrange(x, "b f j c -> (b f) j c"))
            x = rearrange(x, "(b f) j c -> (b j) f c", f=f)
            x = self.temporal[i](x, ctx)
            x = rearrange(x, "(b j) f c -> b f j c", j=j)
        return self.head(x)


# --------------------------------------------------------------------------- (f) U-shaped


class UNetPoseNet(nn.Module):
    """Attention over the joints of each frame; frames mixed only by a stride-(3, 1) Conv2d
    down and a ConvTranspose2d up, with BatchNorm2d (a U-shaped encoder-decoder)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__()
        self.embed = nn.Linear(in_chans, dim)
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList([Block(dim, heads) for _ in range(depth)])})
        self.down = nn.Conv2d(dim, dim, kernel_size=(3, 1), stride=(3, 1))
        self.bn = nn.BatchNorm2d(dim)
        self.decoder = nn.ModuleDict({"layers": nn.ModuleList([Block(dim, heads) for _ in range(depth)])})
        self.up = nn.ConvTranspose2d(dim, dim, kernel_size=(3, 1), stride=(3, 1))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(self.embed(x), "b f j c -> (b f) j c")
        for blk in self.encoder["layers"]:
            x = blk(x)
        x = rearrange(x, "(b f) j c -> b c f j", b=b)
        x = torch.relu(self.bn(self.down(x)))
        t = x.shape[2]
        x = rearrange(x, "b c t j -> (b t) j c")
        for blk in self.decoder["layers"]:
            x = blk(x)
        x = self.up(rearrange(x, "(b t) j c -> b c t j", t=t))
        return self.head(rearrange(x, "b c f j -> b f j c"))


ALL = {
    "hypothesis": (HypothesisVPT, (2, 27, 17, 2)),
    "hypothesis_view": (HypothesisViewVPT, (2, 27, 17, 2)),
    "inplace": (InplaceVPT, (2, 27, 17, 2)),
    "sliced_pos": (SlicedPosVPT, (2, 27, 17, 2)),
    "context": (ContextVPT, (2, 27, 17, 2)),
    "st_context": (SpatioTemporalContextVPT, (2, 27, 17, 2)),
}
REFUSED = {"unet": (UNetPoseNet, (2, 27, 17, 2))}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = {**ALL, **REFUSED}[name]
    torch.manual_seed(seed)
    model = cls().eval()
    return model, torch.randn(shape)


class TemporalConvBlock(Block):
    """Attention over the joints of each frame, then a depthwise Conv1d over frames."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.tconv = nn.Conv1d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, b):
        x = x + self.attn(self.norm1(x))
        t = x.shape[0] // b
        y = rearrange(x, "(b t) j c -> (b j) c t", b=b)
        x = x + rearrange(self.tconv(y), "(b j) c t -> (b t) j c", t=t, b=b)
        return x + self.mlp(self.norm2(x))


class UNetConvPoseNet(UNetPoseNet):
    """:class:`UNetPoseNet` whose blocks also mix neighbouring frames by a depthwise Conv1d."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4):
        super().__init__(num_frame, num_joints, in_chans, dim, depth, heads)
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList([TemporalConvBlock(dim, heads) for _ in range(depth)])})
        self.decoder = nn.ModuleDict({"layers": nn.ModuleList([TemporalConvBlock(dim, heads) for _ in range(depth)])})

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(self.embed(x), "b f j c -> (b f) j c")
        for blk in self.encoder["layers"]:
            x = blk(x, b)
        x = rearrange(x, "(b f) j c -> b c f j", b=b)
        x = torch.relu(self.bn(self.down(x)))
        t = x.shape[2]
        x = rearrange(x, "b c t j -> (b t) j c")
        for blk in self.decoder["layers"]:
            x = blk(x, b)
        x = self.up(rearrange(x, "(b t) j c -> b c t j", t=t))
        return self.head(rearrange(x, "b c f j -> b f j c"))


REFUSED["unet_conv"] = (UNetConvPoseNet, (2, 27, 17, 2))
