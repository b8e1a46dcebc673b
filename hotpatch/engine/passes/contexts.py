"""Pass "per-frame contexts": a frame-carrying tensor made independently of the input's values
and read after a cut: passed to the blocks as another argument (``blk(x, ctx)``), or a mask or
position table computed in ``forward`` from the clip length (``torch.ones(b, t)``, a NumPy
``m[::5] = 0`` made into a tensor, a sine table) and used by any later op.

Such a context carries frames but no data, so neither the cut nor the carried-tensors pass prunes
it. It describes all F frames, by their positions in the clip, so after a cut it is gathered with
the kept indices of the user's stage: row k of the pruned tokens is original frame ``index[k]``,
and its mask entry or table row is the context's at that frame. (Making it again for f frames
would describe frames 0..f-1 instead: wrong for ``m[::5] = 0`` or a sine table, the same only for
values equal at every frame.) With a batch axis it is gathered in its own layout
(:class:`~hotpatch.engine.wrappers.GatherAt`), at any user; without one, where a block reads it,
per sample in a shape that broadcasts against the block's pruned input
(:class:`~hotpatch.engine.wrappers.GatherConstant`), or, where it does not broadcast against it (a
(1, F, d) rotary table, (F,) positions), in its own shape with the batch first
(:class:`~hotpatch.engine.wrappers.GatherOwnShape`); element-wise uses are the frame-indexed
parameters pass's. Nothing is recovered from it. Where the block combines such a context with its
tokens in a layout of its own (a (1, F, C) table added to a (B·J, F, C) view of (B, F, J, C)
tokens inside the block), the gather gives the rows of that use
(:mod:`hotpatch.engine.context_use`, read before any edit); one that no gather can give is refused.
"""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.context_use import Rows, context_rows
from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.passes.masks import is_pair_mask
from hotpatch.engine.refusals import one_line
from hotpatch.engine.uses import Use
from hotpatch.engine.wrappers import GatherAt, GatherConstant, GatherOwnShape
from hotpatch.errors import HotpatchError, RewriteError


class FrameContexts(RewritePass):
    name = "per-frame contexts"

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Rows | str | None] = {}  # (block node, context) -> rows at its use

    def inspect(self, edit: Edit) -> None:
        """Where a block receives a batch-free context, read the rows of its use inside the block
        (one B=2 run on fake tensors, only for such models); refuse a use no gather can serve."""
        blocks = {b.node for b in edit.plan.blocks}
        wanted: dict[str, list[fx.Node]] = {}
        for u in edit.region:
            if u.op != "call_module" or u.name not in blocks or not any(edit.will_be_pruned(a) for a in u.all_input_nodes):
                continue
            ctxs = [a for a in u.all_input_nodes
                    if self.is_context(edit, a) and not self.batched(edit, a) and not is_pair_mask(edit, a)]
            if ctxs:
                wanted[u.name] = ctxs
        if not wanted or edit.plan.example is None:
            return
        self.rows = context_rows(edit.gm, edit.plan.example, wanted, edit.facts, edit.plan.frames, edit.plan.joints)
        for (block, ctx), rows in self.rows.items():
            if isinstance(rows, str):
                node = next(n for n in edit.nodes if n.name == block)
                raise RewriteError(one_line(
                    f"`{ctx}` (a per-frame context of shape {edit.facts[ctx].shape}, no batch axis) is passed to "
                    f"`{node.target}`, which uses it with its tokens after the cut: {rows}; hotpatch cannot gather "
                    "it per sample in that layout. Give the context a batch axis (expand it to the batch before "
                    "the call), or choose n so that the cut comes after this block."))

    def claims(self, edit: Edit, use: Use) -> bool:
        """A value-independent tensor with frames, read after the cut: with a batch axis by any op,
        without one by a block next to a tensor the cut prunes (not an (F, F) mask: "masks and tables")."""
        u, ctx = use.user, use.value
        fact = edit.fact(ctx) if ctx is not None else None
        if use.kind != "constant" or u is None or fact is None or not fact.carries_frames:
            return False
        is_block = u.op == "call_module" and u.name in {b.node for b in edit.plan.blocks}
        partner = next((a for a in u.all_input_nodes if edit.will_be_pruned(a)), None)
        if not self.batched(edit, ctx) and not (is_block and partner is not None) or is_pair_mask(edit, ctx):
            return False
        try:
            self.module(edit, u, ctx, partner)
        except HotpatchError:
            return False
        return True

    def run(self, edit: Edit) -> None:
        blocks = {b.node for b in edit.plan.blocks}
        gathered: dict[tuple[fx.Node, int, object], fx.Node] = {}
        for u in edit.pruned_nodes():
            is_block = u.op == "call_module" and u.name in blocks
            partner = next((a for a in u.all_input_nodes if a in edit.pruned and edit.fact(a) is not None), None)
            for a in list(u.all_input_nodes):
                if not self.is_context(edit, a) or not (self.batched(edit, a) or is_block and partner is not None):
                    continue
                key = (a, edit.stage(u), self.rows.get((u.name, a.name)))  # one gather per layout of use
                if key not in gathered:
                    gathered[key] = self.gather(edit, u, a, partner)
                u.replace_input_with(a, gathered[key])
                edit.consumed.add((u, a))

    def check(self, edit: Edit) -> None:
        blocks = {b.node for b in edit.plan.blocks}
        for u in edit.pruned_nodes():
            is_block = u.op == "call_module" and u.name in blocks
            left = next((a for a in u.all_input_nodes
                         if self.is_context(edit, a) and (is_block or self.batched(edit, a))), None)
            if left is not None:
                raise self.fail(f"`{u.target if is_block else u.name}` still reads the context `{left.name}` "
                                "with all F frames")

    @staticmethod
    def is_context(edit: Edit, a: fx.Node) -> bool:
        fa = edit.fact(a)
        return (a not in edit.indices and a not in edit.pruned and fa is not None
                and fa.carries_frames and not fa.data_dependent)

    @staticmethod
    def batched(edit: Edit, a: fx.Node) -> bool:
        return any("B" in axis for axis in edit.fact(a).axes if axis is not None)

    def module(self, edit: Edit, u: fx.Node, ctx: fx.Node, partner: fx.Node | None) -> nn.Module:
        """The gather for ``ctx``: in its own layout with a batch axis; else per sample in the rows
        of its use inside the block ``u`` where that is not the batch alone, else in a shape that
        broadcasts against the block's input ``partner``, or in its own shape (a rotary table)."""
        fact = edit.fact(ctx)
        if FrameContexts.batched(edit, ctx):
            return GatherAt(edit.layout(ctx, "per-frame context"), edit.cfg.frames)
        assert partner is not None
        rows = self.rows.get((u.name, ctx.name))
        frame_axes = [i for i, axis in enumerate(fact.axes) if axis == ("F",)]
        if isinstance(rows, tuple) and rows != (-1,) and len(frame_axes) == 1:
            return GatherOwnShape(frame_axes[0], fact.shape[0] == 1 and len(fact.shape) > 1, None, rows)
        lay = edit.layout(partner, "block input next to a per-frame context")
        try:
            return GatherConstant(fact.shape, lay, edit.cfg.frames)
        except RewriteError:  # it does not broadcast against the input: its own shape, the batch first
            frame_axes = [i for i, axis in enumerate(fact.axes) if axis == ("F",)]
            if len(frame_axes) != 1:
                raise
            return GatherOwnShape(frame_axes[0], fact.shape[0] == 1 and frame_axes[0] > 0, lay)

    def gather(self, edit: Edit, u: fx.Node, ctx: fx.Node, partner: fx.Node | None) -> fx.Node:
        fact = edit.fact(ctx)
        module = self.module(edit, u, ctx, partner)
        name = edit.add_module("hotpatch_gather", module)
        with edit.graph.inserting_before(u):
            node = edit.graph.call_module(name, (ctx, edit.index_for(u)))
        edit.new_stage[node] = edit.stage(u)
        user = f"passed to `{u.target}`" if u.op == "call_module" else f"read by `{u.name}`"
        rows = self.rows.get((u.name, ctx.name))
        layout = (f", in the rows ({'·'.join('B' if r == -1 else str(r) for r in rows)}) that the block combines it with"
                  if isinstance(rows, tuple) and isinstance(module, GatherOwnShape) else "")
        edit.note(f"`{ctx.name}` (a per-frame context, shape {fact.shape}) {user} after the cut: "
                  f"its kept frames are gathered per sample{layout}")
        return node
