"""Which input axes a block's attention mixes, read from the structure of its computation.

A block is run once (on fake tensors: shapes only, no arithmetic) under a dispatch mode that
follows every axis of every tensor back to the axes of the block's inputs it came from,
through every reshape, permute, split, matmul and broadcast. Each axis is a tuple of
*atoms* ``(size, origins)`` in memory order, so ``(B·F, J, C) -> (B, F, H, J, c)`` splits an
atom and ``(B, H, J, F, c) -> (B·H·J, F, c)`` merges three. Every attention the block runs
(``softmax``, ``scaled_dot_product_attention``, fused multi-head attention) is recorded with
the origins of its key (token) axis, and so is every other op that mixes positions along an
axis (a contraction, a convolution, a normalisation or reduction over it). The residual scale of
a branch never matters: what is recorded is where tokens are mixed, not by how much.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

Atom = tuple[int, frozenset]  # (size, origins: labels of the input axes it comes from)
Dims = tuple[tuple[Atom, ...], ...]  # one tuple of atoms per axis; a size-1 axis has none

_NONE: frozenset = frozenset()


@dataclass
class Mix:
    """One op that mixes positions along an axis: an attention over its key axis, or another op."""

    module: str  # the innermost submodule running it, relative to the block ("" = the block)
    op: str
    origins: frozenset | None  # input axes the mixed axis comes from; None: could not follow
    constant: bool = False  # a contraction with a tensor that carries no input axis (a parameter, a buffer)


@dataclass
class Mixing:
    """What one run of a block mixed."""

    attentions: list[Mix] = field(default_factory=list)
    others: list[Mix] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # ops without a rule that saw input axes
    positions: list[Mix] = field(default_factory=list)  # ops that took single positions of an input axis


def plain(shape: tuple[int, ...] | torch.Size, label: Any = None, axis_labels: dict[int, Any] | None = None) -> Dims:
    """Dims of a tensor of ``shape`` whose axis ``i`` has origin ``axis_labels[i]`` (if given)."""
    labels = axis_labels or {}
    return tuple(((s, frozenset({labels[i]}) if i in labels else _NONE),) if s != 1 else () for i, s in enumerate(shape))


def origins(axis: tuple[Atom, ...]) -> frozenset:
    out: frozenset = _NONE
    for _, o in axis:
        out = out | o
    return out


def _carries(dims: Dims | None) -> bool:
    return dims is None or any(o for axis in dims for _, o in axis)


def _reshape(dims: Dims | None, shape: tuple[int, ...]) -> Dims | None:
    """Regroup atoms (memory order) into the axes of ``shape``; None if they do not factor."""
    if dims is None:
        return None
    atoms = [a for axis in dims for a in axis if a[0] != 1]
    out: list[tuple[Atom, ...]] = []
    i = 0
    for size in shape:
        axis: list[Atom] = []
        while size > 1:
            if i >= len(atoms):
                return None
            s, o = atoms[i]
            if size % s == 0:
                axis.append((s, o))
                size //= s
                i += 1
            elif s % size == 0:
                axis.append((size, o))
                atoms[i] = (s // size, o)
                size = 1
            else:
                return None
        out.append(tuple(axis))
    return tuple(out) if i == len(atoms) else None


def _single(size: int, o: frozenset) -> tuple[Atom, ...]:
    return ((size, o),) if size != 1 else ()


def _merge_axes(size: int, axes: list[tuple[Atom, ...]]) -> tuple[Atom, ...]:
    if not axes:
        return _single(size, _NONE)
    first = axes[0]
    if all(a == first for a in axes):
        return first
    if all(len(a) == len(first) and all(x[0] == y[0] for x, y in zip(a, first)) for a in axes):
        return tuple((s, frozenset().union(*(a[k][1] for a in axes))) for k, (s, _) in enumerate(first))
    return _single(size, frozenset().union(*(origins(a) for a in axes)))


def _broadcast(shape: tuple[int, ...], inputs: list[tuple[tuple[int, ...], Dims | None]]) -> Dims | None:
    """Dims of a broadcasting op's output: per axis, the atoms of the inputs that are not broadcast."""
    if any(d is None for _, d in inputs):
        return None
    n = len(shape)
    out = []
    for k, size in enumerate(shape):
        axes = []
        for s, d in inputs:
            j = k - (n - len(s))
            if j >= 0 and s[j] == size and size != 1:
                axes.append(d[j])  # type: ignore[index]
        out.append(_merge_axes(size, axes) if size != 1 else ())
    return tuple(out)


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


class AxisTracker(TorchDispatchMode):
    """Dispatch mode that follows axis origins through every aten op and records mixing."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack  # names of the submodules running now (innermost last)
        self.dims: dict[int, tuple[torch.Tensor, Dims | None]] = {}
        self.mixing = Mixing()

    # ------------------------------------------------------------------ bookkeeping

    def label(self, t: torch.Tensor, dims: Dims | None) -> None:
        self.dims[id(t)] = (t, dims)

    def get(self, t: Any) -> Dims | None:
        entry = self.dims.get(id(t))
        if entry is not None and entry[0] is t:
            return entry[1]
        return plain(t.shape)  # a parameter, a buffer or a constant: no input axis

    def _where(self) -> str:
        return self.stack[-1] if self.stack else ""

    def attention(self, op: str, dims: Dims | None, axis: int) -> None:
        o = None if dims is None else origins(dims[axis])
        self.mixing.attentions.append(Mix(self._where(), op, o))

    def takes_positions(self, op: str, dims: Dims | None, axis: int, size: int) -> None:
        """``op`` takes single positions (``size`` 1, or drops the axis) of an axis that comes from an
        input axis. Over a token axis, a loop of them (a hand-written scan ``h = a * h + u[:, t]``)
        mixes tokens in ways no rule follows: the caller leaves such a block to the perturbation test."""
        if size == 1 and dims is not None and origins(dims[axis]):
            self.mixing.positions.append(Mix(self._where(), op, origins(dims[axis])))

    def contracts(self, dims: Dims | None, axis: int, partner: Dims | None, lost: bool = True) -> None:
        """A matmul sums ``axis`` of one operand against the other operand (``partner``): it mixes the
        positions of that axis, through learned weights where the partner carries no input axis
        (Linformer's (F, k) projection of the keys along the frames). ``lost``: record an operand
        that cannot be followed."""
        if dims is None:
            if lost:
                self.mixing.others.append(Mix(self._where(), "matmul", None))
            return
        o = origins(dims[axis])
        if o:
            self.mixing.others.append(Mix(self._where(), "matmul", o, constant=not _carries(partner)))

    def mixes(self, op: str, dims: Dims | None, axes: list[int]) -> None:
        if dims is None:
            self.mixing.others.append(Mix(self._where(), op, None))
            return
        o = frozenset().union(*(origins(dims[a]) for a in axes)) if axes else _NONE
        if o:
            self.mixing.others.append(Mix(self._where(), op, o))

    # ------------------------------------------------------------------ dispatch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        rule = _RULES.get(name)
        try:
            if rule is not None:
                rule(self, args, kwargs, out)
            elif torch.Tag.pointwise in func.tags:
                _pointwise(self, args, kwargs, out)
            else:
                self._unknown(name, args, kwargs, out)
        except Exception:  # a rule that does not fit this call: lose the trail, never fail
            self._unknown(name, args, kwargs, out)
        return out

    def _unknown(self, name: str, args, kwargs, out) -> None:
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:  # prim.device, sizes ...: nothing to follow
            return
        if not any(_carries(self.get(t)) for t in ins):
            for t in outs:
                self.label(t, plain(t.shape))
            return
        self.mixing.unknown.append(f"{name} in {self._where() or 'the block'}")
        same = len(outs) == 1 and ins and outs[0].shape == ins[0].shape
        for t in outs:  # a shape-preserving op keeps its axes (followed, but not trusted)
            self.label(t, self.get(ins[0]) if same else None)


# ---------------------------------------------------------------------- rules


def _out1(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _pointwise(tr: AxisTracker, args, kwargs, out) -> None:
    ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    res = _out1(out)
    tr.label(res, _broadcast(tuple(res.shape), [(tuple(t.shape), tr.get(t)) for t in ins]))


def _same(tr: AxisTracker, args, kwargs, out) -> None:
    for t in tree_flatten(out)[0]:
        if isinstance(t, torch.Tensor):
            tr.label(t, _reshape(tr.get(args[0]), tuple(t.shape)))


def _permute(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    tr.label(out, None if d is None else tuple(d[_dim(i, len(d))] for i in args[1]))


def _transpose(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    if d is None:
        return tr.label(out, None)
    d = list(d)
    if len(d) >= 2:
        a, b = (_dim(args[1], len(d)), _dim(args[2], len(d))) if len(args) > 2 else (0, 1)
        d[a], d[b] = d[b], d[a]
    tr.label(out, tuple(d))


def _expand(tr, args, kwargs, out) -> None:
    d, s = tr.get(args[0]), tuple(args[0].shape)
    if d is None:
        return tr.label(out, None)
    shape = tuple(out.shape)
    lead = len(shape) - len(s)
    new = [_single(size, _NONE) for size in shape[:lead]]
    new += [d[i] if s[i] == shape[lead + i] else _single(shape[lead + i], _NONE) for i in range(len(s))]
    tr.label(out, tuple(new))


def _select(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    tr.takes_positions("select", d, _dim(args[1], args[0].dim()), 1)
    tr.label(out, None if d is None else d[: _dim(args[1], len(d))] + d[_dim(args[1], len(d)) + 1 :])


def _cut(dims: Dims | None, axis: int, size: int) -> Dims | None:
    """``dims`` with one axis shortened to ``size`` (a slice keeps its origin)."""
    if dims is None:
        return None
    axis = _dim(axis, len(dims))
    kept = dims[axis] if math.prod(s for s, _ in dims[axis]) == size else _single(size, origins(dims[axis]))
    return dims[:axis] + (kept,) + dims[axis + 1 :]


def _slice(tr, args, kwargs, out) -> None:
    axis = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    tr.takes_positions("slice", tr.get(args[0]), _dim(axis, args[0].dim()), out.shape[_dim(axis, out.dim())])
    tr.label(out, _cut(tr.get(args[0]), axis, out.shape[_dim(axis, out.dim())]))


def _split(tr, args, kwargs, out) -> None:
    axis = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    for t in out:
        tr.label(t, _cut(tr.get(args[0]), axis, t.shape[_dim(axis, t.dim())]))


def _unbind(tr, args, kwargs, out) -> None:
    axis = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    d = tr.get(args[0])
    tr.takes_positions("unbind", d, _dim(axis, args[0].dim()), 1)
    for t in out:
        tr.label(t, None if d is None else d[: _dim(axis, len(d))] + d[_dim(axis, len(d)) + 1 :])


def _index_select(tr, args, kwargs, out) -> None:
    tr.label(out, _cut(tr.get(args[0]), args[1], out.shape[_dim(args[1], out.dim())]))


def _cat(tr, args, kwargs, out) -> None:
    tensors = [t for t in args[0] if t.numel() > 0 or t.dim() == out.dim()]
    axis = _dim(args[1] if len(args) > 1 else kwargs.get("dim", 0), out.dim())
    dims = [tr.get(t) for t in tensors]
    if any(d is None for d in dims):
        return tr.label(out, None)
    new = []
    for k, size in enumerate(out.shape):
        if k == axis:
            new.append(_single(size, frozenset().union(*(origins(d[k]) for d in dims))))
        else:
            new.append(_merge_axes(size, [d[k] for d in dims]) if size != 1 else ())
    tr.label(out, tuple(new))


def _stack(tr, args, kwargs, out) -> None:
    axis = _dim(args[1] if len(args) > 1 else kwargs.get("dim", 0), out.dim())
    dims = [tr.get(t) for t in args[0]]
    if any(d is None for d in dims):
        return tr.label(out, None)
    rest = [_merge_axes(size, [d[k] for d in dims]) if size != 1 else () for k, size in enumerate(args[0][0].shape)]
    tr.label(out, tuple(rest[:axis]) + (_single(out.shape[axis], _NONE),) + tuple(rest[axis:]))


def _mm(tr, args, kwargs, out) -> None:  # mm(a, b), bmm(a, b), addmm(bias, a, b), baddbmm(c, a, b)
    a, b = (args[1], args[2]) if len(args) >= 3 and isinstance(args[2], torch.Tensor) else (args[0], args[1])
    da, db = tr.get(a), tr.get(b)
    tr.contracts(da, a.dim() - 1, db)
    tr.contracts(db, b.dim() - 2, da, lost=False)  # ``W @ x``: the frames of x on the right
    if da is None or db is None:
        return tr.label(out, None)
    if a.dim() == 3:  # (b, n, k) @ (b, k, m): the batch axis may be broadcast on one side
        batch = _merge_axes(out.shape[0], [d[0] for d in (da, db) if d[0]]) if out.shape[0] != 1 else ()
        return tr.label(out, (batch, da[1], db[2]))
    tr.label(out, (da[0], db[1]))


def _softmax(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    tr.attention("softmax", d, _dim(args[1], args[0].dim()))
    tr.label(out, d)


def _sdpa(tr, args, kwargs, out) -> None:
    q, k, v = args[0], args[1], args[2]
    dk = tr.get(k)
    tr.attention("scaled_dot_product_attention", dk, k.dim() - 2)
    dq, dv = tr.get(q), tr.get(v)
    res = _out1(out)
    tr.label(res, None if dq is None or dv is None else dq[:-1] + dv[-1:])


def _fused_mha(tr, args, kwargs, out) -> None:  # aten._native_multi_head_attention (batch first)
    q, k = args[0], args[1]
    tr.attention("multi_head_attention", tr.get(k), k.dim() - 2)
    tr.label(_out1(out), tr.get(q))


def _encoder_layer(tr, args, kwargs, out) -> None:  # aten._transformer_encoder_layer_fwd (batch first)
    src = args[0]
    tr.attention("transformer_encoder_layer", tr.get(src), src.dim() - 2)
    tr.label(_out1(out), tr.get(src))


def _layer_norm(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    k = len(args[1])
    tr.mixes("layer_norm", d, list(range(args[0].dim() - k, args[0].dim())))
    tr.label(out[0], d)
    for t in out[1:]:
        tr.label(t, None if d is None else d[: args[0].dim() - k] + ((),) * k)


def _group_norm(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    tr.mixes("group_norm", d, list(range(1, args[0].dim())))
    tr.label(out[0], d)
    for t in out[1:]:
        tr.label(t, plain(t.shape))


def _batch_norm(tr, args, kwargs, out) -> None:  # eval mode: per channel, mixes nothing
    tr.label(_out1(out), tr.get(args[0]))
    if isinstance(out, (tuple, list)):
        for t in out[1:]:
            tr.label(t, plain(t.shape))


def _convolution(tr, args, kwargs, out) -> None:
    x, w = args[0], args[1]
    d = tr.get(x)
    kernel = tuple(w.shape[2:])
    mixed = [1] + [2 + i for i, s in enumerate(kernel) if s > 1]
    tr.mixes("convolution", d, mixed)
    if d is None:
        return tr.label(out, None)
    new = [d[0], _single(out.shape[1], _NONE)]
    for i in range(2, out.dim()):
        new.append(d[i] if out.shape[i] == x.shape[i] else _single(out.shape[i], origins(d[i])))
    tr.label(out, tuple(new))


def _reduction(dim_at: int) -> Callable:
    def rule(tr, args, kwargs, out) -> None:  # sum, mean, amax, var_mean ...: reduce ``dim`` (or all)
        x = args[0]
        d = tr.get(x)
        dims = args[dim_at] if len(args) > dim_at else kwargs.get("dim")
        if isinstance(dims, int):
            dims = [dims]
        if not isinstance(dims, (list, tuple)) or not dims:
            dims = list(range(x.dim()))
        axes = [_dim(a, x.dim()) for a in dims]
        tr.mixes("reduction", d, axes)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                if d is None:
                    tr.label(t, None)
                elif t.dim() == x.dim():
                    tr.label(t, tuple(() if i in axes else a for i, a in enumerate(d)))
                else:
                    tr.label(t, tuple(a for i, a in enumerate(d) if i not in axes))

    return rule


def _along(op: str, dim_at: int) -> Callable:
    def rule(tr, args, kwargs, out) -> None:  # cumsum, roll, sort ...: shape kept, mixes along dims
        d = tr.get(args[0])
        dims = args[dim_at] if len(args) > dim_at else kwargs.get("dim", kwargs.get("dims", -1))
        dims = [dims] if isinstance(dims, int) else list(dims)
        tr.mixes(op, d, [_dim(a, args[0].dim()) for a in dims])
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                tr.label(t, d if t.shape == args[0].shape else _cut(d, dims[0], t.shape[_dim(dims[0], t.dim())]))

    return rule


def _factory(tr, args, kwargs, out) -> None:
    for t in tree_flatten(out)[0]:
        if isinstance(t, torch.Tensor):
            tr.label(t, plain(t.shape))


def _copy_into(tr, args, kwargs, out) -> None:  # copy_(dst, src): dst takes src's axes
    tr.label(out, _broadcast(tuple(args[0].shape), [(tuple(args[1].shape), tr.get(args[1]))]))


def _repeat(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    if d is None:
        return tr.label(out, None)
    reps = list(args[1])
    lead = len(reps) - len(d)
    new = [_single(r, _NONE) for r in reps[:lead]]
    for a, r in zip(d, reps[lead:]):
        new.append(a if r == 1 else _single(r, _NONE) + a)
    tr.label(out, tuple(new))


def _pad(tr, args, kwargs, out) -> None:
    d = tr.get(args[0])
    if d is None:
        return tr.label(out, None)
    tr.label(out, tuple(a if out.shape[i] == args[0].shape[i] else _single(out.shape[i], origins(a)) for i, a in enumerate(d)))


_RULES: dict[str, Callable] = {
    **dict.fromkeys(
        ["view", "_unsafe_view", "reshape", "_reshape_alias", "squeeze", "unsqueeze", "flatten", "unflatten",
         "clone", "contiguous", "alias", "detach", "_to_copy", "to", "lift_fresh", "lift_fresh_copy", "view_as",
         "fill_", "zero_", "fill", "tril", "triu", "masked_fill", "masked_fill_", "native_dropout", "dropout",
         "index_put", "index_put_", "_conj", "resolve_conj", "resolve_neg"],
        _same,
    ),
    "permute": _permute,
    "transpose": _transpose,
    "transpose_": _transpose,
    "t": _transpose,
    "expand": _expand,
    "select": _select,
    "slice": _slice,
    "narrow": _slice,
    "split": _split,
    "split_with_sizes": _split,
    "unsafe_split": _split,
    "chunk": _split,
    "unbind": _unbind,
    "index_select": _index_select,
    "cat": _cat,
    "stack": _stack,
    "mm": _mm,
    "addmm": _mm,
    "bmm": _mm,
    "baddbmm": _mm,
    "_softmax": _softmax,
    "_safe_softmax": _softmax,
    "_log_softmax": _softmax,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "_native_multi_head_attention": _fused_mha,
    "_transformer_encoder_layer_fwd": _encoder_layer,
    "native_layer_norm": _layer_norm,
    "native_group_norm": _group_norm,
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    "_native_batch_norm_legit": _batch_norm,
    "convolution": _convolution,
    "copy_": _copy_into,
    "copy": _copy_into,
    "repeat": _repeat,
    "constant_pad_nd": _pad,
    **dict.fromkeys(["sum", "mean", "amax", "amin", "var", "std", "var_mean", "std_mean", "prod", "logsumexp",
                     "max", "min", "argmax", "argmin", "any", "all"], _reduction(1)),
    "norm": _reduction(2),
    "linalg_vector_norm": _reduction(2),
    "cumsum": _along("cumsum", 1),
    "cumprod": _along("cumprod", 1),
    "roll": _along("roll", 2),
    "flip": _along("flip", 1),
    "sort": _along("sort", 1),
    "topk": _along("topk", 2),
    **dict.fromkeys(["empty", "zeros", "ones", "full", "arange", "randn", "rand", "empty_like", "zeros_like",
                     "ones_like", "full_like", "new_empty", "new_zeros", "new_ones", "new_full", "scalar_tensor",
                     "empty_strided", "_local_scalar_dense", "eye"], _factory),
}
for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_attention_math",
              "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
              "scaled_dot_product_attention", "_scaled_dot_product_attention_math_for_mps"):
    _RULES[_name] = _sdpa


def module_stack(block: nn.Module, stack: list[str]) -> list:
    """Hooks that keep ``stack`` equal to the names of the submodules of ``block`` running now."""
    handles = []
    for name, m in block.named_modules():
        if not name:
            continue

        def push(mod, inputs, name=name):
            stack.append(name)

        def pop(mod, inputs, output):
            if stack:
                stack.pop()

        handles.append(m.register_forward_pre_hook(push))
        handles.append(m.register_forward_hook(pop))
    return handles


def trace_mixing(
    block: nn.Module, args: tuple, kwargs: dict, input_dims: Callable[[int, torch.Tensor], Dims]
) -> tuple[Mixing, Any]:
    """Run ``block(*args, **kwargs)``; return what it mixes and its output. ``input_dims(i, t)``
    gives the dims of the i-th tensor input (in pytree flattening order)."""
    stack: list[str] = []
    tracker = AxisTracker(stack)
    for i, t in enumerate(t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)):
        tracker.label(t, input_dims(i, t))
    handles = module_stack(block, stack)
    try:
        with tracker:
            output = block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return tracker.mixing, output
