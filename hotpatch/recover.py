"""Token recovery: rebuild ``F`` frames of tokens from the ``f`` kept ones.

Every recoverer is a plain ``nn.Module`` with ``forward(x, index)``: ``x`` is a canonical
(B, f, ..., C) tensor of kept tokens, ``index`` the (B, f) frame indices they came from
(sorted in time); the result is (B, F, ..., C).

* :class:`TRA` — the paper's token recovering attention (learnable).
* :class:`NearestRecover` / :class:`LinearRecover` — parameter-free interpolation in time,
  which make zero-retraining seq2seq possible.
* :class:`LinearTRA` — linear interpolation plus a learnable attention correction that is
  exactly zero at initialisation (zero-retraining and short fine-tuning).
* :class:`UnmergeRecover` — the inverse of token merging: every frame takes its cluster's
  token (the cluster assignment of a clustering pruner), optionally blended with linear
  interpolation in time; parameter-free. Called as ``forward(x, index, assign)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hotpatch.layout import gather_frames


class _CrossAttention(nn.Module):
    """``frames`` learnable queries (zero-initialised) and one multi-head cross-attention
    (``q``/``k``/``v``/``proj`` Linears, the official TRA's parameter names) over kept tokens."""

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

    def attend(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``proj(softmax(q k^T / sqrt(d)) v)`` of queries (n, F, C) over tokens (n, f, C)."""
        n, f = tokens.shape[:2]
        h, d = self.heads, self.dim // self.heads
        q = self.q(queries).view(n, self.frames, h, d).transpose(1, 2)
        k = self.k(tokens).view(n, f, h, d).transpose(1, 2)
        v = self.v(tokens).view(n, f, h, d).transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, self.frames, self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, frames={self.frames}, heads={self.heads}"


def _rows(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Canonical (B, T, ..., C) -> (B·..., T, C): one row of T tokens per joint (and sample)."""
    return x.movedim(1, -2).reshape(-1, x.shape[1], dim)


def _unrows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_rows` for the leading shape of ``like`` (B, ·, ..., C)."""
    b, rest = like.shape[0], like.shape[2:-1]
    return rows.view(b, *rest, rows.shape[1], rows.shape[2]).movedim(-2, 1)


class TRA(_CrossAttention):
    """Token recovering attention (HoT, Sec. 3.2).

    ``frames`` zero-initialised learnable queries attend to the kept tokens of each joint
    (one multi-head cross-attention: ``q``/``k``/``v``/``proj`` Linears) and the attention
    output is added back to the queries. The kept-token ``index`` is not used: the queries
    learn their own temporal positions.
    """

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        tokens = _rows(x, self.dim)  # (B·rest, f, C)
        queries = self.queries.expand(tokens.shape[0], -1, -1)
        return _unrows(queries + self.attend(queries, tokens), x)


class LinearTRA(_CrossAttention):
    """Linear interpolation refined by a token recovering attention (``recover="linear-tra"``).

    The F frames are first interpolated linearly from the kept tokens (:class:`LinearRecover`);
    each interpolated token plus a learnable (zero-initialised) query of its frame then attends
    to the kept tokens, and the attention's projection — zero-initialised, weight and bias — is
    added as a correction. At initialisation the correction is exactly zero, so the output equals
    linear recovery bit for bit (zero-retraining works), and fine-tuning learns what the
    interpolation misses, starting from the pretrained model's own accuracy instead of from the
    zero queries of :class:`TRA`.
    """

    def __init__(self, dim: int, frames: int, heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__(dim, frames, heads, qkv_bias)
        self.interpolate = LinearRecover(frames)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        base = _rows(self.interpolate(x, index), self.dim)  # (B·rest, F, C)
        correction = self.attend(base + self.queries, _rows(x, self.dim))
        return _unrows(base + correction, x)


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

    def linear(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Every frame interpolated linearly in time between the kept tokens around it."""
        left, right, weight = self._brackets(index)
        w = weight.view(*weight.shape, *([1] * (x.dim() - 2))).to(x.dtype)
        return gather_frames(x, left) * (1 - w) + gather_frames(x, right) * w

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
        return self.linear(x, index)


class UnmergeRecover(_Interpolate):
    """Every frame starts from its own cluster's token (``recover="unmerge"``).

    ``assign`` (B, F) is each original frame's cluster, a position among the kept tokens (the
    pruner's cluster assignment, composed through every stage). With ``blend`` > 0 the result
    moves that far towards linear interpolation in time between the kept tokens (their centres'
    frames): ``unmerged + blend * (linear - unmerged)``, so where both agree (all frames kept)
    the output is the input bit for bit.
    """

    needs_assignment = True

    def __init__(self, frames: int, blend: float = 0.0) -> None:
        super().__init__(frames)
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"blend must be in [0, 1], got {blend}")
        self.blend = blend

    def forward(self, x: torch.Tensor, index: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
        unmerged = gather_frames(x, assign)
        if self.blend == 0.0:
            return unmerged
        return unmerged + self.blend * (self.linear(x, index) - unmerged)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blend={self.blend:g}"


UNMERGE_BLENDS = {"unmerge": 0.5, "unmerge-linear": 0.5, "unmerge-pure": 0.0}
"""``recover=`` names of :class:`UnmergeRecover` and their blend towards linear interpolation."""

RECOVERERS = ("tra", "nearest", "linear", "linear-tra", *UNMERGE_BLENDS)
RECOVERER_CLASSES: dict[str, type[nn.Module]] = {
    "tra": TRA, "nearest": NearestRecover, "linear": LinearRecover, "linear-tra": LinearTRA,
    **dict.fromkeys(UNMERGE_BLENDS, UnmergeRecover),
}
"""The module each ``recover=`` name builds."""


def reads_assignment(recover: str | None) -> bool:
    """Whether ``recover`` gives every frame its cluster's token, so the pruners must hand every
    frame's cluster on (and be clustering ones): its class's ``needs_assignment``, the one place
    this is decided."""
    return bool(getattr(RECOVERER_CLASSES.get(recover or ""), "needs_assignment", False))
