"""Stages that change the frame count after the cut: strided temporal convolutions and pooling.

The analysis finds the strided stages (:mod:`hotpatch.engine.reductions`). After the cut, a
reduced length follows from f through the same strides. A constant indexed
by reduced positions (a (1, F/3, C) embedding) is used as the model uses it, sliced to the new
length; it is not gathered as if its rows were frames. f must leave each stride the remainder
it leaves with F (no frame dropped that the original kept), else a :class:`ConfigError` lists
the valid f near the requested one (:func:`misfit`, :func:`refuse`). A tensor with a reduced axis that leaves the pruned region
is recovered to the original reduced length; its token i is placed at the reduced position of
the kept frame in the middle of its window.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import NodeFacts
from hotpatch.engine.edit import Edit, RewritePass, edit_sizes, is_elementwise, is_sizing
from hotpatch.engine.reductions import Reduction
from hotpatch.engine.uses import Use
from hotpatch.engine.wrappers import RecoverAt, find_heads, make_recoverer
from hotpatch.errors import ConfigError, RewriteError
from hotpatch.layout import Layout


def new_lengths(reductions: list[Reduction], frames: int, f: int) -> dict[int, int]:
    """Reduced length in the original -> reduced length with ``f`` kept frames."""
    lengths = {frames: f}
    for r in reductions:
        if r.length_in in lengths:
            lengths[r.length_out] = r.out_length(lengths[r.length_in])
    return lengths


def misfit(reductions: list[Reduction], frames: int, f: int) -> str | None:
    """Why ``f`` kept frames do not fit the strided stages, or None if they do."""
    lengths = {frames: f}
    for r in reductions:
        n = lengths.get(r.length_in)
        if n is None:
            continue
        if not r.fits(n):
            what = "leave no token" if r.span(n) < 0 else "drop frames the original keeps"
            return f"the strided stage {r.describe()}: {n} tokens reach it, which would {what}"
        lengths[r.length_out] = r.out_length(n)
    return None


def valid_frames(reductions: list[Reduction], frames: int) -> list[int]:
    """Every f in 1..F that fits all the strided stages."""
    return [f for f in range(1, frames + 1) if misfit(reductions, frames, f) is None]


def near(valid: list[int], f: int, count: int = 4) -> str:
    """The ``count`` valid values closest to ``f``, in order."""
    return ", ".join(map(str, sorted(sorted(valid, key=lambda v: (abs(v - f), v))[:count])))


def refuse(f: int, reason: str, valid: list[int], name: str = "f") -> ConfigError:
    err = ConfigError(f"{name}={f} does not fit {reason}. Valid {name} near {f}: {near(valid, f)}; pass one of them.")
    err.valid, err.requested = list(valid), f  # read by hotpatch.keep: apply(keep=...) moves to a valid f
    return err


class ReducedIndex(nn.Module):
    """Positions (B, n) on a reduced stage of ``length`` tokens (total stride ``stride``, first
    position ``offset``) of the tokens left from the kept frames ``index`` (B, f): token i sits at
    the reduced position of the kept frame in the middle of its window (``middle``: stride // 2
    for windows, 0 where every stage picks single positions, as strided slices do)."""

    def __init__(self, stride: int, length: int, tokens: int, offset: int = 0, middle: int | None = None) -> None:
        super().__init__()
        self.stride, self.length, self.tokens, self.offset = stride, length, tokens, offset
        self.middle = stride // 2 if middle is None else middle

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        slots = torch.arange(self.tokens, device=index.device) * self.stride + self.offset + self.middle
        slots = slots.clamp(max=index.shape[1] - 1)
        return ((index[:, slots] - self.offset) // self.stride).clamp(0, self.length - 1)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, length={self.length}, tokens={self.tokens}, offset={self.offset}"


def stage_chain(reductions: list[Reduction], frames: int, length: int) -> list[Reduction]:
    """The reductions from F down to the reduced ``length``, first to last."""
    by_out = {r.length_out: r for r in reductions}
    chain: list[Reduction] = []
    while length != frames and length in by_out:
        chain.insert(0, by_out[length])
        length = by_out[length].length_in
    return chain


def total_stride(reductions: list[Reduction], frames: int, length: int) -> int:
    """Product of the strides from F down to the reduced ``length``."""
    return math.prod(r.stride for r in stage_chain(reductions, frames, length))


def total_offset(reductions: list[Reduction], frames: int, length: int) -> int:
    """The frame of the reduced stage's first position where its stages are strided slices (x[:, s::k])."""
    offset, stride = 0, 1
    for r in stage_chain(reductions, frames, length):
        offset += r.offset * stride
        stride *= r.stride
    return offset


class StridedStageUses(RewritePass):
    """Constants and literals of the reduced lengths after the cut follow f (pass "strided stages")."""

    name = "strided stages"

    def claims(self, edit: Edit, use: Use) -> bool:
        fc = edit.fact(use.value)
        return (use.kind == "constant" and use.user is not None and fc is not None and not fc.carries_frames
                and stage_partner(edit, use.user, use.value) is not None)

    def run(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            for a in list(u.all_input_nodes):
                fa = edit.fact(a)
                if (a not in edit.indices and a not in edit.pruned and fa is not None
                        and fa.kind == "tensor" and not fa.data_dependent and not fa.carries_frames):
                    slice_reduced_constant(edit, u, a)
            replace_reduced_literals(edit, u)


def stage_partner(edit: Edit, u: fx.Node, const: fx.Node) -> tuple[int, int] | None:
    """``(axis of const, stage length)`` if ``u`` combines ``const`` element-wise with a tensor of
    one reduced axis whose length the constant's aligned axis has (a (1, F/3, C) stage embedding)."""
    if not is_elementwise(u):
        return None
    fc = edit.fact(const)
    for a in edit.orig_args.get(u, u.args):
        fa = edit.fact(a)
        if a is const or fa is None or len(fa.reduced) != 1 or not fa.shape:
            continue
        (axis, length), = fa.reduced.items()
        caxis = axis - (len(fa.shape) - len(fc.shape))
        return (caxis, length) if caxis >= 0 and fc.shape[caxis] == length else None
    return None


def slice_reduced_constant(edit: Edit, u: fx.Node, const: fx.Node) -> None:
    """A constant next to a reduced-length tensor (a (1, F/3, C) stage embedding) is
    sliced to the new reduced length: its rows are positions of the stage, not frames."""
    found = stage_partner(edit, u, const)
    if found is not None:
        caxis, length = found
        fc = edit.fact(const)
        new = edit.lengths.get(length)
        if new is None or new == length:
            return
        with edit.graph.inserting_before(u):
            sliced = edit.graph.call_function(torch.narrow, (const, caxis, 0, new))
        u.replace_input_with(const, sliced)
        edit.note(f"`{const.name}` {tuple(fc.shape)} indexed by positions of the length-{length} stage: "
                  f"sliced to its first {new} (the stage's length with f={edit.cfg.keeps[-1]})")


def replace_reduced_literals(edit: Edit, u: fx.Node) -> None:
    """Int literals equal to a reduced length in the sizes of a view/reshape that makes it."""
    f = edit.fact(u)
    if f is None or f.kind != "tensor" or not f.reduced or not edit.lengths or not is_sizing(u):
        return

    def change(axis: int, size):
        length = f.reduced.get(axis)
        new = edit.lengths.get(length) if length is not None else None
        return new if type(size) is int and size == length and new not in (None, length) else size

    edit_sizes(u, change)


def unmerge_reduced(edit: Edit, e: fx.Node, length: int) -> RewriteError:
    return RewriteError(
        f"recover={edit.cfg.recover!r} cannot recover `{e.name}`: it leaves the pruned region at the "
        f"reduced length {length} of a strided stage, where frames have no cluster of their own; "
        "use recover='linear' (or 'nearest') for this model.")


def recover_reduced(edit: Edit, e: fx.Node, fe: NodeFacts, insert_at: fx.Node) -> fx.Node:
    """Recover a reduced-length tensor leaving the pruned region to its original length."""
    (axis, length), = fe.reduced.items()
    new = edit.lengths.get(length, length)
    axes = list(fe.axes)
    axes[axis] = tuple("F" if a == length else a for a in axes[axis])
    lay = Layout(tuple(axes), edit.plan.joints)
    dim = lay.to_canonical(torch.empty(fe.shape), length).shape[-1]
    sub = replace(edit.cfg, frames=length, recover_frames=None)
    recoverer = make_recoverer(sub, dim, find_heads(edit.gm, edit.plan, dim))
    if getattr(recoverer, "needs_assignment", False):
        raise unmerge_reduced(edit, e, length)
    reductions, frames = edit.plan.reductions, edit.cfg.frames
    stride = total_stride(reductions, frames, length)
    slices = all(r.kernel == 1 for r in stage_chain(reductions, frames, length))
    index = ReducedIndex(stride, length, new, total_offset(reductions, frames, length), 0 if slices else None)
    idx_name = edit.add_module("hotpatch_reduced_index", index)
    name = edit.add_module("hotpatch_recover", RecoverAt(recoverer, lay, length))
    with edit.graph.inserting_after(insert_at):
        positions = edit.graph.call_module(idx_name, (edit.indices[-1],))
    with edit.graph.inserting_after(positions):
        rec = edit.graph.call_module(name, (e, positions))
    for u in [u for u in e.users if edit.is_post(u)]:
        u.replace_input_with(e, rec)
    edit.note(f"`{e.name}` leaves the pruned region with {new} tokens of the length-{length} stage: "
              f"recovered to {length} (token i at the reduced position of its window's middle kept frame)")
    return rec
