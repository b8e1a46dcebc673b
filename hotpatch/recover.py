"""Token recovery: rebuild ``F`` frames of tokens from the ``f`` kept ones.

Every recoverer is a plain ``nn.Module`` with ``forward(x, index)``: ``x`` is a canonical
(B, f, ..., C) tensor of kept tokens, ``index`` the (B, f) frame indices they came from
(sorted in time); the result is (B, F, ..., C).

* :class:`TRA` — the paper's token recovering attention (learnable).
* :class:`NearestRecover` / :class:`LinearRecover` — parameter-free interpolation in time,
  which make zero-retraining seq2seq possible.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hotpatch.layout import gather_frames


class TRA(nn.Module):
    """Token recovering attention (HoT, Sec. 3.2).

    ``frames`` zero-initialised learnable queries attend to the kept tokens of each joint
    (one multi-head cross-attention: ``q``/``k``/``v``/``proj`` Linears) and the attention
    output is added back to the queries. The kept-token ``index`` is not used: the queries
    learn their own temporal positions.
    """

    def __init__(self, dim: int, frames: int, heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.frames, self.heads = dim, frames, heads
        self.scale = (dim // heads) ** -0.5
        self.queries = nn.Parameter(torch.zeros(1, frames, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        b, f = x.shape[:2]
        rest = x.shape[2:-1]
        tokens = x.movedim(1, -2).reshape(-1, f, self.dim)  # (B·rest, f, C)
        n = tokens.shape[0]
        queries = self.queries.expand(n, -1, -1)
        h, d = self.heads, self.dim // self.heads
        q = self.q(queries).view(n, self.frames, h, d).transpose(1, 2)
        k = self.k(tokens).view(n, f, h, d).transpose(1, 2)
        v = self.v(tokens).view(n, f, h, d).transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n, self.frames, self.dim)
        out = queries + self.proj(out)
        return out.view(b, *rest, self.frames, self.dim).movedim(-2, 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, frames={self.frames}, heads={self.heads}"


class _Interpolate(nn.Module):
    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def _brackets(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every output frame t: positions of the kept frames just before/after t, and
        the weight of the later one (0 at a kept frame and outside the kept range)."""
        t = torch.arange(self.frames, device=index.device).expand(index.shape[0], -1)
        # searchsorted(index, t) as a count (kept frames before t): exportable to ONNX
        right = (index.unsqueeze(1) < t.unsqueeze(2)).sum(dim=-1)
        right = right.clamp(max=index.shape[1] - 1)
        left = (right - 1).clamp(min=0)
        exact = torch.gather(index, 1, right) == t
        left = torch.where(exact, right, left)
        i0 = torch.gather(index, 1, left).float()
        i1 = torch.gather(index, 1, right).float()
        span = (i1 - i0).clamp(min=1.0)
        weight = ((t.float() - i0) / span).clamp(0.0, 1.0)
        weight = torch.where(i1 == i0, torch.zeros_like(weight), weight)
        return left, right, weight

    def extra_repr(self) -> str:
        return f"frames={self.frames}"


class NearestRecover(_Interpolate):
    """Copy, for every frame, the kept token nearest in time (ties go to the earlier one)."""

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        left, right, weight = self._brackets(index)
        nearest = torch.where(weight > 0.5, right, left)
        return gather_frames(x, nearest)


class LinearRecover(_Interpolate):
    """Interpolate linearly in time between the kept tokens around every frame."""

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        left, right, weight = self._brackets(index)
        w = weight.view(*weight.shape, *([1] * (x.dim() - 2))).to(x.dtype)
        return gather_frames(x, left) * (1 - w) + gather_frames(x, right) * w


RECOVERERS = ("tra", "nearest", "linear")
