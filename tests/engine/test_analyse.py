"""The analysis (hotpatch/engine/analyse.py): block labels (kind, level) pinned for the test VPTs
and the recipes, decided by structure; probes on fake tensors where that is cheaper, on real
values where a model reads them. Which attention mixes frames: test_mixing.py."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn as nn
from einops import rearrange
from torch._subclasses.fake_tensor import FakeTensor

import hotpatch
import author_vpts
import gated_vpts
from test_models import _input, _tiny

# the module, also where hotpatch.engine exports a function of the same name
analyse = importlib.import_module("hotpatch.engine.analyse")

S, T, FC = "spatial", "temporal", "frame-channel"

# (kind, level) of every block, computed with the perturbation test of the base commit
# (105dbd9) before the structural test replaced it: the labels must not change.
PINNED = {
    "mixste": [(S, 0), (T, 1), (S, 0), (T, 2), (S, 0), (T, 3), (S, 0), (T, 4)],
    "motionbert": [(T, 1), (T, 1), (T, 2), (T, 2), (T, 3), (T, 3)],
    "mhformer": [(FC, 0)] * 4 + [(T, 1), (T, 2), (T, 3)],
    "poseformer": [(S, 0)] * 3 + [(T, 1), (T, 2), (T, 3)],
    "encoder_layer": [(T, 1), (T, 2), (T, 3), (T, 4)],
    "center_frame": [(T, 1), (T, 2), (T, 3), (T, 4)],
}
PINNED_RECIPES = {  # tiny builds of tests/test_models.py
    ("mixste", "lite"): [(S, 0), (T, 1), (S, 0), (T, 2)],
    ("motionbert", "lite"): [(T, 1), (T, 1), (T, 2), (T, 2)],
    ("motionbert", "full"): [(T, 1), (T, 1), (T, 2), (T, 2)],
    ("mhformer", "lite"): [(FC, 0)] * 12 + [(T, 1), (T, 2), (T, 3)],
}


def _labels(plan) -> list[tuple[str, int]]:
    return [(b.kind, b.level) for b in plan.blocks]


@pytest.mark.parametrize("name", list(PINNED))
def test_test_vpts_keep_their_labels(name):
    model, x = author_vpts.build(name)
    plan = hotpatch.prepare(model, example_input=x[:1]).plan
    assert _labels(plan) == PINNED[name]


@pytest.mark.parametrize("name", list(PINNED))
def test_test_vpts_are_decided_by_structure(name):
    model, x = author_vpts.build(name)
    plan = hotpatch.prepare(model, example_input=x[:1]).plan
    assert all(b.why for b in plan.blocks)
    assert not [n for n in plan.notes if "perturbation" in n]


@pytest.mark.parametrize("name,variant", list(PINNED_RECIPES))
def test_recipes_keep_their_labels(name, variant):
    extra = {"variant": variant} if name == "motionbert" else {}
    model = _tiny(name, **extra)
    plan = hotpatch.prepare(model, example_input=_input(name, 27 if name == "mhformer" else 9, batch=1)).plan
    assert _labels(plan) == PINNED_RECIPES[(name, variant)]


# ------------------------------------------------------------------- cost of the analysis


def _summary(plan):
    facts = {k: (f.kind, f.shape, f.axes, f.count) for k, f in plan.facts.items()}
    return [(b.name, b.kind, b.level, b.why) for b in plan.blocks], facts, plan.output_shapes, plan.notes


@pytest.mark.parametrize("name", list(author_vpts.ALL) + ["scaled:" + n for n in gated_vpts.ALL])
def test_fake_and_real_probes_give_the_same_plan(name, monkeypatch):
    model, x = gated_vpts.build(name[7:]) if name.startswith("scaled:") else author_vpts.build(name)
    plans = []
    for above in (0, float("inf")):
        monkeypatch.setattr(analyse, "FAKE_ABOVE", above)
        plans.append(_summary(hotpatch.prepare(model, example_input=x[:1]).plan))
    assert plans[0] == plans[1]


def test_paper_size_models_are_probed_on_fake_tensors():
    from hotpatch.models import mixste

    assert analyse.worth_faking(mixste.build(), torch.zeros(1, 243, 17, 2))
    assert not analyse.worth_faking(author_vpts.build("mixste")[0], torch.zeros(1, 27, 17, 2))


def test_prepare_runs_no_block_on_real_values(probe_mode):
    if probe_mode == "real":
        pytest.skip("tiny models are probed on real values")
    model, x = author_vpts.build("mixste")
    real_calls = []

    def count(module, args):
        if not any(isinstance(a, FakeTensor) for a in args):
            real_calls.append(module)

    handles = [blk.register_forward_pre_hook(count) for blk in [*model.STEblocks, *model.TTEblocks]]
    try:
        hotpatch.prepare(model, example_input=x[:1], inplace=True)
    finally:
        for h in handles:
            h.remove()
    assert real_calls == []


class NeedsValues(nn.Module):
    """Spatial and temporal blocks; scales its input by a value read with ``.item()``, so
    shapes alone cannot run it."""

    def __init__(self, frames=27, joints=17, dim=16):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, 1, dim) * 0.02)
        self.spatial = nn.ModuleList([author_vpts.Block(dim, 4) for _ in range(2)])
        self.temporal = nn.ModuleList([author_vpts.Block(dim, 4) for _ in range(2)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = x / (x.abs().max().item() + 1.0)
        x = self.embed(x) + self.pos
        for s, t in zip(self.spatial, self.temporal):
            x = rearrange(s(rearrange(x, "b f j c -> (b f) j c")), "(b f) j c -> (b j) f c", f=f)
            x = rearrange(t(x), "(b j) f c -> b f j c", j=j)
        return self.head(x)


def test_a_model_that_reads_values_is_probed_on_real_values(probe_mode):
    torch.manual_seed(0)
    model = NeedsValues().eval()
    x = torch.randn(2, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=27, recover="linear", example_input=x[:1])
    assert _labels(patched.hotpatch_plan) == [(S, 0), (T, 1), (S, 0), (T, 2)]
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))
