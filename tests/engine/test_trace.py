"""hotpatch.apply on VPT code written the way other authors write it (tests/models/wild_vpts.py):
every patchable model traces and patches; lifters that are not transformers are refused clearly.
Branches on the input's shape: test_specialise.py; calls fx cannot trace: test_opaque.py."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import wild_vpts
from checks import assert_unchanged, frames_per_block, state_of

F, N, KEEP = 27, 1, 9
PATCHABLE = list(wild_vpts.PATCHABLE)


# ---------------------------------------------------------------- models that should patch


@pytest.mark.parametrize("name", PATCHABLE)
def test_shape_finite_original_untouched_and_quiet(name, capfd):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = state_of(model)
    capfd.readouterr()
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
    assert capfd.readouterr().err == ""  # tracing printed no warnings
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert_unchanged(model, state, x, before)


@pytest.mark.parametrize("name", PATCHABLE)
def test_temporal_blocks_after_the_cut_see_f_frames(name):
    model, x = wild_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    plan = patched.hotpatch_plan
    seen = frames_per_block(patched, x, plan.temporal_blocks)
    assert len(plan.temporal_blocks) == 3
    for b in plan.temporal_blocks:
        assert seen[b.name] == (KEEP if b.level > N else F), b.name


@pytest.mark.parametrize("name", PATCHABLE)
def test_gradients_reach_every_original_parameter(name):
    model, x = wild_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1]).train()
    patched(x).square().mean().backward()
    grads = {k: p.grad for k, p in patched.named_parameters()}
    names = [k for k, _ in model.named_parameters()]
    assert set(names) <= grads.keys()
    assert [k for k in names if grads[k] is None] == []


@pytest.mark.parametrize("name", PATCHABLE)
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_original(name, recover):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        ref = model(x)
        out = hotpatch.apply(model, n=N, f=F, recover=recover, example_input=x[:1])(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------- lifters that are not transformers


@pytest.mark.parametrize("name, found", [
    ("tcn", "Found no transformer blocks; its layers: 6 Conv1d, 5 BatchNorm1d."),
    ("gcn", "Found no transformer blocks; its layers: 8 Linear, 3 LayerNorm."),
    ("mlp", "Found no transformer blocks; its layers: 6 Linear, 4 BatchNorm1d."),
    ("mixer", "blocks blocks.0–2 mix frames but accept only F=27 tokens"),
])
def test_lifters_that_are_not_transformers_are_refused_clearly(name, found, capfd):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = state_of(model)
    capfd.readouterr()
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert found in msg
    assert "cannot be patched" in msg and "leaf_modules=[YourBlockClass]" in msg
    assert capfd.readouterr().err == ""
    assert_unchanged(model, state, x, before)
