"""Small VPTs whose ``forward`` computes with sizes in Python (issue 27, patterns 1 and 2).

Each is written the way such code is found in other people's lifters; before issue 27 none of them
traced (the error each gave is in the docstring).

* :class:`NumpyMaskVPT` — a (B, F) ``key_padding_mask`` made with NumPy from the clip length
  (``m = np.ones(seq_len, dtype=np.int32); m[::5] = 0``), ``nn.MultiheadAttention`` in (L, B, C)
  order. Was: ``TraceFailure ... argument of type: <class 'type'>``.
* :class:`SineTableVPT` — ``torch.arange(L, dtype=int)`` and a sine table filled by item
  assignment into ``torch.zeros(B, L, C)``, added before every block. Was the same error.
* :class:`FactoryVPT` — factory calls in every calling form (``torch.ones(batch, seq_len)`` after
  ``batch, seq_len, *_ = x.size()``, ``x.new_zeros(b, t, c)``, ``torch.full((b, t), v)``,
  ``torch.empty``, ``*_like``), ``.to(x.device)``, ``.type_as(x)`` and asserts. Was:
  ``TraceFailure ... ones() takes 1 positional argument but 2 were given``.
* :class:`ListVPT` — ``torch.tensor([i for i in range(f)])``, ``int(...)``, ``float(...)`` and a Python
  loop over the joints. Was: ``'Proxy' object cannot be interpreted as an integer``.
* :class:`CudaVPT` — ``.cuda()`` on the tokens and on a table in ``forward`` (fails on a CPU
  machine in eager mode too; hotpatch moves to the input's device instead).
* :class:`BandMaskVPT` / :class:`CausalMaskVPT` — an (F, F) ``attn_mask`` (a band
  ``|i - j| > w``; a causal ``torch.triu(torch.ones(f, f))``) passed to every block. Were: a
  ``RewriteError`` (band) and the ``ones()`` error (causal).
* :class:`LateTableVPT` — a position table made in the loop over blocks from the current token
  count (``torch.arange(x.shape[1])``), so after the cut it is made from f.
* :class:`RotarySpaceTimeVPT` — a (1, F, d) rotary table made in ``forward`` and passed to the
  temporal blocks of a MixSTE-style alternation, whose tokens are (B·J, F, C).

Refused, with one line naming the construct and the fix: :class:`BatchNumpyVPT` (NumPy on the
batch size), :class:`ValueNumpyVPT` (NumPy on tensor values), :class:`InnerRangeVPT` (a Python
loop over the token count after a block) and :class:`BandMaskCustomVPT` (a band mask for an
attention hotpatch cannot give a per-sample mask to).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from author_vpts import Block, Mlp

J, C = 17, 32


class MHABlock(nn.Module):
    """Pre-norm block around ``nn.MultiheadAttention`` on (L, B, C) tokens, with masks."""

    def __init__(self, dim: int = C, heads: int = 4) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class _Lifter(nn.Module):
    """Shared parts: joints embedded per frame, ``depth`` blocks, a per-frame head."""

    def __init__(self, frames: int = 27, depth: int = 4, block=MHABlock) -> None:
        super().__init__()
        self.frames = frames
        self.embed = nn.Linear(J * 2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, C) * 0.02)
        self.blocks = nn.ModuleList([block() for _ in range(depth)])
        self.head = nn.Linear(C, J * 3)


class NumpyMaskVPT(_Lifter):
    def forward(self, x):
        b, f, j, c = x.shape
        seq_len = f
        m = np.ones(seq_len, dtype=np.int32)
        m[::5] = 0  # every fifth frame is ignored as a key
        key_padding_mask = torch.tensor(m == 0)[None].repeat(b, 1)  # (B, F)
        h = (self.embed(x.reshape(b, f, j * c)) + self.pos).permute(1, 0, 2)  # (F, B, C)
        for blk in self.blocks:
            h = blk(h, key_padding_mask=key_padding_mask)
        return self.head(h.permute(1, 0, 2)).reshape(b, f, j, 3)


def sine_table(batch, length: int, dim: int) -> torch.Tensor:
    """(B, L, C) sine/cosine positions, filled by item assignment."""
    pos = torch.arange(length, dtype=int)
    div = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(batch, length, dim)
    table[:, :, 0::2] = torch.sin(pos[:, None] * div)
    table[:, :, 1::2] = torch.cos(pos[:, None] * div)
    return table


class SineTableVPT(_Lifter):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=lambda: Block(C, 4))
        self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        B, L, j, c = x.shape
        table = sine_table(B, L, C).to(x.device)
        h = self.embed(x.reshape(B, L, j * c)) + self.pos
        for blk in self.blocks:
            h = blk(h + self.scale * table)  # the table at every block, after the cut too
        return self.head(h).reshape(B, L, j, 3)


class FactoryVPT(_Lifter):
    def forward(self, x):
        assert x.dim() == 4, "expects (B, F, J, 2)"
        batch, seq_len, *_ = x.size()
        ones = torch.ones(batch, seq_len)
        full = torch.full((batch, seq_len), 0.5)
        empty = torch.empty(batch, seq_len).fill_(2.0)
        keep = (ones * empty - full).type_as(x) > 1.0  # all True, made in five calling forms
        zeros = x.new_zeros(batch, seq_len, C)
        h = self.embed(x.reshape(batch, seq_len, -1)) + zeros + torch.zeros_like(self.pos)
        h = (h + self.pos).permute(1, 0, 2)
        for blk in self.blocks:
            h = blk(h, key_padding_mask=~keep.to(x.device))
        return self.head(h.permute(1, 0, 2)).reshape(batch, seq_len, J, 3)


class ListVPT(_Lifter):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=lambda: Block(C, 4))
        self.time = nn.Linear(1, C)

    def forward(self, x):
        b, f, j, c = x.shape
        steps = torch.tensor([i for i in range(f)])  # a list of ints made in Python
        t = (steps.float() / float(f - 1))[None, :, None]  # float() of a size
        centred = torch.stack([x[:, :, k] - x[:, :, 0] for k in range(j)], dim=2)  # a loop over joints
        h = self.embed(centred.reshape(b, f, j * c)) * (int(c ** 0.5) + 1) + self.time(t) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return self.head(h).reshape(b, f, j, 3)


class CudaVPT(_Lifter):
    """Moves its tokens and a table to the GPU with ``.cuda()`` and makes a mask with
    ``device="cuda"``: eager mode needs a GPU (``device`` is an attribute so that tests can run the
    original on a CPU as a reference, with ``.cuda()`` made a no-op)."""

    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=lambda: Block(C, 4))
        self.device = "cuda"

    def forward(self, x):
        b, f, j, c = x.shape
        table = torch.zeros(f, C).cuda()  # a constant made in forward
        h = self.embed(x.reshape(b, f, j * c)).cuda() + table + self.pos
        mask = torch.ones(b, f, device=self.device)
        for blk in self.blocks:
            h = blk(h) * mask[..., None]
        return self.head(h).reshape(b, f, j, 3)


class BandMaskVPT(_Lifter):
    def __init__(self, frames: int = 27, depth: int = 4, band: int = 4) -> None:
        super().__init__(frames, depth)
        self.band = band

    def forward(self, x):
        b, f, j, c = x.shape
        t = torch.arange(f)
        attn_mask = (t[None, :] - t[:, None]).abs() > self.band  # (F, F), True: not attended
        h = (self.embed(x.reshape(b, f, j * c)) + self.pos).transpose(0, 1)
        for blk in self.blocks:
            h = blk(h, attn_mask=attn_mask)
        return self.head(h.transpose(0, 1)).reshape(b, f, j, 3)


class CausalMaskVPT(BandMaskVPT):
    def forward(self, x):
        b, f, j, c = x.shape
        attn_mask = torch.triu(torch.ones(f, f, dtype=torch.bool), diagonal=1)
        h = (self.embed(x.reshape(b, f, j * c)) + self.pos).transpose(0, 1)
        for blk in self.blocks:
            h = blk(h, attn_mask=attn_mask)
        return self.head(h.transpose(0, 1)).reshape(b, f, j, 3)


class LateTableVPT(_Lifter):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=lambda: Block(C, 4))
        self.time = nn.Linear(1, C)

    def forward(self, x):
        b, f, j, c = x.shape
        h = self.embed(x.reshape(b, f, j * c)) + self.pos
        for blk in self.blocks:
            positions = torch.arange(h.shape[1], device=h.device).float()[None, :, None] / f
            h = blk(h + self.time(positions))  # made from the current token count
        return self.head(h).reshape(b, f, j, 3)


class RotaryBlock(nn.Module):
    """A block whose attention rotates queries and keys by a (rows, n, d) table, d the head size."""

    def __init__(self, dim: int = C, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj, self.mlp = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), Mlp(dim, 2 * dim)

    def forward(self, x, freqs):
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        cos, sin = freqs.cos()[:, None], freqs.sin()[:, None]  # (rows or 1, 1, n, d)
        q = q * cos + torch.cat([-q[..., 1::2], q[..., ::2]], dim=-1) * sin
        k = k * cos + torch.cat([-k[..., 1::2], k[..., ::2]], dim=-1) * sin
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class RotarySpaceTimeVPT(nn.Module):
    """MixSTE's alternation, spatial (B·F, J, C) and temporal (B·J, F, C) blocks; the temporal ones
    take a (1, F, d) rotary table made in ``forward`` from the clip length."""

    def __init__(self, frames: int = 27, depth: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(2, C)
        self.spatial_pos = nn.Parameter(torch.randn(1, J, C) * 0.02)
        self.spatial = nn.ModuleList([Block(C, 4) for _ in range(depth)])
        self.temporal = nn.ModuleList([RotaryBlock() for _ in range(depth)])
        self.head = nn.Linear(C, 3)
        self.register_buffer("inv_freq", 1.0 / 100 ** (torch.arange(0, C // 4, 2).float() / (C // 4)))

    def forward(self, x):
        b, f, j, c = x.shape
        t = torch.arange(f, device=x.device).type_as(self.inv_freq)
        freqs = (t[:, None] * self.inv_freq[None, :]).repeat_interleave(2, dim=-1)[None]  # (1, F, d)
        h = self.embed(x).reshape(b * f, j, C) + self.spatial_pos
        for spatial, temporal in zip(self.spatial, self.temporal):
            h = spatial(h).reshape(b, f, j, C).transpose(1, 2).reshape(b * j, f, C)
            h = temporal(h, freqs).reshape(b, j, f, C).transpose(1, 2).reshape(b * f, j, C)
        return self.head(h).reshape(b, f, j, 3)


# ------------------------------------------------------------------------------------ refused


class BatchNumpyVPT(NumpyMaskVPT):
    """NumPy on the batch size: the mask would be made for one batch size only."""

    def forward(self, x):
        b, f, j, c = x.shape
        m = np.zeros((b, f), dtype=bool)
        h = (self.embed(x.reshape(b, f, j * c)) + self.pos).permute(1, 0, 2)
        for blk in self.blocks:
            h = blk(h, key_padding_mask=torch.from_numpy(m))
        return self.head(h.permute(1, 0, 2)).reshape(b, f, j, 3)


class ValueNumpyVPT(NumpyMaskVPT):
    """NumPy on the input's values."""

    def forward(self, x):
        b, f, j, c = x.shape
        scale = float(np.abs(x.detach().cpu().numpy()).max())
        h = (self.embed(x.reshape(b, f, j * c) / scale) + self.pos).permute(1, 0, 2)
        for blk in self.blocks:
            h = blk(h)
        return self.head(h.permute(1, 0, 2)).reshape(b, f, j, 3)


class InnerRangeVPT(_Lifter):
    """A Python loop over the token count of a block's output (F before the cut, f after it)."""

    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=lambda: Block(C, 4))

    def forward(self, x):
        b, f, j, c = x.shape
        h = self.blocks[0](self.embed(x.reshape(b, f, j * c)) + self.pos)
        h = torch.stack([h[:, t] for t in range(h.shape[1])], dim=1)
        for blk in self.blocks[1:]:
            h = blk(h)
        return self.head(h).reshape(b, f, j, 3)


class MaskedAttention(nn.Module):
    """Attention that applies a boolean (L, S) mask to its (B, H, L, S) scores itself."""

    def __init__(self, dim: int = C, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, mask):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)).masked_fill(mask, float("-inf")) * (c // self.heads) ** -0.5
        return self.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class MaskedBlock(nn.Module):
    def __init__(self, dim: int = C) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.mlp = MaskedAttention(dim), Mlp(dim, 2 * dim)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class BandMaskCustomVPT(_Lifter):
    def __init__(self, frames: int = 27, depth: int = 4) -> None:
        super().__init__(frames, depth, block=MaskedBlock)

    def forward(self, x):
        b, f, j, c = x.shape
        t = torch.arange(f)
        mask = (t[None, :] - t[:, None]).abs() > 4
        h = self.embed(x.reshape(b, f, j * c)) + self.pos
        for blk in self.blocks:
            h = blk(h, mask)
        return self.head(h).reshape(b, f, j, 3)


MODELS = {
    "numpy_mask": NumpyMaskVPT, "sine_table": SineTableVPT, "factory": FactoryVPT, "list": ListVPT,
    "cuda": CudaVPT, "band_mask": BandMaskVPT, "causal_mask": CausalMaskVPT, "late_table": LateTableVPT,
    "rotary": RotarySpaceTimeVPT,
    "batch_numpy": BatchNumpyVPT, "value_numpy": ValueNumpyVPT, "inner_range": InnerRangeVPT,
    "band_mask_custom": BandMaskCustomVPT,
}


def build(name: str, batch: int = 2, frames: int = 27):
    """A model (eval mode, seeded weights) and a clip of ``batch`` samples."""
    torch.manual_seed(0)
    model = MODELS[name](frames=frames).eval()
    return model, torch.randn(batch, frames, J, 2)
