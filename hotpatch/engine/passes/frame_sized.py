"""Pass "frame-sized layers": weights whose size is the frame count, gathered per sample.

``BatchNorm1d/2d(F)`` with frames as channels, ``Linear``/``LayerNorm`` over a last frame axis,
``Conv1d(F, ·, k)`` (grouped too), ``GroupNorm(G, F)``, ``A @ x`` and two-operand einsums with an
(F, F) constant, and a literal ``k > f`` in ``x.topk(k, dim=<frames>)``. Layers called from the
graph are swapped for their gathering twins (:mod:`hotpatch.engine.frame_layers`) and get the kept index as an argument;
layers inside opaque blocks read it from the stage's ``hotpatch_kept`` holder, which the graph
sets right after the pruner. Which layers are frame-sized, and the axes of their input and output,
the analysis found before any edit (:func:`hotpatch.engine.uses.sized_layers`); a frame-sized layer
without a twin that keeps frames apart runs on all F positions (the general rule,
:mod:`hotpatch.engine.frame_scatter`); one that mixes frames is refused there.
"""

from __future__ import annotations

import torch.fx as fx

from hotpatch.engine import frame_layers as layers
from hotpatch.engine import frame_scatter as scatter
from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.uses import SizedLayer, Use
from hotpatch.layout import Layout


class FrameSizedLayers(RewritePass):
    name = "frame-sized layers"

    def __init__(self) -> None:
        self.scattered: dict[str, tuple[Layout, Layout]] = {}  # per-frame layers without a twin
        self.padded: dict[str, tuple[int, int, int]] = {}  # per-position layers of a strided stage

    def claims(self, edit: Edit, use: Use) -> bool:
        if use.kind == "layer":
            layer = use.layer
            if in_block(edit, layer) and twin_layout(edit, layer) is not None or graph_call(edit, layer) is not None:
                return True
            if layer.stage:
                axes = stage_axes(layer) if in_block(edit, layer) else None
                if axes is not None:
                    self.padded[layer.name] = (*axes, layer.stage)
                return axes is not None
            layouts = scatter_layouts(edit, layer) if in_block(edit, layer) else None
            if layouts is not None:
                self.scattered[layer.name] = layouts
            return layouts is not None
        if use.kind == "constant" and use.user is not None:
            frames, u = edit.cfg.frames, use.user
            mm = layers.frame_matmul(u, u.args, edit.fact, frames, edit.plan.joints)
            if mm is not None:
                return (u.args if mm[1] else u.args[::-1])[0] is use.value
            es = layers.frame_einsum(u, u.args, edit.fact, frames)
            return es is not None and u.args[1 + es[2]] is use.value
        return False

    def run(self, edit: Edit) -> None:
        for layer in edit.sized_layers:
            layout = twin_layout(edit, layer) if in_block(edit, layer) else None
            if layout is None:
                continue
            roles = layers.frame_roles(layer.module, layer.in_axes, layer.out_axes, edit.cfg.frames)
            holder = edit.kept_holder(edit.block_stage(layer.name))
            layers.swap(edit.gm, layer.name, layout, edit.cfg.frames, roles, holder)
            edit.note(layers.describe(layer.name, layer.module, roles, "inside a block:"))
        for name, (layout_in, layout_out) in self.scattered.items():
            holder = edit.kept_holder(edit.block_stage(name))
            scatter.attach(edit.gm, name, scatter.ScatterFrames(layout_in, layout_out, edit.cfg.frames, holder))
            m = edit.gm.get_submodule(name)
            edit.note(f"inside a block: `{name}` ({type(m).__name__}, sized by the frame count) keeps frames apart: "
                      "it runs on all F frame positions (the dropped ones zero) and its kept frames are read back")
        for name, (axis_in, axis_out, length) in self.padded.items():
            scatter.attach(edit.gm, name, scatter.PadPositions(axis_in, axis_out, length))
            m = edit.gm.get_submodule(name)
            edit.note(f"inside a block: `{name}` ({type(m).__name__}, sized by the length-{length} strided stage) keeps "
                      f"positions apart: the stage's {edit.lengths.get(length, length)} tokens use its first positions")
        set_holders(edit)
        for u in edit.pruned_nodes():
            frame_sized_call(edit, u)
            clamp_topk(edit, u)
            for a in list(u.all_input_nodes):
                fa = edit.fact(a)
                if a in edit.indices or a in edit.pruned or fa is None or fa.data_dependent or not fa.carries_frames:
                    continue
                if gather_matmul(edit, u, a) or gather_einsum(edit, u, a):
                    edit.consumed.add((u, a))

    def check(self, edit: Edit) -> None:
        for stage, holder in edit.holders.items():
            if not any(n.op == "call_module" and edit.gm.get_submodule(n.target) is holder for n in edit.graph.nodes):
                raise self.fail(f"the kept-frame holder of stage {stage} is never set")


def in_block(edit: Edit, layer: SizedLayer) -> bool:
    """A layer inside a block (it reads the kept index from the stage's holder)."""
    return any(layer.name.startswith(b.name + ".") for b in edit.plan.blocks)


def twin_layout(edit: Edit, layer: SizedLayer) -> Layout | None:
    """The input layout of a layer with a gathering twin whose features are frames, else None."""
    roles = layers.frame_roles(layer.module, layer.in_axes, layer.out_axes, edit.cfg.frames)
    return None if roles is None else layers.input_layout(layer.in_axes, layer.module, edit.plan.joints)


def scatter_layouts(edit: Edit, layer: SizedLayer) -> tuple[Layout, Layout] | None:
    """Input and output layouts of a frame-sized layer without a twin that keeps frames apart
    (the general rule, :mod:`hotpatch.engine.frame_scatter`), else None."""
    a_in, a_out = scatter.frame_axis(layer.in_axes), scatter.frame_axis(layer.out_axes)
    if a_in is None or a_out is None or layer.example is None:
        return None
    if not scatter.keeps_frames_apart(layer.module, layer.example[0], a_in, a_out):
        return None
    return Layout(tuple(layer.in_axes), edit.plan.joints), Layout(tuple(layer.out_axes), edit.plan.joints)


def stage_axes(layer: SizedLayer) -> tuple[int, int] | None:
    """The position axes of input and output of a layer sized by a strided stage that keeps
    positions apart (:class:`~hotpatch.engine.frame_scatter.PadPositions`), else None."""
    found = [[i for i, a in enumerate(axes or ()) if a == ("F",)] for axes in (layer.in_axes, layer.out_axes)]
    if any(len(f) != 1 for f in found) or layer.example is None:
        return None
    a_in, a_out = found[0][0], found[1][0]
    return (a_in, a_out) if scatter.keeps_frames_apart(layer.module, layer.example[0], a_in, a_out) else None


def graph_call(edit: Edit, layer: SizedLayer) -> fx.Node | None:
    """The graph's call of a frame-sized layer after the cut, if its twin applies there."""
    for u in edit.region:
        if u.op == "call_module" and u.target == layer.name and u.args:
            fin, fout = edit.fact(u.args[0]), edit.fact(u)
            if fin is None or fout is None or fin.kind != "tensor" or fout.kind != "tensor":
                return None
            m = layer.module
            if layers.frame_roles(m, fin.axes, fout.axes, edit.cfg.frames) is None:
                return None
            return u if layers.input_layout(fin.axes, m, edit.plan.joints) is not None else None
    return None


def set_holders(edit: Edit) -> None:
    """Route each stage's kept index through its holder (if any layer reads it) right after its cut."""
    for stage, holder in sorted(edit.holders.items()):
        name = next(k for k, m in edit.new_modules.items() if m is holder)
        index = edit.indices[stage - 1]
        with edit.graph.inserting_after(index):
            kept = edit.graph.call_module(name, (index,))
        index.replace_all_uses_with(kept, delete_user_cb=lambda u, kept=kept: u is not kept)
        edit.indices[stage - 1] = kept
        edit.new_stage[kept] = stage


def frame_sized_call(edit: Edit, u: fx.Node) -> None:
    """A graph-level call of a frame-sized layer: swap it and pass the kept index."""
    if u.op != "call_module" or not u.args:
        return
    m = edit.gm.get_submodule(u.target)
    fin, fout = edit.arg_fact(u, 0), edit.fact(u)
    if fin is None or fout is None or fin.kind != "tensor" or fout.kind != "tensor":
        return
    roles = layers.frame_roles(m, fin.axes, fout.axes, edit.cfg.frames)
    if roles is None:
        return
    layout = layers.input_layout(fin.axes, m, edit.plan.joints)
    if layout is None:
        return
    if not isinstance(m, layers.FrameSized):
        layers.swap(edit.gm, u.target, layout, edit.cfg.frames, roles)
    u.args = (*u.args, edit.index_for(u))
    edit.note(layers.describe(u.target, m, roles, "layer"))


def clamp_topk(edit: Edit, u: fx.Node) -> None:
    """``x.topk(k, dim=<frames>)`` with a literal k larger than the kept frames: k = f."""
    fin = edit.arg_fact(u, 0)
    note = layers.clamp_topk(u, fin.axes if fin is not None else None, edit.frames_at(edit.stage(u)))
    if note:
        edit.note(note)


def gather_matmul(edit: Edit, u: fx.Node, const: fx.Node) -> bool:
    """``A @ x`` / ``x @ A`` with an (F, F) constant: gather A's rows and columns."""
    frames = edit.cfg.frames
    found = layers.frame_matmul(u, edit.orig_args.get(u, u.args), edit.fact, frames, edit.plan.joints)
    if found is None:
        return False
    layout, const_first = found
    a, x = u.args if const_first else u.args[::-1]
    if a is not const:
        return False
    name = edit.add_module("hotpatch_matmul", layers.FrameMatmul(layout, const_first, frames))
    u.op, u.target, u.args, u.kwargs = "call_module", name, (const, x, edit.index_for(u)), {}
    edit.note(f"`{const.name}` ({frames}, {frames}) in `{'A @ x' if const_first else 'x @ A'}`: rows and "
              "columns gathered per sample by the kept frames")
    return True


def gather_einsum(edit: Edit, u: fx.Node, const: fx.Node) -> bool:
    """``torch.einsum("ts,bsc->btc", A, x)`` with an (F, F) constant: gather A per sample."""
    frames = edit.cfg.frames
    found = layers.frame_einsum(u, edit.orig_args.get(u, u.args), edit.fact, frames)
    if found is None or u.args[1 + found[2]] is not const:
        return False
    equation, gathered, pos = found
    name = edit.add_module("hotpatch_einsum", layers.FrameEinsum(equation, gathered, pos, frames))
    u.op, u.target, u.args, u.kwargs = "call_module", name, tuple(u.args[1:]), {"index": edit.index_for(u)}
    edit.note(f"`{const.name}` ({frames}, {frames}) in einsum '{equation}': rows and "
              "columns gathered per sample by the kept frames")
    return True
