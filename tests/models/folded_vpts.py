"""Small VPTs whose tokens between the blocks fold the frames in with something else (issue 27
item 2: refused before the rewrite, naming the construct), each with a variant that keeps the
frames (or the copies) on an axis of their own, as the refusal's fix says, which patches.

* :class:`FoldedTokensVPT` — divided space-time attention over tokens ``(B, c + F·J, C)``: ``c``
  extra tokens (a class token) before the frames merged with the joints on one token axis; the
  frame axis is made only inside each block (TimeSformer's layout). ``own_axis``: ``(B, F, J, C)``.
* :class:`StreamsVPT` — residual streams: each sample copied ``S`` times into the batch,
  ``(B·S, F, C)``, the streams mixed by learned weights in every block and summed at the end
  (hyper-connections). ``own_axis``: ``(B, S, F, C)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange, reduce, repeat

from author_vpts import Block
from loop_vpts import FeedForward, PreNormAttention

J, C = 17, 32


class DividedBlock(nn.Module):
    """Attention over frames (with the frame positions ``time_pos``, (1, F, C), in the folded layout), then over joints,
    then a feed-forward; the extra tokens take the mean of the others. Tokens
    ``(B, extra + F·J, C)``, or ``(B, F, J, C)`` with ``own_axis``."""

    def __init__(self, frames: int, extra: int, own_axis: bool) -> None:
        super().__init__()
        self.frames, self.extra, self.own_axis = frames, extra, own_axis
        self.time, self.space, self.ff = PreNormAttention(), PreNormAttention(), FeedForward()

    def forward(self, x, time_pos=None):
        if self.own_axis:  # the frames' positions are in x already
            b = x.shape[0]
            x = x + rearrange(self.time(rearrange(x, "b f j c -> (b j) f c")), "(b j) f c -> b f j c", b=b)
            x = x + rearrange(self.space(rearrange(x, "b f j c -> (b f) j c")), "(b f) j c -> b f j c", b=b)
            return x + self.ff(x)
        first, rest = x[:, : self.extra], x[:, self.extra :]
        b = x.shape[0]
        t = rearrange(rest, "b (f j) c -> (b j) f c", f=self.frames)
        rest = rest + rearrange(self.time(t + time_pos), "(b j) f c -> b (f j) c", b=b)
        s = rearrange(rest, "b (f j) c -> (b f) j c", j=J)
        rest = rest + rearrange(self.space(s), "(b f) j c -> b (f j) c", b=b)
        x = torch.cat([first + rest.mean(1, keepdim=True), rest], 1)
        return x + self.ff(x)


class FoldedTokensVPT(nn.Module):
    def __init__(self, frames: int = 27, extra: int = 1, own_axis: bool = False, depth: int = 2) -> None:
        super().__init__()
        self.frames, self.extra, self.own_axis = frames, extra, own_axis
        self.embed = nn.Linear(2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, J, C) * 0.02)
        self.tokens = nn.Parameter(torch.randn(1, extra, C) * 0.02)
        self.time_pos = nn.Parameter(torch.randn(1, frames, C) * 0.02)  # TimeSformer: rotary
        self.blocks = nn.ModuleList([DividedBlock(frames, extra, own_axis) for _ in range(depth)])
        self.head = nn.Linear(C, 3)

    def forward(self, x):
        x = self.embed(x) + self.pos
        if not self.own_axis:
            x = rearrange(x, "b f j c -> b (f j) c")
            x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x) if self.own_axis else block(x, self.time_pos)
        if not self.own_axis:
            x = rearrange(x[:, self.extra :], "b (f j) c -> b f j c", f=self.frames)
        return self.head(x)


class StreamBlock(Block):
    """A pre-norm transformer block over ``(B·S, F, C)`` (or ``(B, S, F, C)``), then the ``S``
    streams of each sample mixed by learned weights."""

    def __init__(self, streams: int, own_axis: bool) -> None:
        super().__init__(C, 4)
        self.streams, self.own_axis = streams, own_axis
        self.mix = nn.Parameter(torch.randn(streams, streams) * 0.1)

    def forward(self, x):
        if self.own_axis:
            x = super().forward(x.flatten(0, 1)).unflatten(0, (-1, self.streams))
        else:
            x = rearrange(super().forward(x), "(b s) f c -> b s f c", s=self.streams)
        x = x + torch.einsum("bsfc,ts->btfc", x, self.mix)
        return x if self.own_axis else rearrange(x, "b s f c -> (b s) f c")


class StreamsVPT(nn.Module):
    def __init__(self, frames: int = 27, streams: int = 4, own_axis: bool = False, depth: int = 3) -> None:
        super().__init__()
        self.streams, self.own_axis = streams, own_axis
        self.embed = nn.Linear(J * 2, C)
        self.pos = nn.Parameter(torch.randn(1, frames, C) * 0.02)
        self.blocks = nn.ModuleList([StreamBlock(streams, own_axis) for _ in range(depth)])
        self.head = nn.Linear(C, J * 3)

    def forward(self, x):
        b, f = x.shape[:2]
        x = self.embed(x.reshape(b, f, -1)) + self.pos
        x = repeat(x, "b f c -> b s f c" if self.own_axis else "b f c -> (b s) f c", s=self.streams)
        for block in self.blocks:
            x = block(x)
        x = x.sum(1) if self.own_axis else reduce(x, "(b s) f c -> b f c", "sum", s=self.streams)
        return self.head(x).reshape(b, f, J, 3)


ALL = {
    "class_token": (FoldedTokensVPT, {}),
    "no_extra_token": (FoldedTokensVPT, {"extra": 0}),
    "frames_own_axis": (FoldedTokensVPT, {"own_axis": True}),
    "streams": (StreamsVPT, {}),
    "streams_own_axis": (StreamsVPT, {"own_axis": True}),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, kwargs = ALL[name]
    torch.manual_seed(seed)
    return cls(**kwargs).eval(), torch.randn(2, 27, J, 2)
