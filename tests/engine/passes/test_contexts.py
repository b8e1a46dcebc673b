"""Pattern (e) of issue 19: a per-frame context made once before the cut, independent of the
input's values, and fed to every later block as a second argument (pass "per-frame contexts"),
on ``ContextVPT`` ((1, F, C) context) and ``SpatioTemporalContextVPT`` (expanded to the batch,
MixSTE layouts) in tests/models/diffusion_style_vpts.py."""

from __future__ import annotations

import pytest
import torch

import diffusion_style_vpts as vpts
import hotpatch
import vpt_properties as props
from hotpatch.engine.wrappers import GatherAt, GatherConstant, RecoverAt

MODELS = ["context", "st_context"]
F, N, KEEP = 27, 1, 9
SOURCES = {"context": "diffusion_style_vpts:ContextVPT", "st_context": "diffusion_style_vpts:SpatioTemporalContextVPT"}
LATER = {"context": ["blocks.1", "blocks.2"], "st_context": ["temporal.1", "temporal.2"]}


def _context(name, model, batch):
    if name == "context":
        return model.context(model.frame_code).expand(batch, -1, -1)
    return model.context(model.frame_pos).expand(batch, -1, -1)


@pytest.mark.parametrize("name", MODELS)
def test_later_blocks_get_the_kept_frames_of_the_context(name):
    model, x = vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    got = props.capture(patched, x, inputs={b: (b, 1) for b in LATER[name]})
    with torch.no_grad():
        full = _context(name, model, x.shape[0])
    index = got["index"]
    assert index.shape == (2, KEEP) and not torch.equal(index[0], index[1])
    expected = full[torch.arange(2)[:, None], index]
    for b in LATER[name]:
        assert torch.equal(got[b], expected), b
    gathers = [m for m in patched.modules() if isinstance(m, (GatherAt, GatherConstant))]
    assert len(gathers) == 1  # one gather per context and stage, shared by the later blocks
    assert len([m for m in patched.modules() if isinstance(m, RecoverAt)]) == 1  # nothing recovered from it
    assert sum("(a per-frame context, shape (1, 27, 32))" in n for n in patched.hotpatch_plan.notes) == 1


def test_two_stages_gather_the_context_for_each():
    model, x = vpts.build("st_context")
    patched = hotpatch.apply(model, n=[1, 2], f=[15, 9], example_input=x[:1])
    seen = []
    patched.get_submodule("temporal.2").register_forward_pre_hook(lambda m, a: seen.append(a[1].shape))
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
    assert seen == [(2, 9, 32)]


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
