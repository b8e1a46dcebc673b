"""Pass "carried tensors": a frame-carrying tensor computed before the cut and used after it.

Besides the tensors pruned at the cut (those alive there), a later node may read a tensor made
before the cut (a skip connection, a context computed once and fed to every block). Each such
use is given that tensor gathered with the kept indices of the user's stage (one
:class:`~hotpatch.engine.wrappers.GatherAt` per tensor and stage).
"""

from __future__ import annotations

import torch.fx as fx

from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.wrappers import GatherAt


class CarriedTensors(RewritePass):
    name = "carried tensors"

    def inspect(self, edit: Edit) -> None:
        """Every tensor with frames read after the cut has a layout the gather can read."""
        for u in edit.region:
            for a in u.all_input_nodes:
                fa = edit.fact(a)
                if a not in edit.region and fa is not None and fa.carries_frames and fa.data_dependent:
                    edit.layout(a, "tensor used after the cut")

    def run(self, edit: Edit) -> None:
        gathered: dict[tuple[fx.Node, int], fx.Node] = {}
        for u in edit.pruned_nodes():
            stage = edit.stage(u)
            for a in list(u.all_input_nodes):
                if not self.needs_gather(edit, a):
                    continue
                if (a, stage) not in gathered:
                    lay = edit.layout(a, "tensor used after the cut")
                    name = edit.add_module("hotpatch_gather", GatherAt(lay, edit.cfg.frames))
                    with edit.graph.inserting_before(u):
                        node = edit.graph.call_module(name, (a, edit.index_for(u)))
                    gathered[a, stage] = node
                    edit.new_stage[node] = stage
                    edit.pruned.add(node)
                u.replace_input_with(a, gathered[a, stage])

    def check(self, edit: Edit) -> None:
        for u in edit.pruned_nodes():
            late = next((a for a in u.all_input_nodes if self.needs_gather(edit, a)), None)
            if late is not None:
                raise self.fail(f"`{u.name}` reads `{late.name}` with all F frames after the cut")

    @staticmethod
    def needs_gather(edit: Edit, a: fx.Node) -> bool:
        fa = edit.fact(a)
        return (a not in edit.indices and a not in edit.pruned and fa is not None
                and fa.carries_frames and fa.data_dependent)
