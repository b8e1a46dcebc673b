"""Pass "frame-sized layers": weights whose size is the frame count, gathered per sample.

``BatchNorm1d/2d(F)`` with frames as channels, ``Linear``/``LayerNorm`` over a last frame axis,
``Conv1d(F, ·, k)``, ``A @ x`` and two-operand einsums with an (F, F) constant, and a literal
``k > f`` in ``x.topk(k, dim=<frames>)``. Layers called from the graph are swapped for their
gathering twins (:mod:`hotpatch.engine.frame_layers`) and get the kept index as an argument;
layers inside opaque blocks read it from the stage's ``hotpatch_kept`` holder, which the graph
sets right after the pruner. Their input and output axes are read from two probes (B=1, B=2) of
the unpatched graph, taken before any pass edits it.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine import frame_layers as layers
from hotpatch.engine.analyse import axis_atoms, batch_order
from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.inputs import as_inputs
from hotpatch.errors import RewriteError
from hotpatch.layout import Layout

Found = list[tuple[str, nn.Module, tuple, tuple]]  # (qualified name, layer, input axes, output axes)


class FrameSizedLayers(RewritePass):
    name = "frame-sized layers"

    def __init__(self) -> None:
        self.in_blocks: Found = []

    def inspect(self, edit: Edit) -> None:
        self.in_blocks = probe_block_layers(edit)

    def run(self, edit: Edit) -> None:
        for name, m, in_axes, out_axes in self.in_blocks:
            roles = layers.frame_roles(m, in_axes, out_axes, edit.cfg.frames)
            if roles is None:
                continue
            layout = layer_layout(edit, name, m, in_axes)
            layers.swap(edit.gm, name, layout, edit.cfg.frames, roles, edit.kept_holder(edit.block_stage(name)))
            edit.note(layers.describe(name, m, roles, "inside a block:"))
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


def probe_block_layers(edit: Edit) -> Found:
    """Frame-sized layers inside the opaque blocks after the cut, with the axes of their
    input and output read from two probes (B=1, B=2) of the unpatched graph."""
    frames = edit.cfg.frames
    after = {b.name for b in edit.plan.blocks if edit.pos[edit.node_named(b.node)] >= edit.sites.cut}
    found = {
        f"{b}.{sub}": m
        for b in sorted(after)
        for sub, m in edit.gm.get_submodule(b).named_modules()
        if sub and (sizes := layers.feature_sizes(m)) is not None and frames in sizes[1:]
    }
    if not found:
        return []
    runs = capture(edit, found)
    return [
        (name, m, read_axes(edit, runs[0][name][0], runs[1][name][0]),
         read_axes(edit, runs[0][name][1], runs[1][name][1]))
        for name, m in found.items() if name in runs[0] and name in runs[1]
    ]


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


def read_axes(edit: Edit, t1: torch.Tensor, t2: torch.Tensor) -> tuple:
    """Axis labels of a tensor seen at batch 1 (``t1``) and batch 2 (``t2``)."""
    if t1.dim() != t2.dim():
        return ()
    axes = []
    for i, (s1, s2) in enumerate(zip(t1.shape, t2.shape)):
        order = batch_order(t2, i, s1) if s2 == 2 * s1 and s1 > 1 else None
        axes.append(axis_atoms(s1, s2, order, edit.cfg.frames, edit.plan.joints))
    return tuple(axes)


def layer_layout(edit: Edit, name: str, m: nn.Module, in_axes: tuple) -> Layout:
    layout = layers.input_layout(in_axes, m, edit.plan.joints)
    if layout is None:
        raise RewriteError(
            f"`{name}` ({type(m).__name__}) has frames as its features after the cut, but its input "
            f"axes {in_axes} have no batch axis hotpatch can separate (or frames twice), so its "
            "weights cannot be gathered per sample. Choose n so that the cut comes after it."
        )
    return layout


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
    layout = layer_layout(edit, u.target, m, fin.axes)
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
