"""Pass "stage positions": a full-length embedding sliced to a strided stage's current length.

Hierarchical models add one (1, F, C) embedding in every stage, sliced to the length the stage
has: ``x = x + self.pos[:, :x.shape[1]]`` where x holds F/3 or F/9 tokens after a strided
convolution. There the slice's rows are the stage's positions, not frames (the first F/3 rows,
whatever frames the stage's tokens summarise), so after the cut the slice keeps reading the
stage's current length, which follows f through the strides: the stage's tokens get its first
rows, as a (1, F/3, C) stage embedding does (:mod:`hotpatch.engine.passes.strided_stages`).
Nothing is gathered. A slice that reads the frame count F instead is the sliced-parameters pass's.
"""

from __future__ import annotations

import operator

import torch.fx as fx
from torch.fx.node import map_arg

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.uses import Use


class StagePositions(RewritePass):
    name = "stage positions"

    def claims(self, edit: Edit, use: Use) -> bool:
        return use.kind == "constant" and use.user is not None and stage_slice(edit, use.user, use.value) is not None

    def run(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            const = u.args[0] if u.args else None
            length = stage_slice(edit, u, const) if isinstance(const, fx.Node) else None
            if length is None:
                continue
            edit.consumed.add((u, const))
            name = const.target if const.op == "get_attr" else const.name
            edit.note(f"`{name}` {edit.fact(const).shape} sliced to the current length of the length-{length} "
                      f"strided stage: its rows are the stage's positions, so the slice follows the stage's "
                      f"length with f={edit.cfg.keeps[-1]} ({edit.lengths.get(length, length)} rows)")


def stage_slice(edit: Edit, u: fx.Node, const: fx.Node) -> int | None:
    """The stage length if ``u`` is ``const[..., :n]`` with ``const`` a frame-indexed constant
    and every int in the index the current length of a strided stage's reduced axis."""
    fc = edit.fact(const)
    if (u.op != "call_function" or u.target is not operator.getitem or u.args[0] is not const
            or fc is None or fc.kind != "tensor" or fc.data_dependent or not fc.carries_frames):
        return None
    read: list[fx.Node] = []
    map_arg(u.args[1], lambda a: read.append(a) or a)
    lengths = {reduced_length(edit, a) for a in read}
    return lengths.pop() if len(lengths) == 1 and None not in lengths else None


def reduced_length(edit: Edit, a: fx.Node) -> int | None:
    """The original length if the int ``a`` is the size of a reduced axis (``x.shape[1]``,
    ``x.size(1)``, ``b, t, c = x.shape`` of a tensor after a strided stage), else None."""
    fa = edit.fact(a)
    if fa is None or fa.kind != "int" or fa.count:
        return None
    if a.op == "call_method" and a.target == "size" and len(a.args) == 2:
        source, axis = a.args
    elif a.op == "call_function" and a.target is operator.getitem and isinstance(a.args[0], fx.Node):
        shape, axis = a.args
        is_shape = (shape.op == "call_function" and shape.target is getattr and shape.args[1] == "shape") or (
            shape.op == "call_method" and shape.target == "size" and len(shape.args) == 1)
        if not is_shape:
            return None
        source = shape.args[0]
    else:
        return None
    fs = edit.fact(source)
    if not isinstance(axis, int) or fs is None or fs.kind != "tensor" or not fs.shape:
        return None
    length = fs.reduced.get(axis % len(fs.shape))
    return length if length == fa.value else None
