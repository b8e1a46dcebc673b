"""Pattern (c) of issue 19: item assignment in traced code (``x[..., :2] = y``, ``x[mask] = 0``,
``x[:, :, idx] += emb``, ``x[:, t // 2] += token`` after the cut, and inside blocks), on
``InplaceVPT`` (tests/models/diffusion_style_vpts.py)."""

from __future__ import annotations

import operator

import torch
import torch.nn as nn

import diffusion_style_vpts as vpts
import vpt_properties as props
from hotpatch.engine.trace import trace

NAME, F, N, KEEP = "inplace", 27, 1, 9


class Writes(nn.Module):
    def forward(self, x):
        x = x.clone()
        x[x < 0] = 0
        x[:, 3:5] += x[:, :2]
        x[..., :1] = 7.0
        return x


def test_item_assignment_is_recorded_in_the_graph():
    gm, _ = trace(Writes())
    writes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is operator.setitem]
    assert len(writes) == 3
    x = torch.randn(2, 5, 4)
    assert torch.equal(gm(x), Writes()(x))


def test_every_write_of_the_vpt_is_in_the_patched_graph():
    model, x = vpts.build(NAME)
    import hotpatch

    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    writes = [n for n in patched.graph.nodes if n.target is operator.setitem]
    # 2 on the input, 1 joint-indexed, 6 frame-indexed (two per temporal block), 1 on the output
    assert len(writes) == 10
    cut = list(patched.graph.nodes).index(next(n for n in patched.graph.nodes if n.target == "hotpatch_prune"))
    after = [n for n in writes if list(patched.graph.nodes).index(n) > cut]
    assert len(after) == 5  # the writes after blocks 2 and 3 and the one on the output
    # the literal boundary of x[:, 18:] = ... follows the kept frames: 18 of 27 -> 6 of 9
    bounds = [n.args[1][1].start for n in writes if isinstance(n.args[1], tuple) and len(n.args[1]) == 2
              and isinstance(n.args[1][1], slice) and n.args[1][1].start is not None]
    assert bounds == [18, 6, 6]


globals().update(props.property_tests(vpts.build, {"inplace": "diffusion_style_vpts:InplaceVPT"}, N, KEEP, F))
