"""Where a block combines a batch-free per-frame context with its tokens, and in which layout.

A (1, F, C) table passed to a block (``blk(x, table)``) has no batch axis; after a cut it is
gathered at each sample's kept frames, so it gains one. Which one is decided inside the block:
the op that first combines the table with a tensor that has the batch (``x + table`` on a
(B·J, F, C) view of (B, F, J, C) tokens, ``q + table`` on (B·H, F, d) heads) broadcasts the
table's size-1 (or missing) leading axis against one axis of that tensor, and the gathered table
must have that axis's rows in the same order: (B, f, C) there would broadcast at B=1 only.

:func:`context_rows` runs the unpatched model once at B=2 on fake tensors (shapes only) and
follows every axis inside the blocks that receive such a table (:class:`~hotpatch.engine.mixing.AxisTracker`):
it reads the rows at the first use, then runs the block again with a table of those rows in
their place and checks that every use now meets rows of the same structure. The answer is the
rows (``-1`` the batch, an int a fixed-size factor), ``None`` where no use meets the batch, or a
sentence saying why the table cannot be gathered per sample (the caller refuses with it).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from hotpatch.engine.analyse import NodeFacts, fake_tensors
from hotpatch.engine.inputs import Inputs
from hotpatch.engine.mixing import AxisTracker, Dims, module_stack, origins, plain

BATCH = ("hotpatch", "batch")  # origin label of the batch atom
Rows = tuple[int, ...]


def _all_origins(dims: Dims | None) -> frozenset:
    return frozenset().union(*(origins(axis) for axis in dims)) if dims else frozenset()


def _ctx_label(k: int) -> tuple:
    return ("hotpatch", "context", k)


class _UseTracker(AxisTracker):
    """Records each op where a tensor made from the context meets a tensor with the batch
    that is not made from it: ``(context shape, context dims, partner shape, partner dims)``."""

    def __init__(self, stack: list[str], ctx: frozenset) -> None:
        super().__init__(stack)
        self.ctx = ctx
        self.uses: list[tuple[tuple[int, ...], Dims, tuple[int, ...], Dims, str]] = []
        self.lost = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        ins = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        seen = [(t, self.get(t)) for t in ins]
        mine = [(t, d) for t, d in seen if d is not None and _all_origins(d) & self.ctx]
        others = [(t, d) for t, d in seen if d is not None and BATCH in _all_origins(d)
                  and not _all_origins(d) & self.ctx]
        if any(d is None for _, d in seen) and mine:
            self.lost = True
        for (c, dc) in mine[:1]:
            for (p, dp) in others[:1]:
                self.uses.append((tuple(c.shape), dc, tuple(p.shape), dp, func.overloadpacket.__name__))
        return super().__torch_dispatch__(func, types, args, kwargs)


def _signature(shape: tuple[int, ...], dims: Dims, axis: int) -> tuple:
    """The structure of the rows on ``axis``: the batch as -1, other atoms by size."""
    if axis < 0:
        return ()
    return tuple(-1 if BATCH in o else s for s, o in dims[axis])


def _batch_axis(dims: Dims) -> int | None:
    return next((i for i, axis in enumerate(dims) if any(BATCH in o for _, o in axis)), None)


def _input_dims(facts: NodeFacts | None, t: torch.Tensor, k: int, frames: int, joints: int | None) -> Dims:
    """Dims of block input ``k`` at B=2: its batch atom labelled :data:`BATCH`, others by axis."""
    labels = {ax: (k, ax) for ax in range(t.dim())}
    if facts is None or facts.kind != "tensor" or facts.axes is None or len(facts.axes) != t.dim():
        return plain(t.shape, axis_labels=labels)
    out = []
    for ax, axis in enumerate(facts.axes):
        if axis is None or "B" not in axis:
            out.append(plain((t.shape[ax],), axis_labels={0: (k, ax)})[0])
            continue
        sizes = {"B": 2, "F": frames, "J": joints}
        out.append(tuple((sizes[a] if a in sizes else int(a), frozenset({BATCH if a == "B" else (k, ax, a)}))
                         for a in axis))
    return tuple(out)


def _run_block(block: nn.Module, args: tuple, kwargs: dict, dims: list[Dims], ctx: frozenset) -> _UseTracker:
    stack: list[str] = []
    tracker = _UseTracker(stack, ctx)
    for t, d in zip((t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)), dims):
        tracker.label(t, d)
    handles = module_stack(block, stack)
    try:
        with tracker:
            block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return tracker


def _replace(value: Any, old: torch.Tensor, new: torch.Tensor) -> Any:
    if value is old:
        return new
    if isinstance(value, (tuple, list)):
        return type(value)(_replace(v, old, new) for v in value)
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return value


def rows_in_block(block: nn.Module, args: tuple, kwargs: dict, sources: list[fx.Node | None], ctx: fx.Node,
                  facts: dict[str, NodeFacts], frames: int, joints: int | None) -> Rows | str | None:
    """The rows the context ``ctx`` (a block argument) must have at B=2 for ``block``: see the module docstring."""
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    k = next(i for i, s in enumerate(sources) if s is ctx)
    dims = [_input_dims(facts.get(s.name) if s is not None else None, t, i, frames, joints)
            for i, (t, s) in enumerate(zip(tensors, sources))]
    label = frozenset({_ctx_label(a) for a in range(tensors[k].dim())})
    dims[k] = plain(tensors[k].shape, axis_labels={a: _ctx_label(a) for a in range(tensors[k].dim())})
    first = _run_block(block, args, kwargs, dims, label)
    if first.lost or not first.uses:
        return None
    c_shape, _, p_shape, dp, op = first.uses[0]
    p = _batch_axis(dp)
    assert p is not None
    a = p - (len(p_shape) - len(c_shape))
    what = f"{op} meets it with tokens of layout ({', '.join(_describe(axis) for axis in dp)})"
    if a >= 0 and c_shape[a] != 1:
        return f"{what}, against an axis of size {c_shape[a]} of it"
    rows = _signature(p_shape, dp, p)
    # again with a table of those rows in their place: every use must meet rows of the same structure
    table = tensors[k]
    lead = table.shape[0] == 1 and table.dim() > 1
    n_rows = 1
    for r in rows:
        n_rows *= 2 if r == -1 else r
    shaped = table.expand(n_rows, *table.shape[1:]) if lead else table.unsqueeze(0).expand(n_rows, *table.shape)
    dims[k] = (dp[p],) + plain(shaped.shape[1:], axis_labels={a: _ctx_label(a + 1) for a in range(shaped.dim() - 1)})
    try:
        again = _run_block(block, _replace(args, table, shaped), _replace(kwargs, table, shaped), dims,
                           frozenset({_ctx_label(a) for a in range(shaped.dim())}))
    except Exception as exc:
        return f"{what}; with its rows gathered that way the block fails ({type(exc).__name__})"
    for cs, dc, ps, dq, op2 in again.uses:
        pq = _batch_axis(dq)
        if pq is None:
            continue
        aq = pq - (len(ps) - len(cs))
        if _signature(cs, dc, aq) != _signature(ps, dq, pq):
            return f"{what}, but gathered in those rows it reaches {op2} in another layout (an op picks or moves its rows)"
    return rows


def _describe(axis: tuple) -> str:
    return "·".join("B" if BATCH in o else str(s) for s, o in axis) or "1"


class _Probe2(fx.Interpreter):
    """Runs the graph at B=2; calls of the blocks in ``wanted`` are followed for each context."""

    def __init__(self, gm: fx.GraphModule, wanted: dict[str, list[fx.Node]], facts, frames, joints) -> None:
        super().__init__(gm)
        self.wanted, self.facts, self.frames, self.joints = wanted, facts, frames, joints
        self.found: dict[tuple[str, str], Rows | str | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.name in self.wanted:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            by_id = {id(v): a for a, v in [*zip(n.args, args), *((n.kwargs[k], kwargs[k]) for k in kwargs)]
                     if isinstance(a, fx.Node) and isinstance(v, torch.Tensor)}
            sources = [by_id.get(id(t)) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            block = self.module.get_submodule(n.target)
            for ctx in self.wanted[n.name]:
                try:
                    self.found[(n.name, ctx.name)] = rows_in_block(
                        block, args, kwargs, sources, ctx, self.facts, self.frames, self.joints)
                except Exception:  # an op the tracker cannot follow: nothing read
                    self.found[(n.name, ctx.name)] = None
        return super().run_node(n)


def context_rows(gm: fx.GraphModule, example: Inputs, wanted: dict[str, list[fx.Node]], facts: dict[str, NodeFacts],
                 frames: int, joints: int | None) -> dict[tuple[str, str], Rows | str | None]:
    """For each block node in ``wanted`` and each batch-free context it receives: the rows
    (see :func:`rows_in_block`), read in one run of ``gm`` at B=2 (fake tensors, or real ones
    where an op needs values)."""
    twice = example.twice()
    probe = _Probe2(gm, wanted, facts, frames, joints)
    with torch.no_grad():
        try:
            with fake_tensors() as mode:
                probe.run(*twice.map(mode.from_tensor).args(gm.graph))
        except Exception:
            probe.found.clear()
            probe.run(*twice.args(gm.graph))
    return probe.found
