"""Rewrite pass: splits of the frame axis into parts.

Models cut the clip into parts: ``torch.chunk(x, 3, dim=1)``, ``x.split(9, dim=1)``,
``x[:, :T // 3]`` with ``T = x.shape[1]``, or a literal ``x[:, :81]`` of a 243-frame clip (read or
written: ``x[:, :81] = v``).
After the cut every part must keep its share of the f kept frames: a boundary at frame b of F
moves to b·f/F, which must be a whole number (a chunk into p parts needs f divisible by p).
Literal boundaries and sizes are rewritten to b·f/F; boundaries computed from the frame count
(``T // 3``) follow f by themselves. An f that leaves a boundary fractional is refused with the
valid f near it.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

import einops
import torch
import torch.fx as fx


@dataclass(frozen=True)
class Split:
    """One split of the frame axis: f must be a multiple of ``parts`` and put ``bound``
    (a boundary at frame ``bound`` of F) on a whole frame."""

    where: str
    parts: int | None = None
    bound: int | None = None

    def fits(self, f: int, frames: int) -> bool:
        if self.parts is not None and (f % self.parts or f < self.parts):
            return False
        return self.bound is None or self.bound * f % frames == 0

    def reason(self) -> str:
        if self.parts is not None:
            return f"{self.where}: it splits the frames into {self.parts} parts"
        return f"{self.where}: its boundary at frame {self.bound} of F must stay on a whole frame"


def _is(u: fx.Node, func: Any, method: str) -> bool:
    return (u.op == "call_function" and u.target is func) or (u.op == "call_method" and u.target == method)


def _arg(u: fx.Node, i: int, name: str, default: Any = None) -> Any:
    return u.args[i] if len(u.args) > i else u.kwargs.get(name, default)


def _set_arg(u: fx.Node, i: int, name: str, value: Any) -> None:
    if len(u.args) > i:
        args = list(u.args)
        args[i] = value
        u.args = tuple(args)
    else:
        u.kwargs = {**u.kwargs, name: value}


def _value(v: Any, facts: dict) -> int | None:
    if type(v) is int:
        return v
    f = facts.get(v.name) if isinstance(v, fx.Node) else None
    return f.value if f is not None else None


def find_splits(
    nodes: list[fx.Node], facts: dict, frames: int, input_axes: Callable[[fx.Node], tuple | None]
) -> list[tuple[Split, Callable[[int], None] | None]]:
    """Splits of a frame axis among ``nodes``, each with a function that rewrites its literals
    for f kept frames (None when nothing is literal)."""
    out: list[tuple[Split, Callable[[int], None] | None]] = []
    for u in nodes:
        axes = input_axes(u)
        if not axes:
            continue
        if _is(u, torch.chunk, "chunk"):
            dim = _arg(u, 2, "dim", 0)
            parts = _value(_arg(u, 1, "chunks"), facts)
            if type(dim) is int and axes[dim] == ("F",) and parts and frames % parts == 0:
                out.append((Split(f"`{u.name}` (chunk into {parts})", parts=parts), None))
        elif _is(u, torch.split, "split"):
            dim = _arg(u, 2, "dim", 0)
            sizes = _arg(u, 1, "split_size_or_sections", _arg(u, 1, "split_size"))
            if type(dim) is int and axes[dim] == ("F",):
                out += _split_sizes(u, sizes, frames)
        elif u.op == "call_function" and u.target in _INDEXING:  # x[:, :9] and x[:, :9] = v alike
            src = facts.get(u.args[0].name) if isinstance(u.args[0], fx.Node) else None
            if src is None or src.data_dependent:  # a slice of an embedding (pos[:, :n]) splits no tokens
                out += _slices(u, axes, facts, frames)
        elif u.op == "call_function" and u.target in _EINOPS and len(u.args) > 1 and isinstance(u.args[1], str):
            parts = _einops_parts(u.args[1], u.kwargs, axes, frames)
            if parts:
                out.append((Split(f"`{u.name}` (einops '{u.args[1]}')", parts=parts), None))
    return out


_EINOPS = (einops.rearrange, einops.repeat, einops.reduce)
_INDEXING = (operator.getitem, operator.setitem)


def _einops_parts(pattern: str, sizes: dict, axes: tuple, frames: int) -> int | None:
    """``'b (w t) c -> ...', w=3`` on a frame axis: the frames are split into 3 parts."""
    left = pattern.split("->")[0]
    groups = re.findall(r"\([^)]*\)|\S+", left)
    if "..." in left or len(groups) != len(axes):
        return None
    dim = next((i for i, a in enumerate(axes) if a == ("F",)), None)
    if dim is None or not groups[dim].startswith("("):
        return None
    names = groups[dim].strip("()").split()
    given = [sizes[n] for n in names if type(sizes.get(n)) is int and sizes[n] != frames]
    if len(names) < 2 or len(given) != len(names) - 1:
        return None
    parts = math.prod(given)
    return parts if parts > 1 and frames % parts == 0 else None


def may_split(graph: fx.Graph) -> bool:
    """Cheap pre-check: does ``graph`` contain an op that could split a frame axis (a chunk,
    a split, a bounded slice or an einops group with a given size)?"""
    for u in graph.nodes:
        if _is(u, torch.chunk, "chunk") or _is(u, torch.split, "split"):
            return True
        if u.op == "call_function" and u.target in _INDEXING and len(u.args) > 1:
            items = u.args[1] if isinstance(u.args[1], tuple) else (u.args[1],)
            if any(isinstance(i, slice) and (i.start is not None or i.stop is not None) for i in items):
                return True
        if u.op == "call_function" and u.target in _EINOPS and any(type(v) is int for v in u.kwargs.values()):
            return True
    return False


def _split_sizes(u: fx.Node, sizes: Any, frames: int) -> list:
    if type(sizes) is int:
        if frames % sizes:
            return []
        def fix(f: int, u=u, s=sizes) -> None:
            _set_arg(u, 1, "split_size_or_sections", s * f // frames)
        return [(Split(f"`{u.name}` (split into parts of {sizes})", bound=sizes), fix)]
    if isinstance(sizes, (list, tuple)) and all(type(s) is int for s in sizes) and sum(sizes) == frames:
        bounds = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]
        def fix(f: int, u=u, s=sizes) -> None:
            _set_arg(u, 1, "split_size_or_sections", [v * f // frames for v in s])
        return [(Split(f"`{u.name}` (split into {list(sizes)})", bound=b), fix if i == 0 else None) for i, b in enumerate(bounds)]
    return []


def _slices(u: fx.Node, axes: tuple, facts: dict, frames: int) -> list:
    index = u.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is Ellipsis or i is None for i in items):
        return []
    out = []
    for dim, item in enumerate(items[: len(axes)]):
        if not isinstance(item, slice) or axes[dim] != ("F",) or item.step not in (None, 1):
            continue
        literal = False
        for end in (item.start, item.stop):
            v = _value(end, facts)
            if v is None:
                continue
            v = v + frames if v < 0 else v
            if 0 < v < frames:
                out.append((Split(f"`{u.name}` (slice [{_text(item)}] of the frame axis)", bound=v), None))
                literal = literal or type(end) is int
        if literal:
            out[-1] = (out[-1][0], _slice_fix(u, dim, frames))
    return out


def _text(s: slice) -> str:
    def t(v: Any) -> str:
        return "" if v is None else v.name if isinstance(v, fx.Node) else str(v)
    return f"{t(s.start)}:{t(s.stop)}"


def _slice_fix(u: fx.Node, dim: int, frames: int) -> Callable[[int], None]:
    def scale(v: Any, f: int) -> Any:
        if type(v) is not int:
            return v
        return v * f // frames if v >= 0 else -((-v) * f // frames)

    def fix(f: int) -> None:
        index = u.args[1]
        items = list(index) if isinstance(index, tuple) else [index]
        s = items[dim]
        items[dim] = slice(scale(s.start, f), scale(s.stop, f), s.step)
        u.args = (u.args[0], tuple(items) if isinstance(index, tuple) else items[0], *u.args[2:])

    return fix
