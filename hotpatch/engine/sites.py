"""Where the cuts and the recovery go: positions in the traced graph's node list.

A cut goes just before the first block (spatial or temporal) after the n-th temporal level;
the recovery goes right after the last block and the normalisation applied to its output (the
first norm that every data path to the output passes through).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from itertools import chain

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import NORMS, NodeFacts, Plan
from hotpatch.engine.config import PatchConfig
from hotpatch.engine.refusals import Listing, refusal
from hotpatch.errors import RewriteError


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


def _frame_channel_after_cut(gm: fx.GraphModule, plan: Plan, name: str, pos: dict[str, int]) -> str:
    """The refusal of a frame-channel block after the cut: its frame-sized tensors, and whether a
    larger n puts the cut after it (a temporal block follows it)."""
    module = gm.get_submodule(name)
    sized = [f"`{name}.{k}` {tuple(t.shape)}" for k, t in chain(module.named_parameters(), module.named_buffers())
             if plan.frames in t.shape]
    owns = [" (", Listing(sized), ")"] if sized else []
    at = pos[next(b.node for b in plan.blocks if b.name == name)]
    later = any(pos[b.node] > at for b in plan.temporal_blocks)
    fix = ("Choose a larger n, so that the cut comes after it." if later
           else f"No n puts the cut after `{name}`, so this model cannot be patched as it is.")
    return refusal(f"block {name} uses frames as its feature axis", *owns, " and runs after the cut; its weights "
                   f"are sized for F={plan.frames} frames, so it cannot see pruned tokens. {fix}")


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
            raise RewriteError(_frame_channel_after_cut(gm, plan, b.name, pos))
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

