"""The graph under edit: the state every rewrite pass reads and changes, and the pass interface.

The traced graph is split into three regions, each with its own frame count:

* *pre* — everything before the first cut (F frames);
* *pruned* — every node after a cut that depends on the pruned tokens (f frames of its stage);
* *post* — for seq2seq, everything after the recovery point (F frames again).

:class:`Edit` knows, for every node, its region and stage, its facts from the analysis, and
the kept-frame index of its stage; passes add modules and nodes through it and record each
decision (one line of ``hotpatch_plan``) with :meth:`Edit.note`. A pass
(:class:`RewritePass`) has a name, an optional ``inspect`` that reads the unpatched graph
before any pass edits it, ``run`` that rewrites, and ``check`` that verifies what must hold
after it (the idea of torch.fx's ``PassBase`` ``requires`` / ``ensures``). Before any ``run``,
each frame-count use after the cut (:mod:`hotpatch.engine.uses`) must be claimed by a pass
(``claims``); what none claims is refused there, before any edit.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import einops
import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import NodeFacts, Plan
from hotpatch.engine.config import PatchConfig
from hotpatch.engine.folded import batch_copies
from hotpatch.engine.frame_layers import KeptFrames
from hotpatch.engine.sites import Sites, stage_at
from hotpatch.engine.wrappers import GatherConstant, rescale_count
from hotpatch.errors import AmbiguousFrameAxisError, PatchCheckError, RewriteError
from hotpatch.layout import Layout

ELEMENTWISE_FUNCS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
}
ELEMENTWISE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
SIZE_METHODS = {"view", "reshape", "expand", "repeat", "new_zeros", "new_ones", "new_empty", "new_full"}
EINOPS = {einops.rearrange, einops.repeat, einops.reduce}


def is_elementwise(u: fx.Node) -> bool:
    """``a + b``, ``x.mul(y)`` and the like (what a positional embedding is combined by)."""
    return (u.op == "call_function" and u.target in ELEMENTWISE_FUNCS) or (
        u.op == "call_method" and u.target in ELEMENTWISE_METHODS
    )


def is_sizing(u: fx.Node) -> bool:
    """A view/reshape/expand/... whose int arguments are sizes."""
    return (u.op == "call_method" and u.target in SIZE_METHODS) or (
        u.op == "call_function" and u.target is torch.reshape
    )


def edit_sizes(u: fx.Node, change: Any) -> bool:
    """Rewrite the size arguments of a sizing node: ``change(i, size)`` returns the new size of
    axis i (or the old one). Handles ``x.view(a, b)`` and ``x.view((a, b))``. True if changed."""
    sizes = list(u.args[1:])
    packed = len(sizes) == 1 and isinstance(sizes[0], (tuple, list))
    if packed:
        sizes = list(sizes[0])
    new = [change(i, s) for i, s in enumerate(sizes)]
    if new == sizes:
        return False
    u.args = (u.args[0], tuple(new)) if packed else (u.args[0], *new)
    return True


def can_gather(edit: Edit, u: fx.Node, shape: tuple[int, ...], const: fx.Node | None = None) -> bool:
    """Before any edit: a frame-indexed constant of ``shape`` read by ``u`` can be gathered per
    sample (``u`` is element-wise with a tensor the cut prunes, in a layout that it broadcasts
    against; see :class:`~hotpatch.engine.wrappers.GatherConstant`). ``const``: the node that
    holds the constant, if the cut would otherwise count it as pruned (a slice of it)."""
    partner = next((a for a in u.all_input_nodes if edit.will_be_pruned(a) and a is not const), None)
    if not is_elementwise(u) or partner is None:
        return False
    try:
        GatherConstant(shape, edit.layout(partner, "tensor next to a frame-indexed constant"), edit.cfg.frames)
    except (RewriteError, AmbiguousFrameAxisError):
        return False
    return True


class Edit:
    """One rewrite of one graph (see the module docstring)."""

    def __init__(self, gm: fx.GraphModule, plan: Plan, cfg: PatchConfig, sites: Sites) -> None:
        self.gm, self.plan, self.cfg, self.sites = gm, plan, cfg, sites
        self.graph = gm.graph
        self.nodes = list(self.graph.nodes)  # the traced graph's nodes, before any edit
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        self.facts = plan.facts
        self.new_modules: dict[str, nn.Module] = {}
        self.pruned: set[fx.Node] = set()
        self.indices: list[fx.Node] = []  # per stage: the original frames of its kept tokens (B, f_s)
        self.assignments: list[fx.Node] = []  # per stage, when kept: every frame's cluster (B, F)
        self.new_stage: dict[fx.Node, int] = {}  # stage of the nodes added here
        self.origin: dict[fx.Node, fx.Node] = {}  # a pruner's output or input guard -> the node it stands for
        self.post_frames = cfg.recover_frames or cfg.frames
        self.orig_args = {n: n.args for n in self.nodes}  # before inputs are replaced by pruned ones
        self.holders: dict[int, KeptFrames] = {}  # per stage: index holder for layers inside blocks
        self.lengths: dict[int, int] = {}  # reduced length in the original -> with f kept frames
        self.consumed: set[tuple[fx.Node, fx.Node]] = set()  # (user, constant) pairs a pass took over
        # set by the analysis before any pass (hotpatch.engine.uses): what the cut will prune, and
        # the modules after the cut with tensors sized by the frame count
        self.region: dict[fx.Node, None] = {}  # in graph order
        self.sized_layers: list[Any] = []

    def note(self, text: str) -> None:
        """Record one decision (a line under "decisions:" in ``hotpatch_plan``)."""
        self.sites.notes.append(text)

    # -- facts
    def fact(self, n: Any) -> NodeFacts | None:
        if not isinstance(n, fx.Node):
            return None
        return self.facts.get(self.origin.get(n, n).name)

    def arg_fact(self, u: fx.Node, i: int) -> NodeFacts | None:
        """Facts of ``u``'s i-th original argument (pruned replacements have none)."""
        args = self.orig_args.get(u, u.args)
        return self.fact(args[i]) if i < len(args) else None

    def input_axes(self, u: fx.Node) -> tuple | None:
        f = self.fact(u.args[0]) if u.args else None
        return f.axes if f is not None and f.kind == "tensor" else None

    def node_named(self, name: str) -> fx.Node:
        return next(n for n in self.nodes if n.name == name)

    # -- regions and stages
    def stage(self, n: fx.Node) -> int:
        """0 before the first cut, s in stage s (after the s-th cut)."""
        if n in self.new_stage:
            return self.new_stage[n]
        p = self.pos.get(n)
        return 0 if p is None else stage_at(p, self.sites.cuts)

    def frames_at(self, stage: int) -> int:
        return self.cfg.frames if stage == 0 else self.cfg.keeps[stage - 1]

    def index_for(self, n: fx.Node) -> fx.Node:
        """The kept-frame index of ``n``'s stage."""
        return self.indices[max(self.stage(n), 1) - 1]

    def assignment_for(self, n: fx.Node) -> fx.Node:
        """Every original frame's cluster among the tokens of ``n``'s stage (a clustering pruner's)."""
        return self.assignments[max(self.stage(n), 1) - 1]

    def block_stage(self, name: str) -> int:
        """The stage of the block ``name`` or of a block that holds it (``name`` qualified)."""
        blocks = [b for b in self.plan.blocks if name == b.name or name.startswith(b.name + ".")]
        block = max(blocks, key=lambda b: len(b.name))
        return self.stage(self.node_named(block.node))

    def in_range(self, n: fx.Node) -> bool:
        end = self.sites.recover if self.sites.recover is not None else len(self.nodes) - 2
        return n in self.pos and self.sites.cut <= self.pos[n] <= end

    def is_post(self, n: fx.Node) -> bool:
        return self.sites.recover is not None and n in self.pos and self.pos[n] > self.sites.recover

    def will_be_pruned(self, a: fx.Node) -> bool:
        """Before any edit: ``a`` gives its users after the cut pruned tokens (it is in the region
        the cut prunes, or a value-dependent tensor with frames that the cut or a gather prunes)."""
        if a in self.region:
            return True
        f = self.fact(a)
        return f is not None and f.carries_frames and f.data_dependent and self.pos.get(a, len(self.nodes)) < self.sites.cut

    def pruned_nodes(self) -> list[fx.Node]:
        """The traced graph's nodes that carry pruned tokens, in graph order."""
        return [n for n in self.nodes if n in self.pruned]

    # -- layouts
    def layout(self, n: fx.Node, what: str) -> Layout:
        """The layout of tensor ``n`` (``what`` names its role in errors)."""
        f = self.fact(n)
        assert f is not None
        if len(f.frame_axes) != 1:
            raise AmbiguousFrameAxisError(
                f"{what} `{n.name}` of shape {f.shape} has {len(f.frame_axes)} axes that look like "
                f"the frame axis (size F={self.cfg.frames}): frames equal to joints or channels "
                "cannot be told apart. If the model accepts another clip length, patch it at that "
                "length (frames= / example_input=); otherwise build it with a different F."
            )
        if None in f.axes or (f.data_dependent and not any("B" in a for a in f.axes)):
            copies = batch_copies(n, self.fact, what, self.cfg.frames, self.plan.joints)
            if copies is not None:
                raise RewriteError(copies)
            raise RewriteError(
                f"{what} `{n.name}` of shape {f.shape} has axes hotpatch cannot read "
                f"({f.axes}); it needs a batch axis and a frame axis it can separate. If the model's "
                "tokens are all equal at this point (e.g. zero-initialised embeddings in a freshly "
                "built model), the order of batch and frames cannot be seen: patch the trained model, "
                "or pass a non-constant example_input."
            )
        if sum(a.count("F") for a in f.axes) != 1:
            raise AmbiguousFrameAxisError(f"{what} `{n.name}` has more than one frame factor: {f.axes}")
        return f.layout(self.plan.joints)

    # -- edits
    def add_module(self, base: str, module: nn.Module) -> str:
        """Register a new submodule under a free name starting with ``base``; returns the name."""
        name, i = base, 1
        while name in self.new_modules or hasattr(self.gm, name):
            name, i = f"{base}_{i}", i + 1
        self.new_modules[name] = module
        self.gm.add_module(name, module)  # fx checks call_module targets exist
        return name

    def replace_count(self, user: fx.Node, count: fx.Node, old: int, new: int) -> None:
        """``user`` reads the frame count ``count`` (F or B·F with ``old`` frames): rescale it to ``new``."""
        if old == new:
            return
        with self.graph.inserting_before(user):
            scaled = self.graph.call_function(rescale_count, (count, old, new))
        user.replace_input_with(count, scaled)

    def kept_holder(self, stage: int) -> KeptFrames:
        """The holder from which layers inside opaque blocks of ``stage`` read its kept index."""
        if stage not in self.holders:
            self.holders[stage] = KeptFrames()
            self.add_module("hotpatch_kept" if stage == 1 else f"hotpatch_kept{stage}", self.holders[stage])
        return self.holders[stage]


class RewritePass:
    """One kind of frame-count use. Subclasses set ``name`` and override ``run`` (and, where
    useful, ``inspect`` and ``check``); a fresh instance serves one rewrite."""

    name: ClassVar[str] = ""

    def inspect(self, edit: Edit) -> None:
        """Read the unpatched graph (runs for every pass before any pass edits it)."""

    def claims(self, edit: Edit, use: Any) -> bool:
        """Whether this pass handles ``use`` (a :class:`hotpatch.engine.uses.Use`, read on the
        unpatched graph after every ``inspect``); a use no pass claims is refused before any edit."""
        return False

    def run(self, edit: Edit) -> None:
        raise NotImplementedError

    def check(self, edit: Edit) -> None:
        """Raise :class:`PatchCheckError` (``self.fail``) if what this pass ensures does not hold."""

    def fail(self, what: str) -> PatchCheckError:
        return PatchCheckError(f"internal check of the '{self.name}' rewrite pass failed: {what}. "
                               "The analysis should have refused this model: please report it to the hotpatch developers.")
