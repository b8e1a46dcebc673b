"""Passes "guard" and "cut": check the input's frame count, then prune at every cut.

At the first cut one :class:`~hotpatch.engine.wrappers.PruneAtCut` prunes every frame-carrying
tensor alive there with one set of indices; each later stage's
:class:`~hotpatch.engine.wrappers.PruneAgain` selects among the tokens the previous stage kept
and returns the composed original frame indices. The users of a pruned tensor from its cut
on take the pruned version; every node computed from pruned tokens is marked pruned.
"""

from __future__ import annotations

import operator

import torch.fx as fx

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.folded import frames_folded
from hotpatch.engine.wrappers import PruneAgain, PruneAtCut, check_frames, make_pruner, needs_assignment
from hotpatch.errors import RewriteError


class GuardInput(RewritePass):
    """The patched model checks that its input has the F frames it was patched for (the clip's
    length where the model subsamples it); with several inputs, that each is a tensor and each
    that carries frames has F of them."""

    name = "guard"

    def run(self, edit: Edit) -> None:
        placeholders = [n for n in edit.nodes if n.op == "placeholder"]
        inputs = edit.plan.inputs
        if len(inputs) <= 1:
            guards = [(placeholders[0], 1, "")]
        else:
            by_name = {n.target: n for n in placeholders}
            guards = [(by_name[i.name], i.frame_axis if _plain_frames(edit, by_name[i.name], i.frame_axis) else None, i.name)
                      for i in inputs if i.name in by_name]
        for x, axis, name in guards:
            frames = (edit.plan.clip_frames or edit.cfg.frames) if axis is not None else None
            with edit.graph.inserting_after(x):
                guard = edit.graph.call_function(check_frames, (x, frames, axis or 1, name))
            x.replace_all_uses_with(guard, delete_user_cb=lambda u, g=guard: u is not g)
            edit.origin[guard] = x  # the guarded input has the input's facts (a later use is gathered)


def _plain_frames(edit: Edit, x: fx.Node, axis: int | None) -> bool:
    """Whether axis ``axis`` of input ``x`` holds the frames alone (not merged with the batch)."""
    f = edit.fact(x)
    return axis is not None and f is not None and f.axes is not None and f.axes[axis] == ("F",)


class PruneAtCuts(RewritePass):
    name = "cut"

    def inspect(self, edit: Edit) -> None:
        """Something carries frames at the first cut, in layouts the pruner can read."""
        for n in live_at_cut(edit):
            edit.layout(n, "tensor alive at the cut")

    def run(self, edit: Edit) -> None:
        self.first_cut(edit)
        mark_pruned(edit)
        for stage in range(2, len(edit.cfg.keeps) + 1):
            self.later_cut(edit, stage)
            mark_pruned(edit)

    def check(self, edit: Edit) -> None:
        if len(edit.indices) != len(edit.cfg.keeps):
            raise self.fail(f"{len(edit.indices)} kept-frame indices for {len(edit.cfg.keeps)} stages")
        if edit.assignments and len(edit.assignments) != len(edit.indices):
            raise self.fail(f"{len(edit.assignments)} cluster assignments for {len(edit.indices)} stages")
        for n in edit.nodes[: edit.sites.cut]:
            f = edit.fact(n)
            if f is not None and f.carries_frames and f.data_dependent:
                late = next((u for u in n.users if edit.in_range(u)), None)
                if late is not None:
                    raise self.fail(f"`{n.name}` reaches `{late.name}` after the cut unpruned")

    def first_cut(self, edit: Edit) -> None:
        cut = edit.nodes[edit.sites.cut]
        live = live_at_cut(edit)
        layouts = [edit.layout(n, "tensor alive at the cut") for n in live]
        pos_dim = edit.fact(live[0]).shape[-1] if edit.cfg.prune_pos_embed else None
        module = PruneAtCut(make_pruner(edit.cfg, pos_dim), layouts, edit.cfg.frames, needs_assignment(edit.cfg))
        name = edit.add_module("hotpatch_prune", module)
        prune_call(edit, 1, name, cut, live, ())

    def later_cut(self, edit: Edit, stage: int) -> None:
        """Stage ``stage`` >= 2: prune the tokens the previous stage kept that are alive at its
        cut, again, and compose the indices (see :class:`PruneAgain`)."""
        start = edit.sites.cuts[stage - 1]
        cut = edit.nodes[start]
        live = []
        for n in edit.graph.nodes:
            if n is cut:
                break
            f = edit.fact(n)
            if n in edit.pruned and f is not None and f.carries_frames and f.data_dependent and any(
                edit.in_range(u) and edit.pos[u] >= start for u in n.users
            ):
                live.append(n)
        if not live:
            raise RewriteError(f"no pruned tensor is alive before {cut.target} (stage {stage}); nothing to prune")
        layouts = [edit.layout(n, f"tensor alive at the cut of stage {stage}") for n in live]
        pos_dim = edit.fact(live[0]).shape[-1] if edit.cfg.prune_pos_embed else None
        pruner = make_pruner(edit.cfg, pos_dim, keep=edit.cfg.keeps[stage - 1], first=False)
        assignment = needs_assignment(edit.cfg)
        module = PruneAgain(pruner, layouts, edit.cfg.center, assignment)
        name = edit.add_module(f"hotpatch_prune{stage}", module)
        prune_call(edit, stage, name, cut, live, (*edit.assignments[-1:], edit.indices[-1]))


def live_at_cut(edit: Edit) -> list[fx.Node]:
    """The value-dependent tensors with frames made before the first cut and used after it."""
    live = [
        n for n in edit.nodes[: edit.sites.cut]
        if (f := edit.fact(n)) is not None and f.carries_frames and f.data_dependent
        and any(edit.in_range(u) for u in n.users)
    ]
    if not live:
        cut = edit.nodes[edit.sites.cut].target
        alive = [n for n in edit.nodes[: edit.sites.cut] if (f := edit.fact(n)) is not None and f.data_dependent
                 and any(edit.in_range(u) for u in n.users)]
        raise RewriteError(frames_folded(alive, edit.fact, cut, edit.cfg.frames)
                           or f"no frame-carrying tensor is alive before {cut}; nothing to prune")
    return live


def prune_call(edit: Edit, stage: int, name: str, cut: fx.Node, live: list[fx.Node], extra: tuple) -> None:
    """Call the pruner ``name`` on ``live`` before ``cut``; the users of each live tensor
    from ``cut`` on (and in the pruned range) take its pruned version instead."""
    start = edit.pos[cut]
    with edit.graph.inserting_before(cut):
        call = edit.graph.call_module(name, (*live, *extra))
        outs = [edit.graph.call_function(operator.getitem, (call, i)) for i in range(len(live))]
        assign = None
        if edit.gm.get_submodule(name).assignment:  # (*pruned, assign, index): the index stays last
            assign = edit.graph.call_function(operator.getitem, (call, len(live)))
            edit.assignments.append(assign)
            edit.new_stage[assign] = stage
        index = edit.graph.call_function(operator.getitem, (call, len(live) + (assign is not None)))
    for n, out in zip(live, outs):
        for u in list(n.users):
            if edit.in_range(u) and edit.pos[u] >= start:
                u.replace_input_with(n, out)
        edit.origin[out] = edit.origin.get(n, n)
    for node in (call, *outs, index):
        edit.new_stage[node] = stage
    edit.indices.append(index)
    edit.pruned.update(outs)


def mark_pruned(edit: Edit) -> None:
    """Every node in the pruned range computed from pruned tokens carries pruned tokens."""
    for n in edit.nodes[edit.sites.cut :]:
        if edit.in_range(n) and any(a in edit.pruned for a in n.all_input_nodes):
            edit.pruned.add(n)
