"""The analysis decides, the rewrite never discovers: every frame-count use after the cut, and
the pass that handles it.

Before any pass edits the graph, :func:`inventory` lists what reads the frame count after the cut
(one :class:`Use` each):

* *constants* — a tensor computed without the input's values (a parameter, a buffer, a table made
  from sizes) with an axis of F entries, or of a strided stage's length, read by a node computed
  from the pruned tokens;
* *layers* — a module called after the cut (from the graph or inside a block) that owns a
  parameter or buffer one of whose dims is F, and whose input or output carries frames (the
  general rule for frame-sized layers: whatever the layer type, it is a use).

:func:`decide` asks every pass whether it handles each use (:meth:`RewritePass.claims`) and
refuses the first use that none claims with a :class:`~hotpatch.errors.RewriteError` of at most
600 characters naming the construct and its layer, before any edit. A pass's own refusals that
need only the unpatched graph are raised from its ``inspect`` at the same point. A failure after
the rewrite (:class:`~hotpatch.errors.PatchCheckError`) is then a bug in this analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import axis_atoms, batch_order
from hotpatch.engine.edit import Edit
from hotpatch.engine.frame_scatter import frame_axis, keeps_frames_apart, runs_shorter
from hotpatch.engine.inputs import as_inputs
from hotpatch.engine.refusals import one_line
from hotpatch.errors import RewriteError

if TYPE_CHECKING:
    from hotpatch.engine.edit import RewritePass


@dataclass
class SizedLayer:
    """A module after the cut owning tensors sized by the frame count (or by the length of the
    strided stage it runs in), and the axes of its first input and output read from two probes
    (B=1, B=2) of the unpatched graph, an axis of that size labelled "F" (None: not called with a
    tensor)."""

    name: str  # qualified name
    module: nn.Module
    tensors: list[tuple[str, tuple[int, ...]]]  # its own parameters and buffers with a dim of that size
    in_axes: tuple | None = None
    out_axes: tuple | None = None
    block: str | None = None  # the block (or opaque leaf) that holds it; None for a layer the graph calls
    example: tuple | None = field(default=None, repr=False)  # its first input and output at B=1
    stage: int | None = None  # sized by a strided stage of this (original) length, not by F

    @property
    def meets_frames(self) -> bool:
        """Its input or output has a frame axis (the pruned tokens reach it); for a layer sized by a
        strided stage's (short) length, whose sizes meet others by chance, also: it fails on one
        position fewer."""
        axes = [i for i, a in enumerate(self.in_axes or ()) if a is not None and "F" in a]
        if not self.stage:
            return bool(axes) or any(a is not None and "F" in a for a in self.out_axes or ())
        return len(axes) == 1 and self.example is not None and not runs_shorter(self.module, self.example[0], axes[0])

    def describe(self) -> str:
        name, shape = self.tensors[0]
        return f"`{self.name}` ({type(self.module).__name__}) has `{name}` of shape {shape}"

    def sized_by(self, frames: int) -> str:
        return f"the length-{self.stage} strided stage it runs in" if self.stage else f"the frame count F={frames}"


@dataclass(frozen=True)
class Use:
    """One frame-count use after the cut."""

    kind: str  # "constant" or "layer"
    user: fx.Node | None = None  # the node that reads the constant / calls the layer
    value: fx.Node | None = None  # the constant
    layer: SizedLayer | None = field(default=None, compare=False, hash=False)


def will_prune(edit: Edit) -> list[fx.Node]:
    """Before any edit: the nodes the cut will mark as pruned, in graph order (in the pruned range
    and computed from a value-dependent tensor that carries frames before the first cut)."""
    start = edit.sites.cut
    seeds = {n for n in edit.nodes[:start] if (f := edit.fact(n)) is not None and f.carries_frames and f.data_dependent}
    reach: set[fx.Node] = set()
    out = []
    for n in edit.nodes[start:]:
        if edit.in_range(n) and any(a in seeds or a in reach for a in n.all_input_nodes):
            reach.add(n)
            out.append(n)
    return out


def inventory(edit: Edit) -> list[Use]:
    """Every frame-count use after the cut (see the module docstring), in graph order."""
    uses = []
    for u in edit.region:
        for a in u.all_input_nodes:
            fa = edit.fact(a)
            if a in edit.region or fa is None or fa.kind != "tensor" or fa.data_dependent:
                continue
            if fa.carries_frames or fa.reduced or _meets_stage(edit, u, a):
                uses.append(Use("constant", user=u, value=a))
    for layer in edit.sized_layers:
        if layer.meets_frames:
            uses.append(Use("layer", layer=layer))
    return uses


def _meets_stage(edit: Edit, u: fx.Node, const: fx.Node) -> bool:
    """``u`` reads ``const``, which has an axis of the length of a strided stage after the cut (a
    (1, F/3, C) embedding), next to a tensor with a reduced axis of that length."""
    shape = edit.fact(const).shape
    for a in u.all_input_nodes:
        fa = edit.fact(a)
        if a is not const and edit.will_be_pruned(a) and fa is not None and fa.kind == "tensor":
            if any(length in shape for length in fa.reduced.values()):
                return True
    return False


def decide(edit: Edit, passes: list[RewritePass]) -> None:
    """Refuse the first use no pass claims (see the module docstring), before any edit."""
    for use in inventory(edit):
        if not any(p.claims(edit, use) for p in passes):
            raise RewriteError(refusal(edit, use))


def refusal(edit: Edit, use: Use) -> str:
    """One line (at most 600 characters) naming the use, its layer and what to do."""
    frames = edit.cfg.frames
    if use.kind == "layer":
        layer = use.layer
        assert layer is not None
        block = next((b for b in edit.plan.blocks if b.name == layer.block), None)
        pos = edit.pos[edit.node_named(block.node)] if block is not None else _call_position(edit, layer.name)
        where = layer.block or layer.name
        if layer.name == layer.block:
            what = (f"block {layer.describe()}, sized by {layer.sized_by(frames)}, in its own forward after the "
                    f"cut before `{edit.sites.cut_block}`; inside a block hotpatch gathers (F, F) matrices in "
                    "`A @ x` or einsum and frame-sized layers, not a tensor the block uses itself")
        elif layer.stage:
            what = (f"{layer.describe()}, sized by {layer.sized_by(frames)}, and that stage's tokens reach it "
                    f"{_reach(layer)}; hotpatch runs such a layer on the first positions of the stage if it "
                    "keeps positions apart, and this one mixes them")
        else:
            what = (f"{layer.describe()}, sized by {layer.sized_by(frames)}, and frames reach it "
                    f"{_reach(layer)} after the cut before `{edit.sites.cut_block}`; hotpatch restricts Linear, "
                    "Conv1d, BatchNorm, LayerNorm and GroupNorm over frames, and layers that keep frames apart, "
                    f"to the kept frames, and this one {_why_not(layer)}")
    else:
        assert use.user is not None and use.value is not None
        fa = edit.fact(use.value)
        pos = edit.pos[use.user]
        where = _owner(edit, pos)
        what = (f"{constant_name(use.value)} (shape {fa.shape}) is indexed by "
                f"{'frame' if fa.carries_frames else 'the positions of a strided stage'} and used by "
                f"`{one_line(use.user.format_node(), 160)}` (in or after `{where}`), after the cut before "
                f"`{edit.sites.cut_block}`; hotpatch gathers such tensors in element-wise ops (x + pos_embed), "
                "slices to the current length and (F, F) matrices in `A @ x` or einsum, not in this op")
    return one_line(f"{what}. {_fix(edit, pos, where)}")


def constant_name(n: fx.Node) -> str:
    """How a refusal names a constant: `pos` for a parameter or buffer, `expand_1` (from `pos`) for
    a tensor made from one."""
    if n.op == "get_attr":
        return f"`{n.target}`"
    roots, stack, seen = [], [n], {n}
    while stack:
        for a in stack.pop().all_input_nodes:
            if a not in seen:
                seen.add(a)
                (roots if a.op == "get_attr" else stack).append(a)
    origin = f" (from {', '.join(f'`{r.target}`' for r in roots[:2])})" if roots else ""
    return f"`{n.name}`{origin}"


def _why_not(layer: SizedLayer) -> str:
    """Why the general rule (:mod:`hotpatch.engine.frame_scatter`) does not apply to ``layer``."""
    a_in, a_out = frame_axis(layer.in_axes), frame_axis(layer.out_axes)
    if a_in is None or a_out is None or layer.example is None:
        return "does not hold the frames on an axis of their own next to a batch axis"
    if not keeps_frames_apart(layer.module, layer.example[0], a_in, a_out):
        return "mixes frames"
    return "is not inside a block"


def _reach(layer: SizedLayer) -> str:
    ins = any(a is not None and "F" in a for a in layer.in_axes or ())
    outs = any(a is not None and "F" in a for a in layer.out_axes or ())
    return "in its input and output" if ins and outs else "in its input" if ins else "in its output"


def _call_position(edit: Edit, name: str) -> int:
    return next((edit.pos[n] for n in edit.nodes if n.op == "call_module" and n.target == name), len(edit.nodes))


def _owner(edit: Edit, pos: int) -> str:
    """The last block at or before graph position ``pos``."""
    before = [b for b in edit.plan.blocks if edit.pos[edit.node_named(b.node)] <= pos]
    return before[-1].name if before else "the model"


def _fix(edit: Edit, pos: int, where: str) -> str:
    """Which n puts the cut after graph position ``pos`` (a use in or after ``where``), if any
    (the cut must come before the first strided stage)."""
    first_stage = min((edit.pos[edit.node_named(r.node)] for r in edit.plan.reductions), default=len(edit.nodes))
    for n in range(1, edit.plan.levels if pos < first_stage else 1):
        level_n = [edit.pos[edit.node_named(b.node)] for b in edit.plan.temporal_blocks if b.level == n]
        after = [p for b in edit.plan.blocks if (p := edit.pos[edit.node_named(b.node)]) > max(level_n)]
        if after and min(after) > pos:
            return f"Choose n >= {n} so that the cut comes after it."
    return f"No n puts the cut after `{where}`, so this model cannot be patched as it is."


# ------------------------------------------------------------------ layers sized by the frame count


def sized_layers(edit: Edit) -> list[SizedLayer]:
    """Modules after the cut (inside the blocks, and opaque calls of the pruned region) owning a
    parameter or buffer with a dim of F (or of the length of the strided stage the block runs
    in), with the axes of their input and output."""
    frames = edit.cfg.frames
    blocks = {b.node for b in edit.plan.blocks}
    blocks_by_name = {b.name for b in edit.plan.blocks}
    holders = {b.name: _stage_lengths(edit, edit.node_named(b.node)) for b in edit.plan.blocks
               if edit.pos[edit.node_named(b.node)] >= edit.sites.cut}
    holders.update({n.target: set() for n in edit.region if n.op == "call_module" and n.name not in blocks})
    found: dict[str, SizedLayer] = {}
    for holder, lengths in holders.items():
        for sub, m in edit.gm.get_submodule(holder).named_modules():
            own = [(k, tuple(t.shape)) for k, t in chain(m.named_parameters(recurse=False), m.named_buffers(recurse=False))
                   if t is not None]
            name = f"{holder}.{sub}" if sub else holder
            by_frames = [t for t in own if frames in t[1]]
            by_stage = [(t, length) for t in own for length in lengths if length in t[1]]
            if name in found or not (by_frames or by_stage):
                continue
            block = holder if sub or holder in blocks_by_name else None  # a layer the graph calls: its own
            found[name] = (SizedLayer(name, m, by_frames, block=block) if by_frames
                           else SizedLayer(name, m, [by_stage[0][0]], block=block, stage=by_stage[0][1]))
    if not found:
        return []
    runs = capture(edit, {name: layer.module for name, layer in found.items()})
    for name, layer in found.items():
        if name in runs[0] and name in runs[1]:
            size = layer.stage or frames
            layer.in_axes = read_axes(edit, runs[0][name][0], runs[1][name][0], size)
            layer.out_axes = read_axes(edit, runs[0][name][1], runs[1][name][1], size)
            layer.example = runs[0][name]
    return list(found.values())


def _stage_lengths(edit: Edit, block: fx.Node) -> set[int]:
    """The strided stages' lengths a block's inputs carry (reduced axes)."""
    return {length for a in block.all_input_nodes if (f := edit.fact(a)) is not None for length in f.reduced.values()}


def capture(edit: Edit, modules: dict[str, nn.Module]) -> list[dict[str, tuple]]:
    """First input and output of each module in two runs of the unpatched graph: on a
    probe clip (B=1) and on two copies of it (B=2)."""
    runs: list[dict[str, tuple]] = []

    def hook(name):
        def record(_m, args, out):
            if name not in runs[-1] and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                runs[-1][name] = (args[0].detach().clone(), out.detach().clone())
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    x = torch.randn(edit.plan.input_shape, generator=torch.Generator().manual_seed(0))
    inputs = as_inputs(edit.graph, x) if edit.plan.example is None else edit.plan.example.with_clip(x)
    try:
        with torch.no_grad():
            for probe in (inputs, inputs.twice()):
                runs.append({})
                edit.gm(*probe.args(edit.graph))
    finally:
        for h in handles:
            h.remove()
    return runs


def read_axes(edit: Edit, t1: torch.Tensor, t2: torch.Tensor, frames: int | None = None) -> tuple:
    """Axis labels of a tensor seen at batch 1 (``t1``) and batch 2 (``t2``); an axis of
    ``frames`` entries (default F) is labelled "F"."""
    if t1.dim() != t2.dim():
        return ()
    axes = []
    for i, (s1, s2) in enumerate(zip(t1.shape, t2.shape)):
        order = batch_order(t2, i, s1) if s2 == 2 * s1 and s1 > 1 else None
        axes.append(axis_atoms(s1, s2, order, frames or edit.cfg.frames, edit.plan.joints))
    return tuple(axes)
