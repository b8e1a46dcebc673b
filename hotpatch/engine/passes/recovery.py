"""Pass "recovery": all F frames back after the last block (seq2seq), or the centre frame (seq2frame).

seq2seq: every frame-carrying tensor that leaves the pruned region is recovered right after
the recovery point (the last block and the norm applied to its output) by one
:class:`~hotpatch.engine.wrappers.RecoverAt` with the configured recoverer, from the last
stage's tokens through the composed indices; a reduced-length tensor (after a strided stage) is
recovered to its original length; frame counts that leave the region are rescaled to F.
seq2frame: each output with a frame axis becomes its centre frame
(:class:`~hotpatch.engine.wrappers.CenterSelect`), which every stage kept.
"""

from __future__ import annotations

import logging

import torch
import torch.fx as fx
from torch.fx.node import map_arg

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.passes.strided_stages import recover_reduced, unmerge_reduced
from hotpatch.engine.wrappers import CenterSelect, RecoverAt, find_heads, make_recoverer
from hotpatch.errors import RewriteError
from hotpatch.recover import UNMERGE_BLENDS

log = logging.getLogger(__name__)


class Recovery(RewritePass):
    name = "recovery"

    def inspect(self, edit: Edit) -> None:
        """What leaves the pruned region has layouts the recovery can read (refusals before any edit)."""
        if edit.sites.recover is None:
            for o in center_outputs(edit, edit.region):
                edit.layout(o, "model output")
            return
        found = False
        for e in (n for n in edit.region if any(edit.is_post(u) for u in n.users)):
            fe = edit.fact(e)
            if fe is not None and fe.kind == "tensor" and not fe.carries_frames and len(fe.reduced) == 1:
                if edit.cfg.recover in UNMERGE_BLENDS:
                    raise unmerge_reduced(edit, e, next(iter(fe.reduced.values())))
                found = True
            elif fe is not None and fe.carries_frames:
                edit.layout(e, "tensor leaving the pruned region")
                found = True
        if not found:
            raise RewriteError(NOTHING_TO_RECOVER)

    def run(self, edit: Edit) -> None:
        if edit.sites.recover is None:
            select_center(edit)
        else:
            insert_recovery(edit)

    def check(self, edit: Edit) -> None:
        prefix = "hotpatch_center" if edit.sites.recover is None else "hotpatch_recover"
        if not any(n.op == "call_module" and n.target.startswith(prefix) for n in edit.graph.nodes):
            raise self.fail(f"no {prefix} call in the patched graph")


def insert_recovery(edit: Edit) -> None:
    anchor = edit.nodes[edit.sites.recover]
    exits = [n for n in edit.nodes if n in edit.pruned and any(edit.is_post(u) for u in n.users)]
    exits += [n for n in edit.pruned if n not in edit.pos and any(edit.is_post(u) for u in n.users)]
    insert_at = anchor
    for e in exits:
        fe = edit.fact(e)
        if fe is not None and fe.kind == "int":
            if fe.count:
                for u in [u for u in e.users if edit.is_post(u)]:
                    edit.replace_count(u, e, edit.frames_at(edit.stage(e)), edit.post_frames)
            continue
        if fe is not None and not fe.carries_frames and len(fe.reduced) == 1:
            insert_at = recover_reduced(edit, e, fe, insert_at)
            continue
        if fe is None or not fe.carries_frames:
            log.warning("`%s` is computed from pruned tokens and used after the recovery point", e.name)
            continue
        lay = edit.layout(e, "tensor leaving the pruned region")
        dim = lay.to_canonical(torch.empty(fe.shape), edit.cfg.frames).shape[-1]
        recoverer = make_recoverer(edit.cfg, dim, find_heads(edit.gm, edit.plan, dim))
        name = edit.add_module("hotpatch_recover", RecoverAt(recoverer, lay, edit.post_frames))
        args = (e, edit.index_for(e))
        if getattr(recoverer, "needs_assignment", False):
            args += (edit.assignment_for(e),)
        with edit.graph.inserting_after(insert_at):
            rec = edit.graph.call_module(name, args)
        insert_at = rec
        for u in [u for u in e.users if edit.is_post(u)]:
            u.replace_input_with(e, rec)
    if not any(n.op == "call_module" and n.target.startswith("hotpatch_recover") for n in edit.graph.nodes):
        raise RewriteError(NOTHING_TO_RECOVER)


NOTHING_TO_RECOVER = "no frame-carrying tensor leaves the pruned region; nothing to recover"


def center_outputs(edit: Edit, pruned) -> list[fx.Node]:
    """The model's outputs with a frame axis computed from pruned tokens (seq2frame picks their centre)."""
    output = edit.nodes[-1]
    outs = [a for a in output.all_input_nodes if a in pruned and edit.fact(a) and edit.fact(a).carries_frames]
    if not outs:
        raise RewriteError(
            "pipeline='seq2frame' needs a model whose output keeps the frame axis (it then "
            "returns the centre frame); this model's output has no frame axis. Use "
            "pipeline='seq2seq' (the default), which recovers all frames before the head."
        )
    return outs


def select_center(edit: Edit) -> None:
    output = edit.nodes[-1]
    outs = center_outputs(edit, edit.pruned)
    replaced: dict[fx.Node, fx.Node] = {}
    for o in outs:
        lay = edit.layout(o, "model output")
        name = edit.add_module("hotpatch_center", CenterSelect(lay, edit.cfg.center))
        with edit.graph.inserting_before(output):
            replaced[o] = edit.graph.call_module(name, (o, edit.index_for(o)))
    output.args = map_arg(output.args, lambda a: replaced.get(a, a))
