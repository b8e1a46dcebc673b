"""Layers whose size is the frame count (frames used as features), and their gathering twins.

The frame-sized-layers pass (:mod:`hotpatch.engine.passes.frame_sized`) finds and swaps them.

Temporal graph convolutions normalise with ``BatchNorm1d(F)`` on (B, F, C), MLP-Mixer-style
models mix time with ``Linear(F, F)`` on (B, C, F) or a 1x1 ``Conv1d(F, F, 1)`` (grouped too:
``Conv1d(F, F, 3, groups=3)``, and ``GroupNorm(3, F)``), and adjacency matrices (F, F) multiply
the tokens (``adj @ x``). After the cut each sample keeps its own f
frames, so these weights are gathered per sample by the kept indices: a (F, F) weight becomes
(B, f, f) rows and columns of the kept frames, a per-frame vector (BatchNorm statistics and
affine, LayerNorm affine, biases) becomes (B, f). With all frames kept (f = F) the layer runs
exactly as the original.

Frame-sized modules keep their place and qualified names: the module is replaced (in a copy of
its parent path, sharing the parameters) by a subclass of its own torch class (``FrameLinear``
for ``nn.Linear`` ...) whose ``forward(x, index=None)`` gathers. Called from the graph it gets
the index as an argument; inside a transformer block (an opaque leaf call) it reads the index
from :class:`KeptFrames`, a small holder the patched graph sets right after the pruner.

Training mode of a gathered BatchNorm: each original frame is normalised with the batch
statistics of that frame, computed over the samples that kept it (and the other axes), and
only the running statistics of frames seen in the batch are updated (momentum as the
original's). With f = F this is exactly ``nn.BatchNorm``'s training step.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from hotpatch.layout import Axis, Layout


class KeptFrames(nn.Module):
    """Holds the frame indices kept at the cut for layers inside opaque blocks; ``forward``
    stores the (B, f) index and returns it unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.index: torch.Tensor | None = None

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        self.index = index
        return index


def gather_rows_cols(w: torch.Tensor, index: torch.Tensor, rows: bool, cols: bool) -> torch.Tensor:
    """Per-sample (B, ...) copy of a 2-D+ weight ``w`` (O, I, *k): rows and/or columns kept."""
    b = index.shape[0]
    if rows:
        w = w[index]  # (B, f, I, *k)
    else:
        w = w.unsqueeze(0).expand(b, *w.shape)
    if cols:
        shape = (b, w.shape[1], index.shape[1], *w.shape[3:])
        idx = index.view(b, 1, -1, *([1] * (w.dim() - 3))).expand(shape)
        w = w.gather(2, idx)
    return w


def per_frame(v: torch.Tensor | None, index: torch.Tensor, ndim: int) -> torch.Tensor | None:
    """A per-frame vector (F,) gathered to (B, f, 1, ...) for a canonical tensor of ``ndim`` axes."""
    if v is None:
        return None
    return v[index].view(*index.shape, *([1] * (ndim - 2)))


class FrameSized:
    """Mixin of the frame-gathering layers; ``hotpatch_*`` attributes are set by :func:`swap`."""

    hotpatch_frames: int  # F
    hotpatch_layout: Layout  # the input's layout, the feature axis marked as the "F" atom
    hotpatch_in_frames: bool  # the input feature axis is the frame axis
    hotpatch_out_frames: bool  # the output feature axis is the frame axis

    def _kept(self, index: torch.Tensor | None) -> torch.Tensor | None:
        if index is None:
            holder = self.__dict__.get("hotpatch_kept")
            index = holder.index if holder is not None else None
        if index is None or index.shape[1] == self.hotpatch_frames:
            return None  # all frames kept (or before the cut): run as the original
        return index

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, gathered by kept frames (F={self.hotpatch_frames}, input {self.hotpatch_layout.describe()})"


class FrameLinear(FrameSized, nn.Linear):
    """``nn.Linear`` whose input and/or output features are frames (e.g. Linear(F, F))."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        index = self._kept(index)
        if index is None:
            return super().forward(x)
        size = index.shape[1] if self.hotpatch_in_frames else self.in_features
        xc = self.hotpatch_layout.to_canonical(x, size)  # (B, I, *rest)
        w = gather_rows_cols(self.weight, index, self.hotpatch_out_frames, self.hotpatch_in_frames)
        y = torch.bmm(w, xc.flatten(2)).view(xc.shape[0], w.shape[1], *xc.shape[2:])
        if self.bias is not None:
            y = y + _bias(self.bias, index, self.hotpatch_out_frames, y.dim())
        return self.hotpatch_layout.from_canonical(y, w.shape[1])


def dense_weight(conv: nn.Conv1d) -> torch.Tensor:
    """The (O, I, k) weight of an ungrouped convolution equal to ``conv``: a grouped weight
    (O, I/G, k) placed on the block diagonal, zeros between the groups."""
    w, groups = conv.weight, conv.groups
    if groups == 1:
        return w
    out_per, in_per = conv.out_channels // groups, conv.in_channels // groups
    dense = w.new_zeros(conv.out_channels, conv.in_channels, w.shape[-1])
    for g in range(groups):
        rows, cols = slice(g * out_per, (g + 1) * out_per), slice(g * in_per, (g + 1) * in_per)
        dense[rows, cols] = w[rows]
    return dense


class FrameConv1d(FrameSized, nn.Conv1d):
    """``nn.Conv1d`` on (N, F, L) whose channels are frames (e.g. a 1x1 Conv1d(F, F, 1), or a
    grouped Conv1d(F, F, 3, groups=3): as the ungrouped convolution with its block-diagonal
    weight, so each kept output frame sums over the kept input frames of its group)."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        index = self._kept(index)
        if index is None:
            return super().forward(x)
        size = index.shape[1] if self.hotpatch_in_frames else self.in_channels
        xc = self.hotpatch_layout.to_canonical(x, size)  # (B, I, *mid, L)
        b, length = xc.shape[0], x.shape[-1]
        mid = xc.shape[2:-1]
        flat = xc.reshape(b, size, -1, length).permute(2, 0, 1, 3).reshape(-1, b * size, length)
        w = gather_rows_cols(dense_weight(self), index, self.hotpatch_out_frames, self.hotpatch_in_frames)
        out = w.shape[1]
        bias = None
        if self.bias is not None:
            bias = (self.bias[index] if self.hotpatch_out_frames else self.bias.expand(b, -1)).reshape(-1)
        y = F.conv1d(flat, w.reshape(b * out, size, -1), bias, self.stride, self.padding, self.dilation, groups=b)
        y = y.view(-1, b, out, y.shape[-1]).permute(1, 2, 0, 3).reshape(b, out, *mid, y.shape[-1])
        axes = self.hotpatch_layout.axes
        layout = Layout((*axes[:-1], (y.shape[-1],)), self.hotpatch_layout.joints)
        return layout.from_canonical(y, out)


class _FrameBatchNorm(FrameSized):
    """BatchNorm over frames as channels; see the module docstring for training mode."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        index = self._kept(index)
        if index is None:
            return super().forward(x)  # type: ignore[misc]
        xc = self.hotpatch_layout.to_canonical(x, index.shape[1])  # (B, f, *rest)
        nd = xc.dim()
        use_batch = self.training or self.running_mean is None
        if use_batch:
            mean, var = self._batch_stats(xc, index)
        else:
            mean, var = self.running_mean, self.running_var
        y = (xc - per_frame(mean, index, nd)) * torch.rsqrt(per_frame(var, index, nd) + self.eps)
        if self.affine:
            y = y * per_frame(self.weight, index, nd) + per_frame(self.bias, index, nd)
        return self.hotpatch_layout.from_canonical(y, index.shape[1])

    def _batch_stats(self, xc: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.hotpatch_frames
        flat = xc.flatten(2)
        per = flat.shape[2]
        idx = index.reshape(-1)
        count = torch.zeros(frames, dtype=xc.dtype, device=xc.device).index_add_(
            0, idx, torch.full_like(idx, per, dtype=xc.dtype)
        )
        seen = count > 0
        total = torch.zeros(frames, dtype=xc.dtype, device=xc.device).index_add(0, idx, flat.sum(2).reshape(-1))
        mean = total / count.clamp_min(1)
        centred = flat - mean[index].unsqueeze(-1)
        sq = torch.zeros(frames, dtype=xc.dtype, device=xc.device).index_add(0, idx, centred.square().sum(2).reshape(-1))
        var = sq / count.clamp_min(1)
        if self.training and self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), count, seen)
        return mean, var

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor, seen: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * count / (count - 1).clamp_min(1)
        rm = torch.lerp(self.running_mean, mean.to(self.running_mean.dtype), factor)
        rv = torch.lerp(self.running_var, unbiased.to(self.running_var.dtype), factor)
        self.running_mean.copy_(torch.where(seen, rm, self.running_mean))
        self.running_var.copy_(torch.where(seen, rv, self.running_var))


class FrameBatchNorm1d(_FrameBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d(F)`` applied with frames as channels, e.g. on (B, F, C)."""


class FrameBatchNorm2d(_FrameBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d(F)`` applied with frames as channels, e.g. on (B, F, J, C)."""


class FrameLayerNorm(FrameSized, nn.LayerNorm):
    """``nn.LayerNorm(F)`` normalising over the frame axis (the last axis): over kept frames."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        index = self._kept(index)
        if index is None:
            return super().forward(x)
        xc = self.hotpatch_layout.to_canonical(x, index.shape[1])
        var, mean = torch.var_mean(xc, dim=1, unbiased=False, keepdim=True)
        y = (xc - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * per_frame(self.weight, index, y.dim())
        if self.bias is not None:
            y = y + per_frame(self.bias, index, y.dim())
        return self.hotpatch_layout.from_canonical(y, index.shape[1])


class FrameGroupNorm(FrameSized, nn.GroupNorm):
    """``nn.GroupNorm(G, F)`` with frames as channels: each kept frame is normalised with the
    statistics of the kept frames of its original group (frames g·F/G .. (g+1)·F/G - 1), over the
    other axes too; the affine is gathered per frame. With all frames kept it is the original."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        index = self._kept(index)
        if index is None:
            return super().forward(x)
        xc = self.hotpatch_layout.to_canonical(x, index.shape[1])  # (B, f, *rest)
        flat = xc.flatten(2)
        group = index * self.num_groups // self.num_channels  # (B, f): each kept frame's group
        per = torch.full_like(group, flat.shape[2], dtype=flat.dtype)
        count = flat.new_zeros(index.shape[0], self.num_groups).scatter_add(1, group, per).clamp_min(1)
        mean = flat.new_zeros(count.shape).scatter_add(1, group, flat.sum(2)) / count
        centred = flat - mean.gather(1, group).unsqueeze(-1)
        var = flat.new_zeros(count.shape).scatter_add(1, group, centred.square().sum(2)) / count
        y = (centred * torch.rsqrt(var.gather(1, group).unsqueeze(-1) + self.eps)).view_as(xc)
        if self.affine:
            y = y * per_frame(self.weight, index, y.dim()) + per_frame(self.bias, index, y.dim())
        return self.hotpatch_layout.from_canonical(y, index.shape[1])


def _bias(bias: torch.Tensor, index: torch.Tensor, out_frames: bool, ndim: int) -> torch.Tensor:
    b = bias[index] if out_frames else bias.expand(index.shape[0], -1)
    return b.view(*b.shape, *([1] * (ndim - 2)))


# --------------------------------------------------------------------------- which layers

_SWAPS: dict[type, type] = {
    nn.Linear: FrameLinear,
    nn.Conv1d: FrameConv1d,
    nn.BatchNorm1d: FrameBatchNorm1d,
    nn.BatchNorm2d: FrameBatchNorm2d,
    nn.LayerNorm: FrameLayerNorm,
    nn.GroupNorm: FrameGroupNorm,
}


def feature_sizes(m: nn.Module) -> tuple[int, int, int] | None:
    """``(feature axis, in size, out size)`` of a layer hotpatch can gather, else None."""
    t = type(m)
    if t is nn.Linear:
        return -1, m.in_features, m.out_features
    if t is nn.Conv1d and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
        return 1, m.in_channels, m.out_channels
    if t is nn.GroupNorm:
        return 1, m.num_channels, m.num_channels
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        return 1, m.num_features, m.num_features
    if t is nn.LayerNorm and len(m.normalized_shape) == 1:
        return -1, m.normalized_shape[0], m.normalized_shape[0]
    return None


def frame_roles(
    m: nn.Module, in_axes: tuple[Axis | None, ...] | None, out_axes: tuple[Axis | None, ...] | None, frames: int
) -> tuple[bool, bool] | None:
    """Whether the layer's input / output feature axis is the frame axis (size F)."""
    sizes = feature_sizes(m)
    if sizes is None or not in_axes or not out_axes:
        return None
    axis, size_in, size_out = sizes
    roles = (
        size_in == frames and in_axes[axis] == ("F",),
        size_out == frames and out_axes[axis] == ("F",),
    )
    return roles if any(roles) else None


def input_layout(in_axes: tuple[Axis | None, ...], m: nn.Module, joints: int | None) -> Layout | None:
    """The input's layout with the feature axis as the "F" atom; None if it cannot be gathered
    per sample (no batch atom, unknown axes, or frames on another axis too)."""
    axis = feature_sizes(m)[0]  # type: ignore[index]
    axes = list(in_axes)
    axes[axis] = ("F",)
    if any(a is None for a in axes) or not any("B" in a for a in axes):  # type: ignore[operator]
        return None
    if sum(a.count("F") for a in axes) != 1:  # type: ignore[union-attr]
        return None
    return Layout(tuple(axes), joints)  # type: ignore[arg-type]


def swap(
    root: nn.Module, qualname: str, layout: Layout, frames: int, roles: tuple[bool, bool],
    holder: KeptFrames | None = None,
) -> nn.Module:
    """Replace ``root``'s submodule ``qualname`` by its frame-gathering twin. Every module on
    the path is shallow-copied first, so modules shared with the user's model stay unchanged;
    parameters and buffers are shared and keep their qualified names."""
    old = root.get_submodule(qualname)
    new = _shallow_copy(old)
    new.__class__ = _SWAPS[type(old)]
    new.hotpatch_frames = frames
    new.hotpatch_layout = layout
    new.hotpatch_in_frames, new.hotpatch_out_frames = roles
    if holder is not None:
        new.__dict__["hotpatch_kept"] = holder  # a reference, not a submodule (no new state_dict keys)
    replace_module(root, qualname, new)
    return new


def replace_module(root: nn.Module, qualname: str, new: nn.Module) -> None:
    """Put ``new`` at ``qualname`` under ``root``, shallow-copying every module on the path
    first so that modules shared with the user's model stay unchanged."""
    parts = qualname.split(".")
    parent = root
    for part in parts[:-1]:
        child = _shallow_copy(parent._modules[part])
        parent._modules[part] = child
        parent = child
    parent._modules[parts[-1]] = new


def _shallow_copy(m: nn.Module) -> nn.Module:
    """A copy of ``m`` with its own child/parameter/buffer registries (the tensors shared);
    modules made by the patch itself are already private and returned as they are."""
    if isinstance(m, FrameSized) or m.__dict__.get("hotpatch_owned"):
        return m
    new = copy.copy(m)
    for attr in ("_modules", "_parameters", "_buffers"):
        new.__dict__[attr] = dict(m.__dict__[attr])
    new.__dict__["hotpatch_owned"] = True
    return new


def describe(qualname: str, m: nn.Module, roles: tuple[bool, bool], where: str) -> str:
    """One plan line for a gathered layer."""
    what = {(True, True): "rows and columns", (True, False): "input columns", (False, True): "output rows"}[roles]
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        what = "statistics and affine (training: batch statistics per frame over the samples that kept it)"
    elif isinstance(m, nn.LayerNorm):
        what = "affine (normalised over the kept frames)"
    elif isinstance(m, nn.GroupNorm):
        what = f"affine (normalised over the kept frames of each of its {m.num_groups} groups)"
    elif isinstance(m, nn.Conv1d) and m.groups > 1:
        what += f" of its block-diagonal weight ({m.groups} groups)"
    return f"{where} `{qualname}` ({type(m).__name__}, frames as features): {what} gathered per sample by the kept frames"


# --------------------------------------------------------------------------- constants (adj @ x)


class FrameMatmul(nn.Module):
    """``A @ x`` (or ``x @ A``) with a constant (F, F) matrix ``A`` (an adjacency, a learned
    temporal mixing) and a pruned ``x``: A's rows and columns of each sample's kept frames.
    Inside a block the index comes from a :class:`KeptFrames` holder."""

    def __init__(self, layout: Layout, const_first: bool, frames: int, holder: KeptFrames | None = None) -> None:
        super().__init__()
        self.layout, self.const_first, self.frames = layout, const_first, frames
        if holder is not None:
            self.__dict__["hotpatch_kept"] = holder  # a reference, not a submodule

    def forward(self, a: torch.Tensor, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            holder = self.__dict__.get("hotpatch_kept")
            index = holder.index if holder is not None else None
        if index is None or index.shape[1] == self.frames:
            return a @ x if self.const_first else x @ a
        f = index.shape[1]
        xc = self.layout.to_canonical(x, f)
        ag = gather_rows_cols(a.reshape(a.shape[-2:]), index, True, True)
        if not self.const_first:
            ag = ag.transpose(1, 2)  # y[..., i] = sum_j x[..., j] A[j, i]
        y = torch.bmm(ag, xc.flatten(2)).view_as(xc)
        return self.layout.from_canonical(y, f)

    def extra_repr(self) -> str:
        return f"{'A @ x' if self.const_first else 'x @ A'}, x {self.layout.describe()}, F={self.frames}"


def frame_matmul(u: fx.Node, args: tuple, fact_of: Callable[[Any], Any], frames: int, joints: int | None):
    """``(layout, const_first)`` if ``u`` is ``A @ x`` / ``x @ A`` with a constant (F, F) ``A``
    contracted with ``x``'s only frame axis, else None. ``args`` are the arguments whose facts
    to read (the original ones, before the rewrite replaced any)."""
    is_mm = (u.op == "call_function" and u.target in (operator.matmul, torch.matmul)) or (
        u.op == "call_method" and u.target == "matmul"
    )
    if not is_mm or len(args) != 2 or u.kwargs:
        return None
    for const_first in (True, False):
        const, x = args if const_first else args[::-1]
        fc, fx_ = fact_of(const), fact_of(x)
        if fc is None or fx_ is None or fc.kind != "tensor" or fc.data_dependent or not fx_.axes:
            continue
        if len(fc.shape) < 2 or fc.shape[-2:] != (frames, frames) or any(s != 1 for s in fc.shape[:-2]):
            continue
        layout = matmul_layout(fx_.axes, const_first, joints)
        if layout is not None:
            return layout, const_first
    return None


class FrameEinsum(nn.Module):
    """``torch.einsum("ts,bsc->btc", A, x)`` with a constant (F, F) ``A`` and a pruned ``x``:
    runs ``"bts,bsc->btc"`` on A's rows and columns of each sample's kept frames (B, f, f).
    Inside a block the index comes from a :class:`KeptFrames` holder."""

    def __init__(self, equation: str, gathered: str, const_pos: int, frames: int,
                 holder: KeptFrames | None = None) -> None:
        super().__init__()
        self.equation, self.gathered, self.const_pos, self.frames = equation, gathered, const_pos, frames
        if holder is not None:
            self.__dict__["hotpatch_kept"] = holder  # a reference, not a submodule

    def forward(self, *operands: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            holder = self.__dict__.get("hotpatch_kept")
            index = holder.index if holder is not None else None
        if index is None or index.shape[1] == self.frames:
            return torch.einsum(self.equation, *operands)
        ops = list(operands)
        ops[self.const_pos] = gather_rows_cols(ops[self.const_pos], index, True, True)
        return torch.einsum(self.gathered, *ops)

    def extra_repr(self) -> str:
        return f"{self.equation!r} -> {self.gathered!r} on kept frames, F={self.frames}"


def frame_einsum(u: fx.Node, args: tuple, fact_of: Callable[[Any], Any], frames: int) -> tuple[str, str, int] | None:
    """``(equation, gathered equation, position of A)`` if ``u`` is a two-operand
    ``torch.einsum`` of a constant (F, F) ``A`` (two distinct subscripts) and a tensor ``x``
    whose only frame axis is one of them and whose batch axis is an axis of its own; the
    gathered equation gives A that batch subscript. Else None."""
    if u.op != "call_function" or u.target is not torch.einsum or u.kwargs or len(args) != 3:
        return None
    equation = args[0]
    if not isinstance(equation, str) or "->" not in equation or "..." in equation:
        return None
    inputs, output = equation.replace(" ", "").split("->")
    subs = inputs.split(",")
    if len(subs) != 2:
        return None
    for const_pos in (0, 1):
        const, x = args[1 + const_pos], args[2 - const_pos]
        fc, fx_ = fact_of(const), fact_of(x)
        a_sub, x_sub = subs[const_pos], subs[1 - const_pos]
        if fc is None or fx_ is None or fc.kind != "tensor" or fc.data_dependent or not fx_.axes:
            continue
        if tuple(fc.shape) != (frames, frames) or len(set(a_sub)) != 2 or len(x_sub) != len(fx_.axes):
            continue
        frame_letters = [c for c, ax in zip(x_sub, fx_.axes) if ax is not None and "F" in ax]
        batch_letters = [c for c, ax in zip(x_sub, fx_.axes) if ax == ("B",)]
        if len(frame_letters) != 1 or fx_.axes[x_sub.index(frame_letters[0])] != ("F",) or len(batch_letters) != 1:
            continue
        if frame_letters[0] not in a_sub or batch_letters[0] not in output:
            continue
        gathered = list(subs)
        gathered[const_pos] = batch_letters[0] + a_sub
        return equation, ",".join(gathered) + "->" + output, const_pos
    return None


def may_gather(graph: fx.Graph) -> bool:
    """Cheap pre-check: a matmul or einsum with an attribute (a buffer or parameter) or a top-k."""
    for u in graph.nodes:
        if u.target in ("topk", torch.topk):
            return True
        if u.target in (operator.matmul, torch.matmul, "matmul", torch.einsum) and any(
            a.op == "get_attr" for a in u.all_input_nodes
        ):
            return True
    return False


def clamp_topk(u: fx.Node, axes: tuple | None, f: int) -> str | None:
    """``x.topk(k, dim=<frames>)`` with a literal k > f: set k = f and say so."""
    is_topk = (u.op == "call_method" and u.target == "topk") or (u.op == "call_function" and u.target is torch.topk)
    if not is_topk or not axes:
        return None
    args = list(u.args)
    k = args[1] if len(args) > 1 else u.kwargs.get("k")
    dim = args[2] if len(args) > 2 else u.kwargs.get("dim", -1)
    if type(k) is not int or type(dim) is not int or axes[dim] != ("F",) or k <= f:
        return None
    if len(args) > 1:
        args[1] = f
        u.args = tuple(args)
    else:
        u.kwargs = {**u.kwargs, "k": f}
    return f"`{u.name}`: top-k over frames, k={k} clamped to the f={f} kept frames"


def matmul_layout(x_axes: tuple[Axis, ...], const_first: bool, joints: int | None) -> Layout | None:
    """Layout of the pruned operand of a matmul with an (F, F) constant, if the contracted axis
    (-2 for ``A @ x``, -1 for ``x @ A``) is its only frame axis."""
    axis = len(x_axes) - 2 if const_first else len(x_axes) - 1
    if x_axes[axis] != ("F",) or sum(a.count("F") for a in x_axes) != 1 or not any("B" in a for a in x_axes):
        return None
    return Layout(tuple(x_axes), joints)
