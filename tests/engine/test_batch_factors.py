"""Pattern (b) of issue 19: hypotheses merged with the batch and the frames, (B·H·F, J, C) for
spatial blocks and (B·H·J, F, C) for temporal ones (``HypothesisVPT`` with einops,
``HypothesisViewVPT`` with permute/reshape and the factors in another order; in
tests/models/diffusion_style_vpts.py), pruned per sample and per hypothesis."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

import diffusion_style_vpts as vpts
import hotpatch
import vpt_properties as props
from hotpatch.layout import Extra, Layout

MODELS = ["hypothesis", "hypothesis_view"]
F, N, KEEP, H, J = 27, 1, 9, 5, 17
SOURCES = {"hypothesis": "diffusion_style_vpts:HypothesisVPT", "hypothesis_view": "diffusion_style_vpts:HypothesisViewVPT"}


@pytest.mark.parametrize("name, spatial, temporal", [
    ("hypothesis", ("B", Extra(H), "F"), ("B", Extra(H), "J")),
    ("hypothesis_view", ("B", "F", Extra(H)), ("B", Extra(H), "J")),
])
def test_merged_axes_are_read_atom_by_atom(name, spatial, temporal):
    model, x = vpts.build(name)
    plan = hotpatch.prepare(model, example_input=x[:1]).plan
    first = {b.name: b for b in plan.blocks}
    nodes = {n.name: n for n in hotpatch.prepare(model, example_input=x[:1]).gm.graph.nodes}
    axes = lambda block: plan.facts[nodes[first[block].node].args[0].name].axes[0]
    assert axes("spatial.1") == spatial and axes("temporal.1") == temporal
    assert plan.output_layouts == ["(B, H5, F, J, 3)"]


def test_each_hypothesis_of_each_sample_keeps_its_own_frames():
    model, x = vpts.build("hypothesis")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    got = props.capture(patched, x, outputs={"before": "temporal.0"}, inputs={"after": ("spatial.1", 0)})
    index = got["index"]
    assert index.shape == (2 * H, KEEP)
    assert len({tuple(row.tolist()) for row in index}) > 1  # hypotheses pick frames of their own
    before = rearrange(got["before"], "(b h j) f c -> (b h) f j c", h=H, j=J)
    expected = before[torch.arange(2 * H)[:, None], index]
    assert torch.equal(got["after"], rearrange(expected, "bh f j c -> (bh f) j c"))


@pytest.mark.parametrize("axes", [
    (("B", Extra(H), "F"), ("J",), (8,)),
    (("B", "F", Extra(H)), ("J",), (8,)),
    (("B",), (Extra(H),), ("F",), ("J",), (8,)),
    ((Extra(H), "B", "J"), ("F",), (8,)),
])
def test_layout_with_a_batch_like_factor_round_trips(axes):
    lay = Layout(axes, joints=J)
    sizes = {"B": 2, "F": F, "J": J}
    shape = [1] * len(axes)
    for i, axis in enumerate(axes):
        for a in axis:
            shape[i] *= sizes[a] if isinstance(a, str) else int(a)
    x = torch.randn(shape)
    canon = lay.to_canonical(x, F)
    assert canon.shape[:2] == (2 * H, F)
    assert torch.equal(lay.from_canonical(canon, F), x)


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
