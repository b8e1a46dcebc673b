"""Pass "per-frame contexts": a frame-carrying tensor made once, independent of the input's
values, and passed to the blocks after a cut as another argument (``blk(x, ctx)``).

A context computed from frame positions (``ctx = mlp(self.frame_pos)``, maybe expanded to the
batch) carries frames but no data, so neither the cut nor the carried-tensors pass prunes it.
Every block call after the cut gets it gathered with the kept indices of its stage: in its own
layout when it has a batch axis (:class:`~hotpatch.engine.wrappers.GatherAt`), else per sample
in a shape that broadcasts against the block's pruned input
(:class:`~hotpatch.engine.wrappers.GatherConstant`). Nothing is recovered from it.
"""

from __future__ import annotations

import torch.fx as fx

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.uses import Use
from hotpatch.errors import HotpatchError
from hotpatch.engine.wrappers import GatherAt, GatherConstant


class FrameContexts(RewritePass):
    name = "per-frame contexts"

    def claims(self, edit: Edit, use: Use) -> bool:
        u, ctx = use.user, use.value
        if use.kind != "constant" or u is None or u.op != "call_module" or u.name not in {b.node for b in edit.plan.blocks}:
            return False
        partner = next((a for a in u.all_input_nodes if edit.will_be_pruned(a)), None)
        fact = edit.fact(ctx)
        if partner is None or fact is None or not fact.carries_frames:
            return False
        try:
            if any("B" in axis for axis in fact.axes if axis is not None):
                edit.layout(ctx, "per-frame context")
            else:
                GatherConstant(fact.shape, edit.layout(partner, "block input next to a per-frame context"), edit.cfg.frames)
        except HotpatchError:
            return False
        return True

    def run(self, edit: Edit) -> None:
        blocks = {b.node for b in edit.plan.blocks}
        gathered: dict[tuple[fx.Node, int], fx.Node] = {}
        for u in edit.pruned_nodes():
            if u.op != "call_module" or u.name not in blocks:
                continue
            partner = next((a for a in u.all_input_nodes if a in edit.pruned and edit.fact(a) is not None), None)
            for a in list(u.all_input_nodes):
                if partner is None or not self.is_context(edit, a):
                    continue
                key = (a, edit.stage(u))
                if key not in gathered:
                    gathered[key] = self.gather(edit, u, a, partner)
                u.replace_input_with(a, gathered[key])
                edit.consumed.add((u, a))

    def check(self, edit: Edit) -> None:
        blocks = {b.node for b in edit.plan.blocks}
        for u in edit.pruned_nodes():
            if u.op == "call_module" and u.name in blocks:
                left = next((a for a in u.all_input_nodes if self.is_context(edit, a)), None)
                if left is not None:
                    raise self.fail(f"block `{u.target}` still reads the context `{left.name}` with all F frames")

    @staticmethod
    def is_context(edit: Edit, a: fx.Node) -> bool:
        fa = edit.fact(a)
        return (a not in edit.indices and a not in edit.pruned and fa is not None
                and fa.carries_frames and not fa.data_dependent)

    @staticmethod
    def gather(edit: Edit, u: fx.Node, ctx: fx.Node, partner: fx.Node) -> fx.Node:
        fact = edit.fact(ctx)
        if any("B" in axis for axis in fact.axes if axis is not None):
            module = GatherAt(edit.layout(ctx, "per-frame context"), edit.cfg.frames)
        else:
            lay = edit.layout(partner, "block input next to a per-frame context")
            module = GatherConstant(fact.shape, lay, edit.cfg.frames)
        name = edit.add_module("hotpatch_gather", module)
        with edit.graph.inserting_before(u):
            node = edit.graph.call_module(name, (ctx, edit.index_for(u)))
        edit.new_stage[node] = edit.stage(u)
        edit.note(f"`{ctx.name}` (a per-frame context, shape {fact.shape}) passed to `{u.target}` after the cut: "
                  "its kept frames are gathered per sample")
        return node
