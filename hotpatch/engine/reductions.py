"""Where frames get strided: the stages of hierarchical VPTs (part of the analysis).

Hierarchical VPTs (the Strided Transformer, P-STMO) shrink the sequence between stages,
F -> F/3 -> F/9, with a stride-s ``Conv1d`` or pooling over the frame axis. This module finds
these *reductions* (a strided ``nn.Conv1d`` / ``nn.MaxPool1d`` / ``nn.AvgPool1d``, or the
functional ``F.conv1d`` / ``F.avg_pool1d`` / ``F.max_pool1d``, whose length axis is the frame
axis or an earlier reduced axis; or a strided slice ``x[:, s::k]`` of such an axis, kernel 1 and
offset s, the frame axis followed through it) and marks every later axis of the reduced length
(``NodeFacts.reduced``: axis -> length in the original model). How the rewrite uses them is in
:mod:`hotpatch.engine.passes.strided_stages`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

_REDUCERS = (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)
_POOL_FUNCTIONS = (torch.nn.functional.avg_pool1d, torch.nn.functional.max_pool1d, torch.max_pool1d)


def _arg(n: fx.Node, i: int, name: str, default):
    return n.args[i] if len(n.args) > i else n.kwargs.get(name, default)


def _params(gm: fx.GraphModule, n: fx.Node, facts: dict) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) of a strided reduction over the last axis: an
    ``nn.Conv1d`` / pooling module, or ``F.conv1d`` / ``F.avg_pool1d`` / ``F.max_pool1d`` with
    int arguments. None for anything else (or a stride of 1)."""
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if type(m) not in _REDUCERS:
            return None
        found = (_one(m.kernel_size), _one(m.stride), _one(m.padding), _one(getattr(m, "dilation", 1)))
    elif n.op == "call_function" and n.target is torch.nn.functional.conv1d:
        weight = facts.get(n.args[1].name) if len(n.args) > 1 and isinstance(n.args[1], fx.Node) else None
        if weight is None or weight.kind != "tensor" or len(weight.shape) != 3:
            return None
        found = (weight.shape[-1], _arg(n, 3, "stride", 1), _arg(n, 4, "padding", 0), _arg(n, 5, "dilation", 1))
    elif n.op == "call_function" and n.target in _POOL_FUNCTIONS:
        kernel = _arg(n, 1, "kernel_size", None)
        stride = _arg(n, 2, "stride", None)
        found = (kernel, kernel if stride in (None, [], ()) else stride, _arg(n, 3, "padding", 0),
                 _arg(n, 4, "dilation", 1) if n.target is not torch.nn.functional.avg_pool1d else 1)
    else:
        return None
    try:
        kernel, stride, padding, dilation = (_one(v) for v in found)
    except (TypeError, ValueError):  # a size computed at run time, or padding="same"
        return None
    return (kernel, stride, padding, dilation) if stride > 1 else None


def _one(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


@dataclass(frozen=True)
class Reduction:
    """One length-changing op: ``length_in`` -> ``length_out`` (sizes in the original model)."""

    node: str
    target: str
    length_in: int
    length_out: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    offset: int = 0  # a strided slice x[:, s::k]: its first position s (kernel 1)

    def span(self, n: int) -> int:
        return n + 2 * self.padding - self.dilation * (self.kernel - 1) - 1 - self.offset

    def out_length(self, n: int) -> int:
        return self.span(n) // self.stride + 1

    def fits(self, n: int) -> bool:
        """Length ``n`` leaves at least one output token and, for a window wider than one position,
        the same remainder as the original length (no frame dropped that the original kept)."""
        if self.kernel == 1:  # single positions (a strided slice): nothing is summed over a window
            return self.span(n) >= 0
        return self.span(n) >= 0 and self.span(n) % self.stride == self.span(self.length_in) % self.stride

    def describe(self) -> str:
        if self.offset or self.kernel == 1 and self.target.startswith("getitem"):
            return f"`{self.target}` (one position in {self.stride} from {self.offset}: {self.length_in} -> {self.length_out})"
        return f"`{self.target}` (stride {self.stride}, kernel {self.kernel}: {self.length_in} -> {self.length_out})"


def find_reductions(gm: fx.GraphModule, facts: dict, frames: int, joints: int | None) -> list[Reduction]:
    """Find the strided stages and mark later axes of their reduced lengths in ``facts``."""
    found: list[Reduction] = []
    for n in gm.graph.nodes:
        if n.op not in ("call_module", "call_function") or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        sliced = _strided_slice(n, facts, frames)
        if sliced is not None:
            found.append(sliced)
            _mark_downstream(n, facts, sliced.length_out, joints)
            continue
        params = _params(gm, n, facts)
        if params is None:
            continue
        fin, fout = facts.get(n.args[0].name), facts.get(n.name)
        if fin is None or fout is None or fin.kind != "tensor" or fout.kind != "tensor" or not fin.axes:
            continue
        last = len(fin.axes) - 1
        length = frames if fin.axes[last] == ("F",) else fin.reduced.get(last)
        if length is None or fout.axes[-1] != (fout.shape[-1],):
            continue
        kernel, stride, padding, dilation = params
        target = n.target if isinstance(n.target, str) else n.name  # a function: its node
        red = Reduction(n.name, target, length, fout.shape[-1], kernel, stride, padding, dilation)
        found.append(red)
        _mark_downstream(n, facts, red.length_out, joints)
    return found


def _strided_slice(n: fx.Node, facts: dict, frames: int) -> Reduction | None:
    """``x[:, s::k]`` (k > 1, int bounds) on a frame axis or a reduced axis of ``x``: a reduction
    of kernel 1, stride k and offset s."""
    if n.op != "call_function" or n.target is not operator.getitem:
        return None
    fin, fout = facts.get(n.args[0].name), facts.get(n.name)
    if fin is None or fout is None or fin.kind != "tensor" or fout.kind != "tensor" or not fin.axes:
        return None
    entries = list(n.args[1]) if isinstance(n.args[1], tuple) else [n.args[1]]
    if any(e is None or e is Ellipsis for e in entries):
        return None
    dropped = 0
    for axis, e in enumerate(entries[: len(fin.axes)]):
        if isinstance(e, int):
            dropped += 1
            continue
        if not isinstance(e, slice):
            return None
        length = frames if fin.axes[axis] == ("F",) else fin.reduced.get(axis)
        if (e.step or 1) <= 1 or length is None:
            continue
        if not all(v is None or type(v) is int for v in (e.start, e.stop, e.step)) or e.stop is not None:
            return None
        start = e.indices(length)[0]
        out_axis = axis - dropped
        if fout.axes[out_axis] != (fout.shape[out_axis],):
            return None
        red = Reduction(n.name, n.name, length, fout.shape[out_axis], 1, e.step, 0, 1, start)
        return red if red.out_length(length) == red.length_out else None
    return None


def _mark_downstream(start: fx.Node, facts: dict, length: int, joints: int | None) -> None:
    """Mark axes of ``length`` on the paths from ``start`` while the axis survives (a node
    without such an axis ends the path, so a later (…, 3) coordinate axis is not mistaken)."""
    if length == joints:
        return
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        f = facts.get(node.name)
        if f is None or f.kind != "tensor" or not f.axes:
            continue
        hits = [i for i, a in enumerate(f.axes) if a is not None and length in a and "F" not in a]
        if len(hits) != 1:
            continue
        f.reduced[hits[0]] = length
        for u in node.users:
            if u not in seen:
                seen.add(u)
                stack.append(u)
