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
    got = {}
    hooks = [patched.get_submodule(b).register_forward_pre_hook(lambda m, a, b=b: got.__setitem__(b, a[1]))
             for b in LATER[name]]
    hooks.append(patched.hotpatch_prune.register_forward_hook(lambda m, a, o: got.__setitem__("index", o[-1])))
    with torch.no_grad():
        patched(x)
        full = _context(name, model, x.shape[0])
    for h in hooks:
        h.remove()
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


@pytest.mark.parametrize("name", MODELS)
def test_patch_keeps_the_original(name):
    props.patch_keeps_original(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", MODELS)
def test_blocks_after_the_cut_see_f_tokens(name):
    props.blocks_see_f(vpts.build, name, N, KEEP, F)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    props.gradients_reach_every_parameter(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(name, recover):
    props.all_frames_reproduce(vpts.build, name, N, F, recover)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    props.save_load_round_trip(vpts.build, name, N, KEEP, SOURCES[name], tmp_path)
