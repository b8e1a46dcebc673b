"""hotpatch.apply on VPTs that use the frame count beyond sizes (tests/models/frame_use_vpts.py):
frame-sized layers (BatchNorm1d(F), Linear(F, F), Conv1d(F, F, 1), (F, F) adjacency) and
top-k over frames, at graph level and inside opaque blocks."""

from __future__ import annotations

import copy

import pytest
import torch

import hotpatch
from checks import block_input_shapes, build_and_patch
import frame_use_vpts

MODELS = list(frame_use_vpts.ALL)
F, N, KEEP = 27, 1, 9


def patch(name: str, **kw):
    return build_and_patch(frame_use_vpts, name, **{"n": N, "f": KEEP, **kw})


@pytest.mark.parametrize("name", MODELS)
def test_shape_finite_and_original_untouched(name):
    model, x = frame_use_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = copy.deepcopy(model.state_dict())
    classes = [type(m) for m in model.modules()]
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
        after = model(x)
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert torch.equal(after, before)
    assert [type(m) for m in model.modules()] == classes
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert set(patched.state_dict()) - set(state) == {k for k in patched.state_dict() if k.startswith("hotpatch")}


def _stage(block: str) -> int:
    """Stage of a StridedFormer block (`stages.i.j`): it sees F / 3**i tokens; 0 elsewhere."""
    return int(block.split(".")[1]) if block.startswith("stages.") else 0


@pytest.mark.parametrize("name", MODELS)
def test_blocks_after_the_cut_see_f_tokens(name):
    """Blocks after the cut see f tokens (f / 3**i in the i-th strided stage), blocks before F."""
    model, x, patched = patch(name)
    plan = patched.hotpatch_plan
    seen = {name: shape[1] for name, shape in block_input_shapes(patched, x).items()}
    names = [b.name for b in plan.blocks]
    after = names[names.index(patched.hotpatch_sites.cut_block):]
    assert len(after) == len(names) - N
    assert all(seen[b] == (KEEP if b in after else F) // 3 ** _stage(b) for b in names), seen


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    model, x, patched = patch(name)
    patched.train()
    patched(x).square().mean().backward()
    grads = {k: p.grad for k, p in patched.named_parameters()}
    missing = [k for k, _ in model.named_parameters() if grads.get(k) is None]
    assert not missing, missing


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_original(name, recover):
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=F, recover=recover, example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_all_frames_kept_reproduces_original_training_step(name):
    """Train mode at f = F: same output and the same running statistics after one step."""
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    ref_model = copy.deepcopy(model).train()
    patched.train()
    torch.testing.assert_close(patched(x), ref_model(x), atol=1e-5, rtol=0)
    for k, v in ref_model.state_dict().items():
        torch.testing.assert_close(patched.state_dict()[k], v, atol=1e-6, rtol=0)


# ------------------------------------------------------------- each gathered op, by hand


# ----------------------------------------------------------------------- strided stages


# ------------------------------------------------------------------- splits of the frames


