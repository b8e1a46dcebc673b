"""Frame-count uses inside the opaque blocks after the cut.

A block that takes one (·, F, ·) tensor is traced on its own (same submodules, same qualified
names) and probed on a random input of its shape; in its graph the passes look for splits of
the frame axis, ``A @ x`` / two-operand einsums with an (F, F) constant, and top-k over frames.
A block that must change is rebuilt for a given f and put in place of the original block;
its constants read the kept index from the stage's :class:`~hotpatch.engine.frame_layers.KeptFrames`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable

import torch
import torch.fx as fx

from hotpatch.engine import frame_layers as layers
from hotpatch.engine.analyse import NodeFacts, probe
from hotpatch.engine.edit import Edit
from hotpatch.engine.passes import splits
from hotpatch.engine.trace import HotpatchTracer
from hotpatch.engine.trace import trace as trace_module


@dataclass
class BlockFindings:
    """What the blocks after the cut hold: splits (each with its stage) and block rebuilds."""

    splits: list[tuple[splits.Split, None, int]]
    rebuilds: list[tuple[int, Callable[[int], None]]]  # (stage, rebuild(f))
    tensors: set[str] = field(default_factory=set)  # the blocks' own (F, F) tensors the rebuilds gather


def inspect_blocks(edit: Edit) -> BlockFindings:
    """Trace each block after the cut that takes one frame-carrying tensor on its own and find
    its splits, (F, F) constants and top-k calls (untraceable blocks are noted and skipped)."""
    frames = edit.cfg.frames
    found = BlockFindings([], [])
    gen = torch.Generator().manual_seed(0)
    for b in edit.plan.blocks:
        node = edit.node_named(b.node)
        fin = edit.fact(node.args[0]) if len(node.args) == 1 and not node.kwargs else None
        if edit.pos[node] < edit.sites.cut or fin is None or not fin.axes or len(fin.axes) < 2 or fin.axes[1] != ("F",):
            continue
        block = edit.gm.get_submodule(b.name)
        try:  # only shapes and int values matter here: a random input of the block's shape
            quick = HotpatchTracer([]).trace(block)
            if not (splits.may_split(quick) or layers.may_gather(quick)):
                continue
            block_gm, _ = trace_module(block)
            facts, _, _ = probe(block_gm, torch.randn(fin.shape, generator=gen), [], edit.plan.joints)
        except Exception as exc:  # an untraceable block keeps its own forward
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            edit.note(f"block `{b.name}` could not be traced on its own ({reason[:120]}); "
                      "splits, (F, F) buffers and top-k inside it were not checked")
            continue

        def fact_of(n: Any, facts=facts) -> NodeFacts | None:
            return facts.get(n.name) if isinstance(n, fx.Node) else None

        def axes_of(u: fx.Node, fact_of=fact_of) -> tuple | None:
            f = fact_of(u.args[0]) if u.args else None
            return f.axes if f is not None and f.kind == "tensor" else None

        stage = edit.stage(node)
        here = splits.find_splits(list(block_gm.graph.nodes), facts, frames, axes_of)
        found.splits += [(replace(sp, where=f"inside block `{b.name}`: {sp.where}"), None, stage) for sp, _ in here]
        literal = [fix for _, fix in here if fix is not None]
        mms = [(u, m) for u in block_gm.graph.nodes
               if (m := layers.frame_matmul(u, u.args, fact_of, frames, edit.plan.joints)) is not None]
        mms += [(u, e) for u in block_gm.graph.nodes
                if (e := layers.frame_einsum(u, u.args, fact_of, frames)) is not None]
        topks = [(u, axes_of(u)) for u in block_gm.graph.nodes if u.target in ("topk", torch.topk)]
        for u, spec in mms:
            const = u.args[1 + spec[2]] if isinstance(spec[0], str) else (u.args if spec[1] else u.args[::-1])[0]
            if isinstance(const, fx.Node) and const.op == "get_attr":
                found.tensors.add(f"{b.name}.{const.target}")
        if literal or mms or topks:
            found.rebuilds.append((stage, partial(rebuild_block, edit, b.name, block_gm, literal, mms, topks)))
    return found


def rebuild_block(edit: Edit, name: str, block_gm: fx.GraphModule, literal: list, mms: list, topks: list, f: int) -> None:
    """Edit the block's own graph for ``f`` kept frames and put it in place of block ``name``."""
    frames = edit.cfg.frames
    changed = bool(literal)
    for fix in literal:
        fix(f)
    for u, spec in mms:
        holder = edit.kept_holder(edit.block_stage(name))
        count = len([m for m in block_gm.modules() if isinstance(m, (layers.FrameMatmul, layers.FrameEinsum))])
        target = f"hotpatch_matmul{count}"
        if isinstance(spec[0], str):  # an einsum
            equation, gathered, pos = spec
            const, operands = u.args[1 + pos], tuple(u.args[1:])
            block_gm.add_module(target, layers.FrameEinsum(equation, gathered, pos, frames, holder))
            u.op, u.target, u.args, u.kwargs = "call_module", target, operands, {}
            what = f"einsum '{equation}'"
        else:
            layout, const_first = spec
            const, x = u.args if const_first else u.args[::-1]
            block_gm.add_module(target, layers.FrameMatmul(layout, const_first, frames, holder))
            u.op, u.target, u.args, u.kwargs = "call_module", target, (const, x), {}
            what = "A @ x" if const_first else "x @ A"
        edit.note(f"inside block `{name}`: `{const.name}` ({frames}, {frames}) in "
                  f"`{what}`: rows and columns gathered per sample by the kept frames")
        changed = True
    for u, axes in topks:
        note = layers.clamp_topk(u, axes, f)
        if note:
            edit.note(f"inside block `{name}`: {note}")
            changed = True
    if changed:
        block_gm.recompile()
        block_gm.__dict__["hotpatch_owned"] = True  # built here: later swaps need not copy it
        layers.replace_module(edit.gm, name, block_gm)
