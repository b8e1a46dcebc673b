"""Stage 3: graph surgery from the :class:`~hotpatch.engine.analyse.Plan`, as an ordered list of passes.

:func:`~hotpatch.engine.sites.locate` finds where the cuts and the recovery go; then each pass
in :data:`PASSES` handles one kind of frame-count use through the shared
:class:`~hotpatch.engine.edit.Edit` (the graph under edit), records its decisions in the plan
and checks what must hold after it. Before any edit, the analysis lists every frame-count use
after the cut (:mod:`hotpatch.engine.uses`), every pass's ``inspect`` reads the unpatched graph
(and raises its own refusals), and a use that no pass claims is refused: the rewrite never
discovers. A :class:`~hotpatch.errors.RewriteError` raised while the passes run is turned into a
:class:`~hotpatch.errors.PatchCheckError`: a bug in that analysis.

A new pattern found in real code is a new pass module under ``hotpatch/engine/passes/`` (a
:class:`~hotpatch.engine.edit.RewritePass` subclass) placed in this list, with a test file
under ``tests/engine/passes/`` (``test_<pass>.py``, beside the other passes' tests).
"""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import Plan
from hotpatch.engine.config import PatchConfig
from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.passes.carried import CarriedTensors
from hotpatch.engine.passes.contexts import FrameContexts
from hotpatch.engine.passes.counts import FrameCounts
from hotpatch.engine.passes.cut import GuardInput, PruneAtCuts
from hotpatch.engine.passes.fit import FitFrames
from hotpatch.engine.passes.frame_params import FrameIndexedConstants
from hotpatch.engine.passes.frame_sized import FrameSizedLayers
from hotpatch.engine.passes.masks import FrameMasks
from hotpatch.engine.passes.recovery import Recovery
from hotpatch.engine.passes.sliced_params import SlicedConstants
from hotpatch.engine.passes.stage_positions import StagePositions
from hotpatch.engine.passes.strided_stages import StridedStageUses
from hotpatch.engine.refusals import one_line
from hotpatch.engine.sites import Sites, locate
from hotpatch.engine.trace import build_graph_module
from hotpatch.engine.uses import decide, sized_layers, will_prune
from hotpatch.engine.wrappers import PruneAgain, PruneAtCut
from hotpatch.errors import PatchCheckError, RewriteError

__all__ = ["PASSES", "PatchConfig", "Sites", "rewrite", "stage_pruners"]

PASSES: tuple[type[RewritePass], ...] = (
    FitFrames,              # f fits strided stages and splits; split boundaries, blocks rebuilt
    GuardInput,             # each input with frames must have F of them
    PruneAtCuts,            # one pruner per stage, on every frame-carrying tensor alive at its cut
    FrameMasks,             # masks / tables made after the cut: for F frames; (F, F) masks to blocks: gathered
    SlicedConstants,        # pos[:, :x.shape[1]] after the cut: frozen at F rows (then gathered)
    StagePositions,         # pos[:, :x.shape[1]] in a strided stage: its rows are stage positions, left as is
    FrameSizedLayers,       # BatchNorm1d(F), Linear(F, F), (F, F) constants, top-k: gathered per sample
    FrameCounts,            # int frame counts and literal F after the cut (and after the recovery)
    CarriedTensors,         # tensors made before the cut and used after it: gathered
    FrameContexts,          # per-frame contexts made without the input's values, fed to later blocks: gathered
    FrameIndexedConstants,  # (1, F, C) positional embeddings used after the cut: gathered
    StridedStageUses,       # (1, F/3, C) stage embeddings and reduced literals follow f
    Recovery,               # all F frames back (seq2seq) or the centre frame (seq2frame)
)


def rewrite(gm: fx.GraphModule, plan: Plan, cfg: PatchConfig) -> tuple[fx.GraphModule, Sites]:
    """Patch the traced ``gm`` (its graph is edited) and return the new GraphModule and the sites."""
    sites = locate(gm, plan, cfg)
    edit = Edit(gm, plan, cfg, sites)
    edit.region = dict.fromkeys(will_prune(edit))
    edit.sized_layers = sized_layers(edit)
    passes = [p() for p in PASSES]
    for p in passes:
        p.inspect(edit)  # reads the unpatched graph: before any edit
    decide(edit, passes)  # every frame-count use after the cut is claimed by a pass, or refused here
    for p in passes:
        try:
            p.run(edit)
        except PatchCheckError:
            raise
        except RewriteError as exc:  # the analysis let through what this pass cannot rewrite
            raise PatchCheckError(one_line(
                f"the '{p.name}' rewrite pass refused during the rewrite (the analysis should have "
                f"refused before it; please report the model): {exc}")) from exc
        p.check(edit)
    edit.graph.lint()
    name = type(gm).__name__.removesuffix("Traced") + "Patched"
    patched = build_graph_module(gm, edit.graph, edit.new_modules, name)
    patched.recompile()
    return patched, sites


def stage_pruners(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The pruning modules of a patched model, one per stage in order (``hotpatch_prune``,
    ``hotpatch_prune2``, ...). Each returns ``(*tokens, index)``; the index of the last one
    holds the original frames of the tokens that reach the recovery."""
    found = []
    for name, m in model.named_children():
        if isinstance(m, (PruneAtCut, PruneAgain)):
            stage = name.removeprefix("hotpatch_prune")
            found.append((int(stage) if stage.isdigit() else 1, name, m))
    return [(name, m) for _, name, m in sorted(found, key=lambda t: t[0])]
