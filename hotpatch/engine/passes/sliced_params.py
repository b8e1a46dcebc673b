"""Pass "sliced frame-indexed parameters": ``pos[:, :x.shape[1]]`` on tokens after a cut.

A later stage adds a frame embedding sliced to the length it receives
(``x + self.pos_embedding[:, :x.shape[1]]``). In the original that length is F, so the slice
holds one row per frame position; after the cut ``x.shape[1]`` is f and the slice would take
the first f rows, the positions of other frames. The slice is frozen at its original extent
(F rows) and the frame-indexed-parameters pass then gathers the kept rows per sample.
"""

from __future__ import annotations

import operator
from typing import Any

import torch.fx as fx
from torch.fx.node import map_arg

from hotpatch.engine.edit import Edit, RewritePass, can_gather
from hotpatch.engine.uses import Use


class SlicedConstants(RewritePass):
    name = "sliced frame-indexed parameters"

    def claims(self, edit: Edit, use: Use) -> bool:
        """The slice reads frame counts only, and every user of it can gather the frozen slice."""
        u = use.user
        if use.kind != "constant" or u is None or not self.is_sliced_constant(edit, u) or u.args[0] is not use.value:
            return False
        read = _nodes(u.args[1]) if len(u.args) > 1 else []
        if not read or any(self.frozen_value(edit, a) is None for a in read):
            return False
        shape = edit.fact(u).shape
        return all(can_gather(edit, v, shape, const=u) for v in u.users if v in edit.region)

    def run(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            if not self.is_sliced_constant(edit, u):
                continue
            read = _nodes(u.args[1]) if len(u.args) > 1 else []
            if not read or any(self.frozen_value(edit, a) is None for a in read):
                continue  # the index reads something else than frame counts: not a length slice
            u.args = (u.args[0], map_arg(u.args[1], lambda a: self.frozen_value(edit, a)))
            edit.pruned.discard(u)
            edit.note(
                f"`{u.args[0].name}` sliced to the current length after the cut: the slice keeps its "
                f"{edit.cfg.frames} rows and the kept frames' rows are gathered per sample"
            )

    def check(self, edit: Edit) -> None:
        left = next((u for u in edit.pruned_nodes()
                     if self.is_sliced_constant(edit, u) and (u, u.args[0]) not in edit.consumed), None)
        if left is not None:
            raise self.fail(f"`{left.name}` slices a frame-indexed constant to the pruned length")

    @staticmethod
    def is_sliced_constant(edit: Edit, u: fx.Node) -> bool:
        """``u`` indexes a value-independent tensor and gives a constant with a frame axis."""
        if u.op != "call_function" or u.target is not operator.getitem or not isinstance(u.args[0], fx.Node):
            return False
        src, out = edit.fact(u.args[0]), edit.fact(u)
        return (src is not None and src.kind == "tensor" and not src.data_dependent
                and out is not None and out.carries_frames and not out.data_dependent)

    @staticmethod
    def frozen_value(edit: Edit, a: fx.Node) -> int | None:
        """The original value of a frame count read in the index (F), else None."""
        fa = edit.fact(a)
        return fa.value if fa is not None and fa.kind == "int" and fa.count == "F" else None


def _nodes(index: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    map_arg(index, lambda a: found.append(a) or a)
    return found
