"""Full-size recipes, original and patched by hotpatch, against the HoT paper's Table 1/6."""

from __future__ import annotations

import pytest
import torch

import hotpatch
from hotpatch.profile import profile
from hotpatch.recipes import get

# (recipe, paper params M / FLOPs G of the original, of the default patch)
PAPER = {
    "mixste": ((33.78, 277.25), (35.00, 167.52)),
    "motionbert": ((16.00, 131.09), (16.35, 63.21)),
    "mhformer": ((31.52, 14.15), (31.52, 8.22)),
}


def _measure(model, example):
    result = profile(model, example, counters=("paper",), fps=False, memory=False)
    return result.params / 1e6, result.flops["paper"].value / 1e9


@pytest.mark.parametrize("name", list(PAPER))
def test_full_size_params_and_flops_match_the_paper(name):
    recipe = get(name)
    d = recipe.DEFAULTS
    model = recipe.build().eval()
    example = torch.randn(1, d["frames"], d["joints"], d["channels"])
    patched = hotpatch.apply(
        model, n=d["n"], f=d["f"], pipeline=d["pipeline"], prune=d["prune"],
        recover=d.get("recover") or "tra", prune_pos_embed=d.get("prune_pos_embed", False),
        example_input=example,
    )
    (p0, f0), (p1, f1) = PAPER[name]
    params, flops = _measure(model, example)
    assert params == pytest.approx(p0, rel=0.005)
    assert flops == pytest.approx(f0, rel=0.005)
    params, flops = _measure(patched, example)
    assert params == pytest.approx(p1, rel=0.005)
    assert flops == pytest.approx(f1, rel=0.005)
