"""Small VPTs that use the frame count the way real code does beyond sizes and embeddings.

* :class:`GraphFormer` — temporal graph convolutions between transformer blocks, called from
  the model's forward: an (F, F) adjacency buffer (``adj @ x``), ``BatchNorm1d(F)`` on
  (B, F, C) tokens, and a key-frame memory from ``x.topk(k, dim=1)`` with a fixed k.
* :class:`MixerFormer` — blocks that mix time inside themselves (opaque leaf blocks): an
  MLP-Mixer token MLP ``Linear(F, 2F) -> Linear(2F, F)`` on (B, C, F), and a temporal
  ``Conv1d(F, F, 1)`` + ``BatchNorm1d(F)`` with frames as channels.
* :class:`AdjacencyFormer` — the same inside opaque blocks: an (F, F) adjacency buffer in
  ``torch.matmul(self.adj, x)`` and a fixed-k ``topk`` over frames in the block's forward.
* :class:`StridedFormer` — stages on F, F/3, F/9 tokens joined by stride-3 ``Conv1d``, each
  with its own (1, F/3**i, C) positional embedding; returns the centre frame.
  :class:`FunctionalStridedFormer`, :class:`AvgPoolStridedFormer` and
  :class:`FunctionalAvgPoolStridedFormer` join the stages with ``F.conv1d`` / ``F.max_pool1d``,
  ``nn.AvgPool1d`` and ``F.avg_pool1d``.
* :class:`SegmentFormer` — splits of the frame axis: ``T // 3`` slices, ``chunk``, ``split``
  and a literal ``x[:, :9]``.
* :class:`WindowFormer` — splits inside opaque blocks: windowed attention through
  ``rearrange(x, "b (w t) c -> (b w) t c", w=3)`` and a literal ``x[:, :F // 3]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from author_vpts import Attention, Block, DropPath, Mlp


def chain_adjacency(num_frame: int) -> torch.Tensor:
    """Row-normalised adjacency of the frame chain (each frame and its two neighbours)."""
    adj = torch.eye(num_frame)
    idx = torch.arange(num_frame - 1)
    adj[idx, idx + 1] = 1
    adj[idx + 1, idx] = 1
    return adj / adj.sum(dim=1, keepdim=True)


# --------------------------------------------------------------------------- GraphFormer


class TemporalGCN(nn.Module):
    """One graph convolution over the frame chain: x (B, F, C) -> BN(adj @ W x)."""

    def __init__(self, num_frame, dim):
        super().__init__()
        self.register_buffer("adj", chain_adjacency(num_frame))
        self.fc = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(num_frame)

    def forward(self, x):
        x = self.adj @ self.fc(x)
        return F.gelu(self.bn(x))


class GraphFormer(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=4, heads=4, num_key=12):
        super().__init__()
        self.num_key = num_key
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.gcns = nn.ModuleList([TemporalGCN(num_frame, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def key_memory(self, x):
        b, f, c = x.shape
        score = x.norm(dim=-1)
        idx = score.topk(self.num_key, dim=1).indices
        key = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, c))
        return x + key.mean(dim=1, keepdim=True)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> b f (j c)"))
        x = x + self.pos_embed
        for blk, gcn in zip(self.blocks, self.gcns):
            x = blk(x)
            x = x + gcn(x)
            x = self.key_memory(x)
        x = self.head(self.norm(x))
        return x.view(b, f, j, 3)


# --------------------------------------------------------------------------- MixerFormer


class MixerBlock(nn.Module):
    """Attention, then an MLP-Mixer token MLP along time, then a channel MLP."""

    def __init__(self, dim, num_frame, heads, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm_t = nn.LayerNorm(dim)
        self.token_mlp = Mlp(num_frame, num_frame * 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.token_mlp(self.norm_t(x).transpose(1, 2)).transpose(1, 2))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class TCNBlock(nn.Module):
    """Attention and MLP, plus a temporal 1x1 convolution with frames as channels."""

    def __init__(self, dim, num_frame, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.tconv = nn.Conv1d(num_frame, num_frame, kernel_size=1)
        self.tbn = nn.BatchNorm1d(num_frame)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + F.relu(self.tbn(self.tconv(x)))
        x = x + self.mlp(self.norm2(x))
        return x


class MixerFormer(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=2, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.temporal_pos = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        layers = []
        for _ in range(depth):
            layers += [MixerBlock(dim, num_frame, heads), TCNBlock(dim, num_frame, heads)]
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = rearrange(x, "b f j c -> b f (j c)")
        x = self.embed(x) + self.temporal_pos
        for layer in self.layers:
            x = layer(x)
        x = self.head(self.norm(x))
        return rearrange(x, "b f (j c) -> b f j c", j=j)


# ----------------------------------------------------------------------- AdjacencyFormer


class GraphBlock(nn.Module):
    """A block with attention, a graph convolution over the frame chain (its own (F, F)
    adjacency buffer) and a key-frame memory from a fixed-k top-k, all inside its forward."""

    def __init__(self, dim, num_frame, heads, num_key=12):
        super().__init__()
        self.num_key = num_key
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.register_buffer("adj", chain_adjacency(num_frame))
        self.gcn = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x):
        B, T, C = x.shape
        x = x + self.attn(self.norm1(x))
        x = x + torch.matmul(self.adj, self.gcn(x))
        idx = x.norm(dim=-1).topk(self.num_key, dim=1).indices
        x = x + torch.gather(x, 1, idx[..., None].expand(-1, -1, C)).mean(dim=1, keepdim=True)
        return x + self.mlp(self.norm2(x))


class AdjacencyFormer(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([GraphBlock(dim, num_frame, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> b f (j c)")) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, f, j, 3)


# --------------------------------------------------------------------------- StridedFormer


class StridedFormer(nn.Module):
    """Strided-Transformer style: stages on F, F/3 and F/9 tokens joined by stride-3 temporal
    convolutions, each stage with its own positional embedding; returns the centre frame."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, heads=4, stride=3, depths=(2, 2, 1)):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        lengths = [num_frame // stride**i for i in range(len(depths))]
        self.pos_embeds = nn.ParameterList([nn.Parameter(torch.randn(1, t, dim) * 0.02) for t in lengths])
        self.stages = nn.ModuleList([nn.ModuleList([Block(dim, heads) for _ in range(d)]) for d in depths])
        self.reduce = nn.ModuleList(
            [nn.Conv1d(dim, dim, kernel_size=stride, stride=stride) for _ in range(len(depths) - 1)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.reduce[i - 1](x.permute(0, 2, 1)).permute(0, 2, 1)
            x = x + self.pos_embeds[i]
            for blk in blocks:
                x = blk(x)
        x = self.norm(x)
        x = x[:, x.shape[1] // 2]
        return self.head(x).view(b, 1, j, 3)


class FunctionalStridedFormer(StridedFormer):
    """StridedFormer with functional reductions: ``F.conv1d`` (its own weight) from F to F/3,
    ``F.max_pool1d`` from F/3 to F/9."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, heads=4):
        super().__init__(num_frame, num_joints, in_chans, dim, heads)
        del self.reduce
        self.weight = nn.Parameter(torch.randn(dim, dim, 3) * 0.1)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for i, blocks in enumerate(self.stages):
            if i == 1:
                x = F.conv1d(x.transpose(1, 2), self.weight, self.bias, stride=3).transpose(1, 2)
            elif i == 2:
                x = F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=3).transpose(1, 2)
            x = x + self.pos_embeds[i]
            for blk in blocks:
                x = blk(x)
        x = self.norm(x)
        return self.head(x[:, x.shape[1] // 2]).view(b, 1, j, 3)


class AvgPoolStridedFormer(StridedFormer):
    """StridedFormer whose stages are joined by ``nn.AvgPool1d(3, stride=3)`` over the frames
    (pooling instead of a convolution, as in pooled hierarchical lifters)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, heads=4, stride=3, depths=(2, 2, 1)):
        super().__init__(num_frame, num_joints, in_chans, dim, heads, stride, depths)
        self.reduce = nn.ModuleList([nn.AvgPool1d(kernel_size=stride, stride=stride) for _ in range(len(depths) - 1)])


class FunctionalAvgPoolStridedFormer(StridedFormer):
    """StridedFormer with functional pooling: ``F.avg_pool1d`` with stride 3 from F to F/3
    (keyword arguments) and from F/3 to F/9 (positional, the stride left to default to the
    kernel size)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, heads=4):
        super().__init__(num_frame, num_joints, in_chans, dim, heads)
        del self.reduce

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for i, blocks in enumerate(self.stages):
            if i == 1:
                x = F.avg_pool1d(x.transpose(1, 2), kernel_size=3, stride=3).transpose(1, 2)
            elif i == 2:
                x = F.avg_pool1d(x.transpose(1, 2), 3).transpose(1, 2)
            x = x + self.pos_embeds[i]
            for blk in blocks:
                x = blk(x)
        x = self.norm(x)
        return self.head(x[:, x.shape[1] // 2]).view(b, 1, j, 3)


# --------------------------------------------------------------------------- SegmentFormer


class SegmentFormer(nn.Module):
    """Splits the clip into past / present / future thirds between the blocks: by
    ``T // 3`` slices, by ``chunk``, by ``split`` and by a literal ``x[:, :9]`` (F/3 baked in)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.seg_embed = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.past_proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def thirds(self, x):
        T = x.shape[1]
        past, now, future = x[:, : T // 3], x[:, T // 3 : 2 * T // 3], x[:, 2 * T // 3 :]
        return torch.cat([past + self.seg_embed[0], now + self.seg_embed[1], future + self.seg_embed[2]], dim=1)

    def context(self, x):
        past, now, future = x.chunk(3, dim=1)
        first, rest = torch.split(x, [9, 18], dim=1)
        summary = (past.mean(1, keepdim=True) + future.mean(1, keepdim=True) + first.mean(1, keepdim=True)) / 3
        return x + summary + rest.mean(1, keepdim=True)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
            x = self.context(self.thirds(x))
        x = torch.cat([self.past_proj(x[:, :9]), x[:, 9:]], dim=1)
        x = self.head(self.norm(x))
        return x.reshape(b, f, j, 3)


# --------------------------------------------------------------------------- WindowFormer


class WindowBlock(nn.Module):
    """Local attention inside each of ``windows`` parts of the clip, then global attention;
    the first part (the warm-up frames, F // windows of them) is gated on its own."""

    def __init__(self, dim, heads, num_frame, windows=3):
        super().__init__()
        self.windows = windows
        self.warmup = num_frame // windows
        self.norm0 = nn.LayerNorm(dim)
        self.local_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.gate = nn.Parameter(torch.ones(dim) + 0.1 * torch.randn(dim))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x):
        w = rearrange(self.norm0(x), "b (w t) c -> (b w) t c", w=self.windows)
        x = x + rearrange(self.local_attn(w), "(b w) t c -> b (w t) c", w=self.windows)
        x = x + self.attn(self.norm1(x))
        x = torch.cat([x[:, : self.warmup] * self.gate, x[:, self.warmup :]], dim=1)
        return x + self.mlp(self.norm2(x))


class WindowFormer(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(num_joints * in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, dim) * 0.02)
        self.blocks = nn.ModuleList([WindowBlock(dim, heads, num_frame) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(rearrange(x, "b f j c -> b f (j c)")) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)).view(b, f, j, 3)


# --------------------------------------------------------------------------- EinsumFormer


class EinsumBlock(nn.Module):
    """Attention over frames per joint, then a learned (F, F) temporal mixing written as an
    einsum over (B, F, J, C) tokens, inside the block's forward."""

    def __init__(self, dim, num_frame, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mix = nn.Parameter(torch.eye(num_frame) + 0.05 * torch.randn(num_frame, num_frame))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x):
        b, f, j, c = x.shape
        t = rearrange(x, "b f j c -> (b j) f c")
        t = t + self.attn(self.norm1(t))
        x = rearrange(t, "(b j) f c -> b f j c", j=j)
        x = x + 0.5 * torch.einsum("ts,bsjc->btjc", self.mix, self.norm2(x))
        return x + self.mlp(self.norm2(x))


class EinsumFormer(nn.Module):
    """Joint tokens (B, F, J, C); blocks mix frames with einsum, and so does the model between
    its blocks (a fixed chain adjacency, the frame index second: ``"bsjc,st->btjc"``)."""

    def __init__(self, num_frame=27, num_joints=17, in_chans=2, dim=32, depth=3, heads=4):
        super().__init__()
        self.embed = nn.Linear(in_chans, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, num_frame, 1, dim) * 0.02)
        self.register_buffer("adj", chain_adjacency(num_frame))
        self.blocks = nn.ModuleList([EinsumBlock(dim, num_frame, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x) + self.pos_embed
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == 1:
                x = x + torch.einsum("bsjc,st->btjc", x, self.adj)
        return self.head(self.norm(x))


ALL = {
    "graphformer": (GraphFormer, (2, 27, 17, 2)),
    "mixerformer": (MixerFormer, (2, 27, 17, 2)),
    "adjacencyformer": (AdjacencyFormer, (2, 27, 17, 2)),
    "stridedformer": (StridedFormer, (2, 27, 17, 2)),
    "segmentformer": (SegmentFormer, (2, 27, 17, 2)),
    "windowformer": (WindowFormer, (2, 27, 17, 2)),
    "einsumformer": (EinsumFormer, (2, 27, 17, 2)),
    "functionalstrided": (FunctionalStridedFormer, (2, 27, 17, 2)),
    "avgpoolstrided": (AvgPoolStridedFormer, (2, 27, 17, 2)),
    "functionalavgpool": (FunctionalAvgPoolStridedFormer, (2, 27, 17, 2)),
}


def _as_trained(model: nn.Module) -> None:
    """Batch norms with non-trivial statistics and affine, as after training."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = ALL[name]
    torch.manual_seed(seed)
    model = cls()
    _as_trained(model)
    return model.eval(), torch.randn(shape)
