"""Stage 3: graph surgery from the :class:`~hotpatch.engine.analyse.Plan`.

The graph is split into three regions, each with its own frame count:

* *pre* — everything before the cut (F frames);
* *pruned* — every node after the cut that depends on the pruned tokens (f frames);
* *post* — for seq2seq, everything after the recovery point (F frames again).

A value that crosses from one region into another is adapted on the edge: frame-carrying
tensors are pruned (at the cut, all together, by one pruner) or recovered; int nodes that
hold the frame count (F or B·F) are rescaled; frame-indexed constants (positional
embeddings) are gathered with the kept indices; int literals equal to F in shape arguments
are replaced. The wrapper modules added here adapt each tensor's layout to the canonical
(B, F, ..., C) view that pruners and recoverers work on.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import einops
import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_arg

from hotpatch.engine.passes import frame_layers as layers
from hotpatch.engine.passes import splits as splits
from hotpatch.engine.passes import strided_stages as stages
from hotpatch.engine.analyse import NORMS, NodeFacts, Plan, axis_atoms, batch_order, probe
from hotpatch.errors import AmbiguousFrameAxisError, HotpatchError, RewriteError
from hotpatch.layout import Layout, gather_frames
from hotpatch.prune import PRUNERS, TPC, FramePruner, pool_tokens
from hotpatch.recover import TRA, LinearRecover, LinearTRA, NearestRecover
from hotpatch.engine.trace import HotpatchTracer, build_graph_module
from hotpatch.engine.trace import trace as trace_module

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchConfig:
    """The user's choices, validated by :func:`hotpatch.apply`.

    ``n`` and ``f`` are ints for one cut, or equally long tuples for several (multi-stage
    pruning: stage s prunes after block ``n[s]`` to ``f[s]`` frames).
    """

    n: int | tuple[int, ...]
    f: int | tuple[int, ...]
    frames: int
    pipeline: str  # "seq2seq" or "seq2frame"
    prune: str = "tpc"
    recover: str | None = "tra"
    k: int = 2
    prune_pos_embed: bool = False
    recover_frames: int | None = None

    @property
    def center(self) -> int | None:
        return self.frames // 2 if self.pipeline == "seq2frame" else None

    @property
    def cuts(self) -> tuple[int, ...]:
        """The n of every stage, in order."""
        return self.n if isinstance(self.n, tuple) else (self.n,)

    @property
    def keeps(self) -> tuple[int, ...]:
        """The f of every stage, in order."""
        return self.f if isinstance(self.f, tuple) else (self.f,)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


# --------------------------------------------------------------------------- runtime modules


def rescale_count(value: int, old: int, new: int) -> int:
    """Turn a frame count (F or B·F) measured with ``old`` frames into one with ``new``."""
    return value // old * new


def check_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Guard at the model input: the patch was built for ``frames`` frames (axis 1)."""
    if x.dim() < 2 or x.shape[1] != frames:
        raise HotpatchError(
            f"this model was patched for clips of F={frames} frames (axis 1 of the input), "
            f"got an input of shape {tuple(x.shape)}; pad or window the clip to {frames} frames "
            "or patch again with frames= set to the clip length."
        )
    return x


torch.fx.wrap("rescale_count")
torch.fx.wrap("check_frames")


class PruneAtCut(nn.Module):
    """Prunes every frame-carrying tensor alive at the cut with one set of indices.

    The pruner sees the tensors' pooled features concatenated along channels; each tensor
    is gathered in its own layout. Returns ``(*pruned, index)``.
    """

    def __init__(self, pruner: FramePruner, layouts: list[Layout], frames: int) -> None:
        super().__init__()
        self.pruner = pruner
        self.layouts = layouts
        self.frames = frames

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        canon = [lay.to_canonical(x, self.frames) for lay, x in zip(self.layouts, xs)]
        index = self.pruner.select(_features(canon))
        return (*_keep(self.pruner, self.layouts, canon, index), index)

    def extra_repr(self) -> str:
        return f"frames={self.frames}, layouts=[{', '.join(l.describe() for l in self.layouts)}]"


class PruneAgain(nn.Module):
    """A later pruning stage: selects among the tokens an earlier stage kept.

    Called as ``(*xs, index)`` with ``index`` (B, f_prev) the original frames of ``xs``'s
    tokens; returns ``(*pruned, index')`` with ``index'`` (B, f) the original frames of the
    tokens it keeps (the composed indices). With ``center`` set (seq2frame), the token of
    that original frame is always kept.
    """

    def __init__(self, pruner: FramePruner, layouts: list[Layout], center: int | None = None) -> None:
        super().__init__()
        self.pruner, self.layouts, self.center = pruner, layouts, center

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *xs, before = args
        canon = [lay.to_canonical(x, before.shape[1]) for lay, x in zip(self.layouts, xs)]
        center = None if self.center is None else (before < self.center).sum(dim=1)  # its position
        local = self.pruner.select(_features(canon), center)
        return (*_keep(self.pruner, self.layouts, canon, local), before.gather(1, local))

    def extra_repr(self) -> str:
        return f"center={self.center}, layouts=[{', '.join(l.describe() for l in self.layouts)}]"


def _features(canon: list[torch.Tensor]) -> torch.Tensor:
    """The pruner's input: every tensor's pooled per-frame features, side by side."""
    return torch.cat([pool_tokens(c).float() for c in canon], dim=-1)


def _keep(pruner: FramePruner, layouts: list[Layout], canon: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    """Each canonical tensor's frames ``index`` (plus TPC's optional embedding), in its own layout."""
    outs = []
    for lay, c in zip(layouts, canon):
        kept = gather_frames(c, index)
        if isinstance(pruner, TPC):
            kept = pruner.add_pos_embed(kept)
        outs.append(lay.from_canonical(kept, index.shape[1]))
    return outs


class GatherAt(nn.Module):
    """Prunes one more tensor (in its layout) with indices chosen at the cut."""

    def __init__(self, layout: Layout, frames: int) -> None:
        super().__init__()
        self.layout, self.frames = layout, frames

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        kept = gather_frames(self.layout.to_canonical(x, self.frames), index)
        return self.layout.from_canonical(kept, index.shape[1])


class GatherConstant(nn.Module):
    """Gathers a frame-indexed constant (e.g. a (1, F, C) positional embedding) used next
    to a pruned tensor, so that it broadcasts against that tensor's layout."""

    def __init__(self, const_shape: tuple[int, ...], partner: Layout, frames: int) -> None:
        super().__init__()
        self.partner, self.frames = partner, frames
        ndim = len(partner.axes)
        if len(const_shape) > ndim:
            raise RewriteError(f"constant of shape {const_shape} has more axes than {partner.describe()}")
        padded = (1,) * (ndim - len(const_shape)) + tuple(const_shape)
        sizes: list[int] = []
        self.expand_atoms: list[int] = []  # atom positions to expand to full size
        for axis, size in zip(partner.axes, padded):
            full = [partner._atom_size(a, frames) for a in axis]
            if size == 1:
                sizes += [1] * len(axis)
                if "B" in axis:
                    self.expand_atoms += [len(sizes) - len(axis) + i for i, a in enumerate(axis) if a != "B"]
            elif "B" not in axis and size == _prod(full):
                sizes += full
            else:
                raise RewriteError(
                    f"a frame-indexed constant of shape {tuple(const_shape)} is combined with a "
                    f"tensor of layout {partner.describe()} after the cut; hotpatch cannot gather it "
                    "per sample. Choose n so that the cut comes after this use."
                )
        self.atom_sizes = sizes

    def forward(self, const: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        lay = self.partner
        c = const.reshape(self.atom_sizes)
        order = lay._order
        c = c.permute(order)
        c = c.expand(index.shape[0], *c.shape[1:])
        kept = gather_frames(c, index)
        full = [lay._atom_size(a, index.shape[1]) for a in lay.atoms]
        canon_pos = {atom_i: j for j, atom_i in enumerate(order)}
        shape = list(kept.shape)
        for atom_i in self.expand_atoms:
            shape[canon_pos[atom_i]] = full[atom_i]
        return lay.from_canonical(kept.expand(shape), index.shape[1])


class RecoverAt(nn.Module):
    """Recovers one tensor (in its layout) from ``f`` kept frames to ``frames`` frames."""

    def __init__(self, recoverer: nn.Module, layout: Layout, frames: int) -> None:
        super().__init__()
        self.recoverer, self.layout, self.frames = recoverer, layout, frames

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        canon = self.layout.to_canonical(x, index.shape[1])
        return self.layout.from_canonical(self.recoverer(canon, index), self.frames)


class CenterSelect(nn.Module):
    """seq2frame output: the prediction of the centre frame, kept by the pruner."""

    def __init__(self, layout: Layout, center: int) -> None:
        super().__init__()
        self.layout, self.center = layout, center

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        canon = self.layout.to_canonical(x, index.shape[1])
        position = (index < self.center).sum(dim=1, keepdim=True)
        return self.layout.from_canonical(gather_frames(canon, position), 1)


def _prod(xs: list[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


# --------------------------------------------------------------------------- locating the cut

_ELEMENTWISE_FUNCS = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_SIZE_METHODS = {"view", "reshape", "expand", "repeat", "new_zeros", "new_ones", "new_empty", "new_full"}
_EINOPS = {einops.rearrange, einops.repeat, einops.reduce}


@dataclass
class Sites:
    """Where the cuts and the recovery go, as positions in the node list."""

    cut: int  # the first cut
    recover: int | None  # None for seq2frame: nothing is recovered
    cut_block: str
    recover_after: str | None
    notes: list[str] = field(default_factory=list)  # the rewrite's decisions, one line each
    cuts: list[int] = field(default_factory=list)  # every stage's cut (the first is ``cut``)
    cut_blocks: list[str] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # frames each block sees (the pyramid)


def stage_at(position: int, cuts: list[int]) -> int:
    """0 before the first cut, s from the s-th cut on (``cuts``: node positions, increasing)."""
    return sum(1 for c in cuts if c <= position)


def locate(gm: fx.GraphModule, plan: Plan, cfg: PatchConfig) -> Sites:
    nodes = list(gm.graph.nodes)
    pos = {n.name: i for i, n in enumerate(nodes)}
    cuts = []
    for n in cfg.cuts:
        level_n = [pos[b.node] for b in plan.temporal_blocks if b.level == n]
        cut = min(pos[b.node] for b in plan.blocks if pos[b.node] > max(level_n))
        for b in plan.blocks:
            if pos[b.node] >= cut and b.kind == "temporal" and b.level <= n:
                raise RewriteError(
                    f"temporal block {b.name} (level {b.level}) runs after the cut before "
                    f"{nodes[cut].target}; its stream is computed out of order. Choose another n."
                )
        if cuts and cut <= cuts[-1]:
            raise RewriteError(
                f"the cuts after levels {cfg.cuts} do not fall between distinct blocks; choose n "
                "values further apart."
            )
        cuts.append(cut)
    for b in plan.blocks:
        if pos[b.node] >= cuts[0] and b.kind == "frame-channel":
            raise RewriteError(
                f"block {b.name} uses frames as its feature axis and runs after the cut; its "
                "weights are sized for F frames, so it cannot see pruned tokens. Choose a larger n."
            )
    cut = cuts[0]
    counts = (cfg.frames, *cfg.keeps)
    tokens = {b.name: counts[stage_at(pos[b.node], cuts)] for b in plan.blocks}
    where = dict(cuts=cuts, cut_blocks=[nodes[c].target for c in cuts], tokens=tokens)
    if cfg.pipeline == "seq2frame":
        return Sites(cut, None, nodes[cut].target, None, **where)
    last = max(pos[b.node] for b in plan.blocks if b.kind != "static")  # static: no frames to recover
    anchor = max([last] + [pos[u.name] for u in nodes[last].users if u.target is operator.getitem])
    norm = _norm_after(gm, plan, nodes, anchor, pos)
    if norm is not None:
        anchor = norm
    return Sites(cut, anchor, nodes[cut].target, nodes[anchor].name, **where)


def _norm_after(gm: fx.GraphModule, plan: Plan, nodes: list[fx.Node], anchor: int, pos: dict) -> int | None:
    """The normalisation applied to the last block's output: the first norm after it that
    every path to the output passes through, normalising at least the block's width."""
    last = nodes[anchor]
    width = _width(plan.facts.get(last.name)) or max(
        (_width(plan.facts.get(u.name)) or 0 for u in last.users), default=0
    )
    downstream = _downstream(last)
    output = nodes[-1]
    for n in nodes[anchor + 1 :]:
        if n not in downstream:
            continue
        norm_width = _norm_width(gm, n)
        if norm_width is None or norm_width < width:
            continue
        if _dominates(n, last, output, plan):
            return pos[n.name]
    return None


def _width(f: NodeFacts | None) -> int | None:
    return f.shape[-1] if f is not None and f.kind == "tensor" and f.shape else None


def _norm_width(gm: fx.GraphModule, n: fx.Node) -> int | None:
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if isinstance(m, nn.LayerNorm):
            return int(m.normalized_shape[-1])
        if isinstance(m, nn.GroupNorm):
            return m.num_channels
        if isinstance(m, NORMS):
            return getattr(m, "num_features", None)
    if n.op == "call_function" and n.target is torch.nn.functional.layer_norm:
        shape = n.args[1] if len(n.args) > 1 else n.kwargs.get("normalized_shape")
        return int(shape[-1]) if isinstance(shape, (list, tuple)) and isinstance(shape[-1], int) else None
    return None


def _downstream(start: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [start]
    while stack:
        for u in stack.pop().users:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen


def _dominates(cand: fx.Node, start: fx.Node, output: fx.Node, plan: Plan) -> bool:
    """True if every data path from ``start`` to ``output`` passes through ``cand`` (paths
    through shape reads such as ``b, f = x.shape[:2]`` carry no data and are ignored)."""
    seen, stack = {cand}, [start]
    while stack:
        for u in stack.pop().users:
            if u is output:
                return False
            facts = plan.facts.get(u.name)
            shape_only = facts is not None and (facts.kind == "int" or not plan.data_dependent.get(u.name, True))
            if u not in seen and not shape_only:
                seen.add(u)
                stack.append(u)
    return True


# --------------------------------------------------------------------------- surgery


def find_heads(gm: fx.GraphModule, plan: Plan, dim: int) -> int:
    """Number of attention heads of the host's last temporal block (for TRA)."""
    for b in reversed(plan.temporal_blocks):
        for m in gm.get_submodule(b.name).modules():
            for attr in ("num_heads", "heads", "n_head", "nhead", "n_heads", "h"):
                h = getattr(m, attr, None)
                if isinstance(h, int) and not isinstance(h, bool) and h > 0 and dim % h == 0:
                    return h
    heads = next((h for h in (8, 4, 2) if dim % h == 0), 1)
    log.warning("could not read the host's number of heads; TRA uses %d", heads)
    return heads


def make_recoverer(cfg: PatchConfig, dim: int, heads: int) -> nn.Module:
    out_frames = cfg.recover_frames or cfg.frames
    if cfg.recover == "tra":
        return TRA(dim, out_frames, heads)
    if cfg.recover == "nearest":
        return NearestRecover(cfg.frames)
    if cfg.recover == "linear":
        return LinearRecover(cfg.frames)
    if cfg.recover == "linear-tra":
        return LinearTRA(dim, cfg.frames, heads)
    raise RewriteError(f"unknown recover={cfg.recover!r}")


def make_pruner(cfg: PatchConfig, pos_embed_dim: int | None, keep: int | None = None, first: bool = True) -> FramePruner:
    """The pruner of one stage (``keep`` frames; the first stage's f by default). Later stages
    get no fixed centre: :class:`PruneAgain` passes each sample's centre position."""
    keep = cfg.keeps[0] if keep is None else keep
    center = cfg.center if first else None
    if cfg.prune == "tpc":
        return TPC(keep, k=cfg.k, center=center, pos_embed_dim=pos_embed_dim)
    return PRUNERS[cfg.prune](keep, center=center)


class _Surgery:
    """One rewrite of one graph; see the module docstring."""

    def __init__(self, gm: fx.GraphModule, plan: Plan, cfg: PatchConfig, sites: Sites) -> None:
        self.gm, self.plan, self.cfg, self.sites = gm, plan, cfg, sites
        self.graph = gm.graph
        self.nodes = list(self.graph.nodes)
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        self.facts = plan.facts
        self.new_modules: dict[str, nn.Module] = {}
        self.pruned: set[fx.Node] = set()
        self.indices: list[fx.Node] = []  # per stage: the original frames of its kept tokens (B, f_s)
        self.new_stage: dict[fx.Node, int] = {}  # stage of the nodes added here
        self.origin: dict[fx.Node, fx.Node] = {}  # a pruner's output -> the tensor it prunes
        self.post_frames = cfg.recover_frames or cfg.frames
        self.orig_args = {n: n.args for n in self.nodes}  # before inputs are replaced by pruned ones
        self.holders: dict[int, layers.KeptFrames] = {}  # per stage: index holder for layers inside blocks

    def note(self, text: str) -> None:
        self.sites.notes.append(text)

    def arg_fact(self, u: fx.Node, i: int) -> NodeFacts | None:
        """Facts of ``u``'s i-th original argument (pruned replacements have none)."""
        args = self.orig_args.get(u, u.args)
        return self.fact(args[i]) if i < len(args) else None

    # -- helpers
    def fact(self, n: Any) -> NodeFacts | None:
        if not isinstance(n, fx.Node):
            return None
        return self.facts.get(self.origin.get(n, n).name)

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

    def block_stage(self, name: str) -> int:
        """The stage of the block ``name`` or of a block that holds it (``name`` qualified)."""
        blocks = [b for b in self.plan.blocks if name == b.name or name.startswith(b.name + ".")]
        block = max(blocks, key=lambda b: len(b.name))
        return self.stage(self._node(block.node))

    def in_range(self, n: fx.Node) -> bool:
        end = self.sites.recover if self.sites.recover is not None else len(self.nodes) - 2
        return n in self.pos and self.sites.cut <= self.pos[n] <= end

    def is_post(self, n: fx.Node) -> bool:
        return self.sites.recover is not None and n in self.pos and self.pos[n] > self.sites.recover

    def layout(self, n: fx.Node, what: str) -> Layout:
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

    def add_module(self, base: str, module: nn.Module) -> str:
        name, i = base, 1
        while name in self.new_modules or hasattr(self.gm, name):
            name, i = f"{base}_{i}", i + 1
        self.new_modules[name] = module
        self.gm.add_module(name, module)  # fx checks call_module targets exist
        return name

    # -- steps
    def run(self) -> fx.GraphModule:
        block_layers = self.probe_block_layers()  # runs the unpatched graph: before any edit
        self.check_frame_count()
        self.guard_input()
        self.insert_pruner()
        self.mark_pruned()
        for stage in range(2, len(self.cfg.keeps) + 1):
            self.insert_stage_pruner(stage)
            self.mark_pruned()
        self.swap_block_layers(block_layers)
        self.set_holder()
        self.fix_pruned_inputs()
        if self.sites.recover is not None:
            self.insert_recovery()
            self.fix_post_literals()
        else:
            self.select_center()
        self.graph.lint()
        name = type(self.gm).__name__.removesuffix("Traced") + "Patched"
        gm = build_graph_module(self.gm, self.graph, self.new_modules, name)
        gm.recompile()
        return gm

    def guard_input(self) -> None:
        x = next(n for n in self.nodes if n.op == "placeholder")
        with self.graph.inserting_after(x):
            guard = self.graph.call_function(check_frames, (x, self.cfg.frames))
        x.replace_all_uses_with(guard, delete_user_cb=lambda u: u is not guard)

    def insert_pruner(self) -> None:
        cut = self.nodes[self.sites.cut]
        live = [
            n for n in self.nodes[: self.sites.cut]
            if (f := self.fact(n)) is not None and f.carries_frames and f.data_dependent
            and any(self.in_range(u) for u in n.users)
        ]
        if not live:
            raise RewriteError(f"no frame-carrying tensor is alive before {cut.target}; nothing to prune")
        layouts = [self.layout(n, "tensor alive at the cut") for n in live]
        pos_dim = self.fact(live[0]).shape[-1] if self.cfg.prune_pos_embed else None
        module = PruneAtCut(make_pruner(self.cfg, pos_dim), layouts, self.cfg.frames)
        name = self.add_module("hotpatch_prune", module)
        self._prune_call(1, name, cut, live, ())

    def insert_stage_pruner(self, stage: int) -> None:
        """Stage ``stage`` >= 2: prune the tokens the previous stage kept that are alive at its
        cut, again, and compose the indices (see :class:`PruneAgain`)."""
        start = self.sites.cuts[stage - 1]
        cut = self.nodes[start]
        live = []
        for n in self.graph.nodes:
            if n is cut:
                break
            f = self.fact(n)
            if n in self.pruned and f is not None and f.carries_frames and f.data_dependent and any(
                self.in_range(u) and self.pos[u] >= start for u in n.users
            ):
                live.append(n)
        if not live:
            raise RewriteError(f"no pruned tensor is alive before {cut.target} (stage {stage}); nothing to prune")
        layouts = [self.layout(n, f"tensor alive at the cut of stage {stage}") for n in live]
        pos_dim = self.fact(live[0]).shape[-1] if self.cfg.prune_pos_embed else None
        pruner = make_pruner(self.cfg, pos_dim, keep=self.cfg.keeps[stage - 1], first=False)
        name = self.add_module(f"hotpatch_prune{stage}", PruneAgain(pruner, layouts, self.cfg.center))
        self._prune_call(stage, name, cut, live, (self.indices[-1],))

    def _prune_call(self, stage: int, name: str, cut: fx.Node, live: list[fx.Node], extra: tuple) -> None:
        """Call the pruner ``name`` on ``live`` before ``cut``; the users of each live tensor
        from ``cut`` on (and in the pruned range) take its pruned version instead."""
        start = self.pos[cut]
        with self.graph.inserting_before(cut):
            call = self.graph.call_module(name, (*live, *extra))
            outs = [self.graph.call_function(operator.getitem, (call, i)) for i in range(len(live))]
            index = self.graph.call_function(operator.getitem, (call, len(live)))
        for n, out in zip(live, outs):
            for u in list(n.users):
                if self.in_range(u) and self.pos[u] >= start:
                    u.replace_input_with(n, out)
            self.origin[out] = self.origin.get(n, n)
        for node in (call, *outs, index):
            self.new_stage[node] = stage
        self.indices.append(index)
        self.pruned.update(outs)

    def mark_pruned(self) -> None:
        for n in self.nodes[self.sites.cut :]:
            if self.in_range(n) and any(a in self.pruned for a in n.all_input_nodes):
                self.pruned.add(n)

    def fix_pruned_inputs(self) -> None:
        gathered: dict[tuple[fx.Node, int], fx.Node] = {}
        for u in [n for n in self.nodes if n in self.pruned]:
            stage = self.stage(u)
            f = self.frames_at(stage)
            self.frame_sized_call(u)
            self.clamp_topk(u)
            for a in list(u.all_input_nodes):
                fa = self.fact(a)
                if a in self.indices or fa is None:
                    continue
                if a in self.pruned:  # a count made in an earlier stage: rescale to this one's
                    if fa.kind == "int" and fa.count and self.stage(a) < stage:
                        self.replace_count(u, a, self.frames_at(self.stage(a)), f)
                    continue
                if fa.kind == "int" and fa.count:
                    self.replace_count(u, a, self.cfg.frames, f)
                elif fa.carries_frames and fa.data_dependent:
                    if (a, stage) not in gathered:
                        lay = self.layout(a, "tensor used after the cut")
                        name = self.add_module("hotpatch_gather", GatherAt(lay, self.cfg.frames))
                        with self.graph.inserting_before(u):
                            node = self.graph.call_module(name, (a, self.index_for(u)))
                        gathered[a, stage] = node
                        self.new_stage[node] = stage
                        self.pruned.add(node)
                    u.replace_input_with(a, gathered[a, stage])
                elif fa.carries_frames:
                    self.gather_constant(u, a)
                elif fa.kind == "tensor" and not fa.data_dependent:
                    self.slice_reduced_constant(u, a)
            self.replace_literals(u, f)
            self.replace_reduced_literals(u)

    def replace_count(self, user: fx.Node, count: fx.Node, old: int, new: int) -> None:
        if old == new:
            return
        with self.graph.inserting_before(user):
            scaled = self.graph.call_function(rescale_count, (count, old, new))
        user.replace_input_with(count, scaled)

    # -- strided stages (hotpatch.engine.passes.strided_stages)
    def stages_after_cut(self) -> list[stages.Reduction]:
        return [r for r in self.plan.reductions if self.pos[self._node(r.node)] >= self.sites.cut]

    def check_frame_count(self) -> None:
        """f must fit the strided stages and the splits of the frame axis after the cut; then
        reduced lengths follow from f and literal split boundaries are moved to b·f/F."""
        self.refuse_reduced_cut(self.nodes[self.sites.cut])
        frames, keeps = self.cfg.frames, self.cfg.keeps
        after = self.stages_after_cut()
        self.refuse_reduced_between_cuts(after)
        last = len(keeps)  # strided stages come after the last cut: its f sets their lengths
        in_blocks, rebuilds = self.inspect_blocks()
        found = in_blocks + [
            (split, fix, stage)
            for stage in range(1, last + 1)
            for split, fix in splits.find_splits(
                [n for n in self.nodes if self.in_range(n) and self.stage(n) == stage],
                self.facts, frames, self._input_axes,
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
        self.lengths = stages.new_lengths(after, frames, keeps[-1])
        for r in after:
            self.note(f"strided stage {r.describe()} after the cut: {self.lengths[r.length_in]} -> "
                      f"{self.lengths[r.length_out]} tokens")
        lines: dict[str, list[str]] = {}
        for split, fix, stage in found:
            f = keeps[stage - 1]
            if fix is not None and f != frames:
                fix(f)
            lines.setdefault(split.where, []).append(
                f"{split.parts} even parts of {f}" if split.parts else f"boundary {split.bound} -> {split.bound * f // frames}"
            )
        for where, what in lines.items():
            self.note(f"frame split {where}: {', '.join(what)}")
        for stage, rebuild in rebuilds:
            if keeps[stage - 1] != frames:
                rebuild(keeps[stage - 1])

    def refuse_reduced_between_cuts(self, after: list[stages.Reduction]) -> None:
        """With several stages, every strided stage must come after the last cut."""
        last = self.sites.cuts[-1]
        inside = [r for r in after if self.pos[self._node(r.node)] < last]
        if inside:
            raise RewriteError(
                f"the strided stage {inside[0].describe()} falls between two pruning cuts; hotpatch "
                "prunes full-length tokens only. Put every cut before it (smaller n values) or use one cut."
            )

    def inspect_blocks(self) -> tuple[list, list]:
        """The passes inside the opaque blocks after the cut (blocks taking one (·, F, ·)
        tensor), on each block traced on its own: splits of the frame axis, ``A @ x`` with an
        (F, F) constant, top-k over frames. Returns the splits (with each block's stage) and,
        per block that must change, its stage and a function of f that edits its graph and
        puts it in place of the block (same submodules, same qualified names; constants read
        the kept index from the stage's holder)."""
        frames = self.cfg.frames
        found_splits, rebuilds = [], []
        gen = torch.Generator().manual_seed(0)
        for b in self.plan.blocks:
            node = self._node(b.node)
            fin = self.fact(node.args[0]) if len(node.args) == 1 and not node.kwargs else None
            if self.pos[node] < self.sites.cut or fin is None or not fin.axes or len(fin.axes) < 2 or fin.axes[1] != ("F",):
                continue
            block = self.gm.get_submodule(b.name)
            try:  # only shapes and int values matter here: a random input of the block's shape
                quick = HotpatchTracer([]).trace(block)
                if not (splits.may_split(quick) or layers.may_gather(quick)):
                    continue
                block_gm, _ = trace_module(block)
                facts, _, _ = probe(block_gm, torch.randn(fin.shape, generator=gen), [], self.plan.joints)
            except Exception as exc:  # an untraceable block keeps its own forward
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.note(f"block `{b.name}` could not be traced on its own ({reason[:120]}); "
                          "splits, (F, F) buffers and top-k inside it were not checked")
                continue

            def fact_of(n: Any, facts=facts) -> NodeFacts | None:
                return facts.get(n.name) if isinstance(n, fx.Node) else None

            def axes_of(u: fx.Node, fact_of=fact_of) -> tuple | None:
                f = fact_of(u.args[0]) if u.args else None
                return f.axes if f is not None and f.kind == "tensor" else None

            stage = self.stage(node)
            here = splits.find_splits(list(block_gm.graph.nodes), facts, frames, axes_of)
            found_splits += [(replace(sp, where=f"inside block `{b.name}`: {sp.where}"), None, stage) for sp, _ in here]
            literal = [fix for _, fix in here if fix is not None]
            mms = [(u, m) for u in block_gm.graph.nodes
                   if (m := layers.frame_matmul(u, u.args, fact_of, frames, self.plan.joints)) is not None]
            mms += [(u, e) for u in block_gm.graph.nodes
                    if (e := layers.frame_einsum(u, u.args, fact_of, frames)) is not None]
            topks = [(u, axes_of(u)) for u in block_gm.graph.nodes if u.target in ("topk", torch.topk)]
            if literal or mms or topks:
                rebuilds.append((stage, partial(self._rebuild_block, b.name, block_gm, literal, mms, topks)))
        return found_splits, rebuilds

    def _rebuild_block(self, name: str, block_gm: fx.GraphModule, literal: list, mms: list, topks: list, f: int) -> None:
        changed = bool(literal)
        for fix in literal:
            fix(f)
        for u, spec in mms:
            holder = self.kept_holder(self.block_stage(name))
            count = len([m for m in block_gm.modules() if isinstance(m, (layers.FrameMatmul, layers.FrameEinsum))])
            target = f"hotpatch_matmul{count}"
            if isinstance(spec[0], str):  # an einsum
                equation, gathered, pos = spec
                const, operands = u.args[1 + pos], tuple(u.args[1:])
                block_gm.add_module(target, layers.FrameEinsum(equation, gathered, pos, self.cfg.frames, holder))
                u.op, u.target, u.args, u.kwargs = "call_module", target, operands, {}
                what = f"einsum '{equation}'"
            else:
                layout, const_first = spec
                const, x = u.args if const_first else u.args[::-1]
                block_gm.add_module(target, layers.FrameMatmul(layout, const_first, self.cfg.frames, holder))
                u.op, u.target, u.args, u.kwargs = "call_module", target, (const, x), {}
                what = "A @ x" if const_first else "x @ A"
            self.note(f"inside block `{name}`: `{const.name}` ({self.cfg.frames}, {self.cfg.frames}) in "
                      f"`{what}`: rows and columns gathered per sample by the kept frames")
            changed = True
        for u, axes in topks:
            note = layers.clamp_topk(u, axes, f)
            if note:
                self.note(f"inside block `{name}`: {note}")
                changed = True
        if changed:
            block_gm.recompile()
            block_gm.__dict__["hotpatch_owned"] = True  # built here: later swaps need not copy it
            layers.replace_module(self.gm, name, block_gm)

    def _input_axes(self, u: fx.Node) -> tuple | None:
        f = self.fact(u.args[0]) if u.args else None
        return f.axes if f is not None and f.kind == "tensor" else None

    def refuse_reduced_cut(self, cut: fx.Node) -> None:
        before = [r for r in self.plan.reductions if self.pos[self._node(r.node)] < self.sites.cut]
        if not before:
            return
        pos = {n.name: i for i, n in enumerate(self.nodes)}
        first = pos[before[0].node]
        ok = max((b.level for b in self.plan.temporal_blocks if pos[b.node] < first), default=0)
        fix = f"choose n <= {ok - 1} so that the cut comes before it" if ok > 1 else "no n prunes before it"
        raise RewriteError(
            f"the cut before `{cut.target}` falls after the strided stage {before[0].describe()}; "
            f"hotpatch prunes full-length frames only: {fix}."
        )

    def slice_reduced_constant(self, u: fx.Node, const: fx.Node) -> None:
        """A constant next to a reduced-length tensor (a (1, F/3, C) stage embedding) is
        sliced to the new reduced length: its rows are positions of the stage, not frames."""
        elementwise = (u.op == "call_function" and u.target in _ELEMENTWISE_FUNCS) or (
            u.op == "call_method" and u.target in _ELEMENTWISE_METHODS
        )
        if not elementwise:
            return
        fc = self.fact(const)
        for i, a in enumerate(self.orig_args.get(u, u.args)):
            fa = self.fact(a)
            if a is const or fa is None or len(fa.reduced) != 1 or not fa.shape:
                continue
            (axis, length), = fa.reduced.items()
            caxis = axis - (len(fa.shape) - len(fc.shape))
            new = self.lengths.get(length)
            if caxis < 0 or fc.shape[caxis] != length or new is None or new == length:
                return
            with self.graph.inserting_before(u):
                sliced = self.graph.call_function(torch.narrow, (const, caxis, 0, new))
            u.replace_input_with(const, sliced)
            self.note(f"`{const.name}` {tuple(fc.shape)} indexed by positions of the length-{length} stage: "
                      f"sliced to its first {new} (the stage's length with f={self.cfg.keeps[-1]})")
            return

    def replace_reduced_literals(self, u: fx.Node) -> None:
        """Int literals equal to a reduced length in the sizes of a view/reshape that makes it."""
        f = self.fact(u)
        if f is None or f.kind != "tensor" or not f.reduced or not getattr(self, "lengths", None):
            return
        if not ((u.op == "call_method" and u.target in _SIZE_METHODS) or (u.op == "call_function" and u.target is torch.reshape)):
            return
        sizes = list(u.args[1:])
        packed = len(sizes) == 1 and isinstance(sizes[0], (tuple, list))
        if packed:
            sizes = list(sizes[0])
        changed = False
        for axis, length in f.reduced.items():
            new = self.lengths.get(length)
            if axis < len(sizes) and type(sizes[axis]) is int and sizes[axis] == length and new not in (None, length):
                sizes[axis], changed = new, True
        if changed:
            u.args = (u.args[0], tuple(sizes)) if packed else (u.args[0], *sizes)

    def recover_reduced(self, e: fx.Node, fe: NodeFacts, insert_at: fx.Node) -> fx.Node:
        """Recover a reduced-length tensor leaving the pruned region to its original length."""
        (axis, length), = fe.reduced.items()
        new = self.lengths.get(length, length)
        axes = list(fe.axes)
        axes[axis] = tuple("F" if a == length else a for a in axes[axis])
        lay = Layout(tuple(axes), self.plan.joints)
        dim = lay.to_canonical(torch.empty(fe.shape), length).shape[-1]
        sub = replace(self.cfg, frames=length, recover_frames=None)
        recoverer = make_recoverer(sub, dim, find_heads(self.gm, self.plan, dim))
        stride = stages.total_stride(self.plan.reductions, self.cfg.frames, length)
        idx_name = self.add_module("hotpatch_reduced_index", stages.ReducedIndex(stride, length, new))
        name = self.add_module("hotpatch_recover", RecoverAt(recoverer, lay, length))
        with self.graph.inserting_after(insert_at):
            positions = self.graph.call_module(idx_name, (self.indices[-1],))
        with self.graph.inserting_after(positions):
            rec = self.graph.call_module(name, (e, positions))
        for u in [u for u in e.users if self.is_post(u)]:
            u.replace_input_with(e, rec)
        self.note(f"`{e.name}` leaves the pruned region with {new} tokens of the length-{length} stage: "
                  f"recovered to {length} (token i at the reduced position of its window's middle kept frame)")
        return rec

    # -- frame-sized layers (hotpatch.engine.passes.frame_layers)
    def probe_block_layers(self) -> list[tuple[str, nn.Module, tuple, tuple]]:
        """Frame-sized layers inside the opaque blocks after the cut, with the axes of their
        input and output read from two probes (B=1, B=2) of the unpatched graph."""
        frames = self.cfg.frames
        after = {b.name for b in self.plan.blocks if self.pos[self._node(b.node)] >= self.sites.cut}
        found = {
            f"{b}.{sub}": m
            for b in sorted(after)
            for sub, m in self.gm.get_submodule(b).named_modules()
            if sub and (sizes := layers.feature_sizes(m)) is not None and frames in sizes[1:]
        }
        if not found:
            return []
        runs = self.capture(found)
        return [
            (name, m, self._axes(runs[0][name][0], runs[1][name][0]), self._axes(runs[0][name][1], runs[1][name][1]))
            for name, m in found.items() if name in runs[0] and name in runs[1]
        ]

    def capture(self, modules: dict[str, nn.Module]) -> list[dict[str, tuple]]:
        """First input and output of each module in two runs of the unpatched graph: on a
        probe clip (B=1) and on two copies of it (B=2)."""
        runs: list[dict[str, tuple]] = []

        def hook(name):
            def record(_m, args, out):
                if name not in runs[-1] and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                    runs[-1][name] = (args[0].detach().clone(), out.detach().clone())
            return record

        handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
        x = torch.randn(self.plan.input_shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                for probe in (x, torch.cat([x, x])):
                    runs.append({})
                    self.gm(probe)
        finally:
            for h in handles:
                h.remove()
        return runs

    def _axes(self, t1: torch.Tensor, t2: torch.Tensor) -> tuple:
        if t1.dim() != t2.dim():
            return ()
        axes = []
        for i, (s1, s2) in enumerate(zip(t1.shape, t2.shape)):
            order = batch_order(t2, i, s1) if s2 == 2 * s1 and s1 > 1 else None
            axes.append(axis_atoms(s1, s2, order, self.cfg.frames, self.plan.joints))
        return tuple(axes)

    def _node(self, name: str) -> fx.Node:
        return next(n for n in self.nodes if n.name == name)

    def kept_holder(self, stage: int) -> layers.KeptFrames:
        """The holder from which layers inside opaque blocks of ``stage`` read its kept index."""
        if stage not in self.holders:
            self.holders[stage] = layers.KeptFrames()
            self.add_module("hotpatch_kept" if stage == 1 else f"hotpatch_kept{stage}", self.holders[stage])
        return self.holders[stage]

    def set_holder(self) -> None:
        """Route each stage's kept index through its holder (if any layer reads it) right after its cut."""
        for stage, holder in sorted(self.holders.items()):
            name = next(k for k, m in self.new_modules.items() if m is holder)
            index = self.indices[stage - 1]
            with self.graph.inserting_after(index):
                kept = self.graph.call_module(name, (index,))
            index.replace_all_uses_with(kept, delete_user_cb=lambda u, kept=kept: u is not kept)
            self.indices[stage - 1] = kept
            self.new_stage[kept] = stage

    def swap_block_layers(self, found: list[tuple[str, nn.Module, tuple, tuple]]) -> None:
        """Layers inside blocks read the kept index from a holder the graph sets after the cut."""
        for name, m, in_axes, out_axes in found:
            roles = layers.frame_roles(m, in_axes, out_axes, self.cfg.frames)
            if roles is None:
                continue
            layout = self._layer_layout(name, m, in_axes)
            layers.swap(self.gm, name, layout, self.cfg.frames, roles, self.kept_holder(self.block_stage(name)))
            self.note(layers.describe(name, m, roles, "inside a block:"))

    def _layer_layout(self, name: str, m: nn.Module, in_axes: tuple) -> Layout:
        layout = layers.input_layout(in_axes, m, self.plan.joints)
        if layout is None:
            raise RewriteError(
                f"`{name}` ({type(m).__name__}) has frames as its features after the cut, but its input "
                f"axes {in_axes} have no batch axis hotpatch can separate (or frames twice), so its "
                "weights cannot be gathered per sample. Choose n so that the cut comes after it."
            )
        return layout

    def frame_sized_call(self, u: fx.Node) -> None:
        """A graph-level call of a frame-sized layer: swap it and pass the kept index."""
        if u.op != "call_module" or not u.args:
            return
        m = self.gm.get_submodule(u.target)
        fin, fout = self.arg_fact(u, 0), self.fact(u)
        if fin is None or fout is None or fin.kind != "tensor" or fout.kind != "tensor":
            return
        roles = layers.frame_roles(m, fin.axes, fout.axes, self.cfg.frames)
        if roles is None:
            return
        layout = self._layer_layout(u.target, m, fin.axes)
        if not isinstance(m, layers._FrameSized):
            layers.swap(self.gm, u.target, layout, self.cfg.frames, roles)
        u.args = (*u.args, self.index_for(u))
        self.note(layers.describe(u.target, m, roles, "layer"))

    def clamp_topk(self, u: fx.Node) -> None:
        """``x.topk(k, dim=<frames>)`` with a literal k larger than the kept frames: k = f."""
        fin = self.arg_fact(u, 0)
        note = layers.clamp_topk(u, fin.axes if fin is not None else None, self.frames_at(self.stage(u)))
        if note:
            self.note(note)

    def gather_matmul(self, u: fx.Node, const: fx.Node) -> bool:
        """``A @ x`` / ``x @ A`` with an (F, F) constant: gather A's rows and columns."""
        found = layers.frame_matmul(u, self.orig_args.get(u, u.args), self.fact, self.cfg.frames, self.plan.joints)
        if found is None:
            return False
        layout, const_first = found
        a, x = u.args if const_first else u.args[::-1]
        if a is not const:
            return False
        name = self.add_module("hotpatch_matmul", layers.FrameMatmul(layout, const_first, self.cfg.frames))
        u.op, u.target, u.args, u.kwargs = "call_module", name, (const, x, self.index_for(u)), {}
        frames = self.cfg.frames
        self.note(f"`{const.name}` ({frames}, {frames}) in `{'A @ x' if const_first else 'x @ A'}`: rows and "
                  "columns gathered per sample by the kept frames")
        return True

    def gather_einsum(self, u: fx.Node, const: fx.Node) -> bool:
        """``torch.einsum("ts,bsc->btc", A, x)`` with an (F, F) constant: gather A per sample."""
        found = layers.frame_einsum(u, self.orig_args.get(u, u.args), self.fact, self.cfg.frames)
        if found is None or u.args[1 + found[2]] is not const:
            return False
        equation, gathered, pos = found
        name = self.add_module("hotpatch_einsum", layers.FrameEinsum(equation, gathered, pos, self.cfg.frames))
        u.op, u.target, u.args, u.kwargs = "call_module", name, tuple(u.args[1:]), {"index": self.index_for(u)}
        self.note(f"`{const.name}` ({self.cfg.frames}, {self.cfg.frames}) in einsum '{equation}': rows and "
                  "columns gathered per sample by the kept frames")
        return True

    def gather_constant(self, u: fx.Node, const: fx.Node) -> None:
        if self.gather_matmul(u, const) or self.gather_einsum(u, const):
            return
        elementwise = (u.op == "call_function" and u.target in _ELEMENTWISE_FUNCS) or (
            u.op == "call_method" and u.target in _ELEMENTWISE_METHODS
        )
        partner = next((a for a in u.all_input_nodes if a in self.pruned and self.fact(a)), None)
        if not elementwise or partner is None:
            raise RewriteError(
                f"`{const.name}` (shape {self.fact(const).shape}) is indexed by frame and used by "
                f"`{u.format_node()}` after the cut; hotpatch can only gather frame-indexed "
                "parameters used in element-wise ops (x + pos_embed). Choose n so the cut comes later."
            )
        lay = self.layout(partner, "tensor next to a frame-indexed constant")
        module = GatherConstant(self.fact(const).shape, lay, self.cfg.frames)
        name = self.add_module("hotpatch_gather", module)
        with self.graph.inserting_before(u):
            kept = self.graph.call_module(name, (const, self.index_for(u)))
        u.replace_input_with(const, kept)

    def replace_literals(self, u: fx.Node, new: int) -> None:
        """Int literals equal to F in the size arguments of shape ops that make a frame axis."""
        old = self.cfg.frames
        if new == old:
            return
        f = self.fact(u)
        out_axes = f.axes if f is not None and f.kind == "tensor" else None
        if not out_axes:
            return
        if (u.op == "call_method" and u.target in _SIZE_METHODS) or (
            u.op == "call_function" and u.target is torch.reshape
        ):
            sizes = list(u.args[1:])
            packed = len(sizes) == 1 and isinstance(sizes[0], (tuple, list))
            if packed:
                sizes = list(sizes[0])
            changed = False
            for i, s in enumerate(sizes):
                if type(s) is int and s == old and i < len(out_axes) and out_axes[i] == ("F",):
                    sizes[i], changed = new, True
            if changed:
                u.args = (u.args[0], tuple(sizes)) if packed else (u.args[0], *sizes)
        elif u.op == "call_function" and u.target in _EINOPS and any(a is not None and "F" in a for a in out_axes):
            u.kwargs = {k: new if type(v) is int and v == old else v for k, v in u.kwargs.items()}

    def insert_recovery(self) -> None:
        anchor = self.nodes[self.sites.recover]
        exits = [
            n for n in self.nodes if n in self.pruned and any(self.is_post(u) for u in n.users)
        ]
        exits += [n for n in self.pruned if n not in self.pos and any(self.is_post(u) for u in n.users)]
        insert_at = anchor
        for e in exits:
            fe = self.fact(e)
            if fe is not None and fe.kind == "int":
                if fe.count:
                    for u in [u for u in e.users if self.is_post(u)]:
                        self.replace_count(u, e, self.frames_at(self.stage(e)), self.post_frames)
                continue
            if fe is not None and not fe.carries_frames and len(fe.reduced) == 1:
                insert_at = self.recover_reduced(e, fe, insert_at)
                continue
            if fe is None or not fe.carries_frames:
                log.warning("`%s` is computed from pruned tokens and used after the recovery point", e.name)
                continue
            lay = self.layout(e, "tensor leaving the pruned region")
            dim = lay.to_canonical(torch.empty(fe.shape), self.cfg.frames).shape[-1]
            recoverer = make_recoverer(self.cfg, dim, find_heads(self.gm, self.plan, dim))
            name = self.add_module("hotpatch_recover", RecoverAt(recoverer, lay, self.post_frames))
            with self.graph.inserting_after(insert_at):
                rec = self.graph.call_module(name, (e, self.index_for(e)))
            insert_at = rec
            for u in [u for u in e.users if self.is_post(u)]:
                u.replace_input_with(e, rec)
        if not any(n.op == "call_module" and n.target.startswith("hotpatch_recover") for n in self.graph.nodes):
            raise RewriteError("no frame-carrying tensor leaves the pruned region; nothing to recover")

    def fix_post_literals(self) -> None:
        if self.post_frames == self.cfg.frames:
            return
        for u in [n for n in self.nodes if self.is_post(n)]:
            for a in list(u.all_input_nodes):
                fa = self.fact(a)
                if fa is not None and fa.kind == "int" and fa.count and not self.is_post(a) and a not in self.pruned:
                    self.replace_count(u, a, self.cfg.frames, self.post_frames)
            self.replace_literals(u, self.post_frames)

    def select_center(self) -> None:
        output = self.nodes[-1]
        outs = [a for a in output.all_input_nodes if a in self.pruned and self.fact(a) and self.fact(a).carries_frames]
        if not outs:
            raise RewriteError(
                "pipeline='seq2frame' needs a model whose output keeps the frame axis (it then "
                "returns the centre frame); this model's output has no frame axis. Use "
                "pipeline='seq2seq' (the default), which recovers all frames before the head."
            )
        replaced: dict[fx.Node, fx.Node] = {}
        for o in outs:
            lay = self.layout(o, "model output")
            name = self.add_module("hotpatch_center", CenterSelect(lay, self.cfg.center))
            with self.graph.inserting_before(output):
                replaced[o] = self.graph.call_module(name, (o, self.index_for(o)))
        output.args = map_arg(output.args, lambda a: replaced.get(a, a))


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


def rewrite(gm: fx.GraphModule, plan: Plan, cfg: PatchConfig) -> tuple[fx.GraphModule, Sites]:
    """Patch the traced ``gm`` in place of its graph and return the new GraphModule."""
    sites = locate(gm, plan, cfg)
    return _Surgery(gm, plan, cfg, sites).run(), sites
