"""Batch-like factors merged with frames: the H hypotheses of a diffusion denoiser (part of the analysis).

A multi-hypothesis lifter runs H hypotheses of each clip side by side: ``(B, H, F, J, C)``,
merged to ``(B·H, F, J, C)``, then ``(B·H·F, J, C)`` for spatial blocks and ``(B·H·J, F, C)`` for
temporal ones, in any order of the factors. The two probes (B=1, B=2) only see that such an
axis doubles with the batch; which of its factors are frames is read from the op that made it
(an einops ``rearrange``, a ``view``/``reshape``, a ``permute``/``transpose``, or any op that
keeps the axis of an input), in graph order. A factor H is *batch-like* when an axis ``B·H``
and an axis ``B·H·F`` both occur; its atom becomes :class:`~hotpatch.layout.Extra`, so pruning
and recovery treat each (sample, hypothesis) pair as one sample.
"""

from __future__ import annotations

import math
import re
from typing import Any

import einops
import torch
import torch.fx as fx

from hotpatch.layout import Axis, Extra

_REGROUP_METHODS = {"view", "reshape", "flatten", "unflatten", "contiguous", "squeeze", "unsqueeze"}
_REGROUP_FUNCTIONS = {torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze}


def batch_factors(facts: dict, frames: int, joints: int | None) -> set[int]:
    """Sizes H of an axis of a batch-carrying tensor (``B·H`` or ``H`` beside ``B``; not its last,
    channel axis) that also occur merged with the batch and the frames (an axis ``B·H·F``)."""
    merged, sizes = set(), set()
    for f in facts.values():
        if f.kind != "tensor" or not f.axes or not any(a and "B" in a for a in f.axes):
            continue
        for i, axis in enumerate(f.axes):
            ints = {a for a in axis or () if type(a) is int}
            if axis and "B" in axis:
                merged |= ints
            if i < len(f.axes) - 1:
                sizes |= ints
    return {k for k in sizes if k > 1 and k not in (frames, joints) and k * frames in merged}


def label_batch_factors(gm: fx.GraphModule, facts: dict, frames: int, joints: int | None) -> set[int]:
    """Rewrite the axes of ``facts`` in place where an axis merges the batch with batch-like
    factors (see the module docstring); frame counts merged with them (``x.shape[0]`` of a
    (B·H·F, J, C) tensor) become ``"BF"`` counts. Returns the factors found."""
    factors = batch_factors(facts, frames, joints)
    if not factors:
        return factors
    sizes = {"F": frames, "J": joints}
    for n in gm.graph.nodes:
        f = facts.get(n.name)
        if f is None:
            continue
        if f.kind == "int" and f.count is None and f.value2 is not None and _merged_count(f.value, f.value2, frames, factors):
            f.count = "BF"
        if f.kind != "tensor" or not f.axes or None in f.axes:
            continue
        derived = _derive(n, facts, sizes)
        has_batch = any("B" in a for a in f.axes)
        axes = []
        for i, axis in enumerate(f.axes):
            new = derived[i] if derived is not None and _fits(derived[i], axis, sizes) else axis
            last = i == len(f.axes) - 1
            axes.append(tuple(Extra(a) if type(a) is int and a in factors and has_batch and not last else a for a in new))
        f.axes = tuple(axes)
    return factors


def _merged_count(v1: int | None, v2: int, frames: int, factors: set[int]) -> bool:
    return v1 is not None and v2 == 2 * v1 and v1 % frames == 0 and v1 // frames in _products(factors)


def _products(factors: set[int]) -> set[int]:
    out = {1}
    for k in factors:
        out |= {p * k for p in out}
    return out - {1}


def _size(atom: Any, sizes: dict) -> int:
    """An atom's size at B=2 (the second probe)."""
    if atom == "B":
        return 2
    if isinstance(atom, str):
        return sizes[atom] or 0
    return int(atom)


def _fits(derived: Axis | None, axis: Axis, sizes: dict) -> bool:
    """The derived atoms describe this axis: same size at B=2, the batch in it iff in the probe's."""
    if derived is None or ("B" in derived) != ("B" in axis):
        return False
    return math.prod(_size(a, sizes) for a in derived) == math.prod(_size(a, sizes) for a in axis)


def _axes_of(a: Any, facts: dict) -> tuple[Axis, ...] | None:
    f = facts.get(a.name) if isinstance(a, fx.Node) else None
    return f.axes if f is not None and f.kind == "tensor" and f.axes and None not in f.axes else None


def _derive(n: fx.Node, facts: dict, sizes: dict) -> list[Axis | None] | None:
    """The atoms of each output axis of ``n``, read from the op and its input's atoms."""
    out = facts[n.name].axes
    if n.op == "call_function" and n.target is einops.rearrange and len(n.args) >= 2 and isinstance(n.args[1], str):
        src = _axes_of(n.args[0], facts)
        return _rearrange(n.args[1], src, _values(n.kwargs, facts), sizes) if src else None
    if (n.op == "call_method" and n.target in _REGROUP_METHODS) or (n.op == "call_function" and n.target in _REGROUP_FUNCTIONS):
        src = _axes_of(n.args[0], facts)
        return _regroup(src, out, sizes) if src else None
    if n.op == "call_method" and n.target in ("permute", "transpose"):
        src = _axes_of(n.args[0], facts)
        return _permute(n, src) if src else None
    return _inherit(n, out, facts, sizes)


def _values(kwargs: dict, facts: dict) -> dict[str, int]:
    out = {}
    for k, v in kwargs.items():
        if type(v) is int:
            out[k] = v
        elif isinstance(v, fx.Node) and facts.get(v.name) is not None and facts[v.name].kind == "int":
            out[k] = facts[v.name].value
    return out


_TOKEN = re.compile(r"\(([^)]*)\)|(\S+)")


def _side(text: str) -> list[list[str]] | None:
    parts = []
    for group, name in _TOKEN.findall(text):
        names = group.split() if group or not name else [name]
        if any(not x.isidentifier() for x in names):
            return None  # an ellipsis or an anonymous axis: not followed
        parts.append(names)
    return parts


def _rearrange(pattern: str, src: tuple[Axis, ...], known: dict[str, int], sizes: dict) -> list[Axis | None] | None:
    left_text, _, right_text = pattern.partition("->")
    left, right = _side(left_text), _side(right_text)
    if left is None or right is None or len(left) != len(src):
        return None
    bound: dict[str, Axis] = {}
    for names, atoms in zip(left, src):
        split = _split(names, list(atoms), known, sizes)
        if split is None:
            return None
        bound.update(split)
    if any(name not in bound for names in right for name in names):
        return None
    return [tuple(a for name in names for a in bound[name]) for names in right]


def _atom_for(value: int, sizes: dict) -> Any:
    if value == 1:
        return "B"  # b=b, read at B=1
    return next((k for k, v in sizes.items() if v == value), value)


def _split(names: list[str], atoms: list, known: dict[str, int], sizes: dict) -> dict[str, Axis] | None:
    """Share the atoms of one input axis among the names of its group, in order."""
    if len(names) == 1:
        return {names[0]: tuple(atoms)}
    claimed: dict[str, int] = {}
    for name in names:
        if name in known:
            atom = _atom_for(known[name], sizes)
            if atom not in atoms:
                return None
            claimed[name] = atoms.index(atom)
    positions = [claimed[x] for x in names if x in claimed]
    if positions != sorted(positions):
        return None
    unknown = [x for x in names if x not in claimed]
    if len(unknown) > 1 and len(unknown) + len(claimed) != len(atoms):
        return None
    out: dict[str, Axis] = {}
    start = 0
    for i, name in enumerate(names):
        if name in claimed:
            out[name] = (atoms[claimed[name]],)
            start = claimed[name] + 1
        else:
            nxt = next((claimed[x] for x in names[i + 1 :] if x in claimed), len(atoms))
            end = start + 1 if len(unknown) > 1 else nxt
            if end > nxt or start >= end:
                return None
            out[name] = tuple(atoms[start:end])
            start = end
    return out


def _regroup(src: tuple[Axis, ...], out: tuple[Axis, ...], sizes: dict) -> list[Axis | None] | None:
    """A reshape keeps the order of elements: the output axes take the input atoms in order."""
    stream = [a for axis in src for a in axis if _size(a, sizes) != 1]
    result: list[Axis | None] = []
    for axis in out:
        want = math.prod(_size(a, sizes) for a in axis)
        if want == 1:
            result.append(axis)
            continue
        taken, total = [], 1
        while stream and total < want:
            a = stream.pop(0)
            taken.append(a)
            total *= _size(a, sizes)
        if total != want:
            return None  # an atom split in two: not followed
        result.append(tuple(taken))
    return result


def _permute(n: fx.Node, src: tuple[Axis, ...]) -> list[Axis | None] | None:
    dims = list(n.args[1:])
    if n.target == "permute":
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        if len(dims) != len(src) or any(type(d) is not int for d in dims):
            return None
        return [src[d % len(src)] for d in dims]
    if len(dims) != 2 or any(type(d) is not int for d in dims):
        return None
    order = list(range(len(src)))
    a, b = (d % len(src) for d in dims)
    order[a], order[b] = order[b], order[a]
    return [src[d] for d in order]


def _inherit(n: fx.Node, out: tuple[Axis, ...], facts: dict, sizes: dict) -> list[Axis | None]:
    """An op that keeps axes of its inputs (a block, a norm, ``x + pos``): each output axis takes
    the atoms of an input axis at the same place (right-aligned, as in broadcasting)."""
    shape = facts[n.name].shape
    inputs = [(facts[a.name].shape, _axes_of(a, facts)) for a in n.all_input_nodes if _axes_of(a, facts)]
    result: list[Axis | None] = []
    for i, axis in enumerate(out):
        found = None
        for in_shape, in_axes in inputs:
            j = i - (len(shape) - len(in_shape))
            if j >= 0 and in_shape[j] == shape[i] and _fits(in_axes[j], axis, sizes):
                found = in_axes[j]
                if len(found) > 1:
                    break
        result.append(found)
    return result
