"""Pass "fit": f must fit the strided stages and the splits of the frame axis after the cut.

Checks every stage's f against the strided stages after the last cut and the splits of the
frame axis (in the graph and inside blocks); an f that does not fit raises
:class:`~hotpatch.errors.ConfigError` listing the valid f near it. Then it sets the reduced
lengths that follow from f, moves literal split boundaries to b·f/F and rebuilds the blocks
whose own graphs use the frame count (:mod:`hotpatch.engine.passes.inside_blocks`).
A cut after a strided stage, or a strided stage between two cuts, is refused before any edit
(``inspect``), where the blocks' own graphs are read too.
"""

from __future__ import annotations

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.passes import splits
from hotpatch.engine.passes import strided_stages as stages
from hotpatch.engine.passes.inside_blocks import BlockFindings, inspect_blocks
from hotpatch.engine.reductions import Reduction
from hotpatch.engine.uses import Use
from hotpatch.errors import RewriteError


class FitFrames(RewritePass):
    name = "fit"

    def __init__(self) -> None:
        self.blocks = BlockFindings([], [])

    def inspect(self, edit: Edit) -> None:
        refuse_reduced_cut(edit)
        refuse_reduced_between_cuts(edit, stages_after_cut(edit))
        self.blocks = inspect_blocks(edit)

    def claims(self, edit: Edit, use: Use) -> bool:
        """A block's own (F, F) tensor in ``A @ x`` or an einsum inside its forward (rebuilt here)."""
        layer = use.layer
        return (use.kind == "layer" and layer is not None
                and all(f"{layer.name}.{t}" in self.blocks.tensors for t, _ in layer.tensors))

    def run(self, edit: Edit) -> None:
        frames, keeps = edit.cfg.frames, edit.cfg.keeps
        after = stages_after_cut(edit)
        last = len(keeps)  # strided stages come after the last cut: its f sets their lengths
        blocks = self.blocks
        found = blocks.splits + [
            (split, fix, stage)
            for stage in range(1, last + 1)
            for split, fix in splits.find_splits(
                [n for n in edit.nodes if edit.in_range(n) and edit.stage(n) == stage],
                edit.facts, frames, edit.input_axes,
            )
        ]
        for stage in range(1, last + 1):
            f = keeps[stage - 1]
            here = [sp for sp, _, st in found if st == stage]
            reductions = after if stage == last else []
            reason = stages.misfit(reductions, frames, f) or next((sp.reason() for sp in here if not sp.fits(f, frames)), None)
            if reason is not None:
                valid = [
                    g for g in range(1, frames + 1)
                    if stages.misfit(reductions, frames, g) is None and all(sp.fits(g, frames) for sp in here)
                ]
                raise stages.refuse(f, reason, valid, name="f" if last == 1 else f"f of stage {stage}")
        edit.lengths = stages.new_lengths(after, frames, keeps[-1])
        for r in after:
            edit.note(f"strided stage {r.describe()} after the cut: {edit.lengths[r.length_in]} -> "
                      f"{edit.lengths[r.length_out]} tokens")
        lines: dict[str, list[str]] = {}
        for split, fix, stage in found:
            f = keeps[stage - 1]
            if fix is not None and f != frames:
                fix(f)
            lines.setdefault(split.where, []).append(
                f"{split.parts} even parts of {f}" if split.parts else f"boundary {split.bound} -> {split.bound * f // frames}"
            )
        for where, what in lines.items():
            edit.note(f"frame split {where}: {', '.join(what)}")
        for stage, rebuild in blocks.rebuilds:
            if keeps[stage - 1] != frames:
                rebuild(keeps[stage - 1])

    def check(self, edit: Edit) -> None:
        missing = [r.length_out for r in stages_after_cut(edit) if r.length_in in edit.lengths and r.length_out not in edit.lengths]
        if missing:
            raise self.fail(f"no new length for the strided stages of lengths {missing}")


def stages_after_cut(edit: Edit) -> list[Reduction]:
    return [r for r in edit.plan.reductions if edit.pos[edit.node_named(r.node)] >= edit.sites.cut]


def refuse_reduced_cut(edit: Edit) -> None:
    """The first cut must come before every strided stage (hotpatch prunes full-length frames)."""
    before = [r for r in edit.plan.reductions if edit.pos[edit.node_named(r.node)] < edit.sites.cut]
    if not before:
        return
    cut = edit.nodes[edit.sites.cut]
    pos = {n.name: i for i, n in enumerate(edit.nodes)}
    first = pos[before[0].node]
    ok = max((b.level for b in edit.plan.temporal_blocks if pos[b.node] < first), default=0)
    fix = f"choose n <= {ok - 1} so that the cut comes before it" if ok > 1 else "no n prunes before it"
    raise RewriteError(
        f"the cut before `{cut.target}` falls after the strided stage {before[0].describe()}; "
        f"hotpatch prunes full-length frames only: {fix}."
    )


def refuse_reduced_between_cuts(edit: Edit, after: list[Reduction]) -> None:
    """With several stages, every strided stage must come after the last cut."""
    last = edit.sites.cuts[-1]
    inside = [r for r in after if edit.pos[edit.node_named(r.node)] < last]
    if inside:
        raise RewriteError(
            f"the strided stage {inside[0].describe()} falls between two pruning cuts; hotpatch "
            "prunes full-length tokens only. Put every cut before it (smaller n values) or use one cut."
        )
