"""Pass "frame-indexed parameters": a (1, F, C) positional embedding used after the cut.

A constant with a frame axis (a parameter or buffer indexed by frame) combined element-wise
with pruned tokens (``x + pos_embed``) is gathered per sample with the kept indices, in a
shape that broadcasts against its partner's layout
(:class:`~hotpatch.engine.wrappers.GatherConstant`). (F, F) constants in ``A @ x`` or einsums
are the frame-sized-layers pass's; any other use is refused by the analysis before the rewrite
(:mod:`hotpatch.engine.uses`).
"""

from __future__ import annotations

import torch.fx as fx

from hotpatch.engine.edit import Edit, RewritePass, can_gather, is_elementwise
from hotpatch.engine.uses import Use
from hotpatch.engine.wrappers import GatherConstant
from hotpatch.errors import RewriteError


class FrameIndexedConstants(RewritePass):
    name = "frame-indexed parameters"

    def claims(self, edit: Edit, use: Use) -> bool:
        fa = edit.fact(use.value)
        return (use.kind == "constant" and use.user is not None and fa is not None and fa.carries_frames
                and can_gather(edit, use.user, fa.shape))

    def run(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            for a in list(u.all_input_nodes):
                if self.ungathered(edit, u, a):
                    gather_constant(edit, u, a)

    def check(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            left = next((a for a in u.all_input_nodes if self.ungathered(edit, u, a)), None)
            if left is not None:
                raise self.fail(f"`{left.name}` reaches `{u.name}` with all F frames")

    @staticmethod
    def ungathered(edit: Edit, u: fx.Node, a: fx.Node) -> bool:
        fa = edit.fact(a)
        return (a not in edit.indices and a not in edit.pruned and (u, a) not in edit.consumed
                and fa is not None and fa.carries_frames and not fa.data_dependent)


def gather_constant(edit: Edit, u: fx.Node, const: fx.Node) -> None:
    partner = next((a for a in u.all_input_nodes if a in edit.pruned and edit.fact(a)), None)
    if not is_elementwise(u) or partner is None:
        raise RewriteError(
            f"`{const.name}` (shape {edit.fact(const).shape}) is indexed by frame and used by "
            f"`{u.format_node()}` after the cut; hotpatch can only gather frame-indexed "
            "parameters used in element-wise ops (x + pos_embed). Choose n so the cut comes later."
        )
    lay = edit.layout(partner, "tensor next to a frame-indexed constant")
    name = edit.add_module("hotpatch_gather", GatherConstant(edit.fact(const).shape, lay, edit.cfg.frames))
    with edit.graph.inserting_before(u):
        kept = edit.graph.call_module(name, (const, edit.index_for(u)))
    u.replace_input_with(const, kept)
    edit.consumed.add((u, const))
