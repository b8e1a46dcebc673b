"""hotpatch.apply on VPT code written the way other authors write it (tests/models/wild_vpts.py):
branches on the input's shape, helpers torch.fx cannot trace, submodules that iterate tensors,
lifters that are not transformers, and models that are already patched."""

from __future__ import annotations

import copy
import os

import pytest
import torch

import hotpatch
import wild_vpts
from checks import frames_per_block

F, N, KEEP = 27, 1, 9
PATCHABLE = list(wild_vpts.PATCHABLE)
PACKAGE_DIR = os.path.dirname(hotpatch.__file__)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, state, x, before):
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(model(x), before)


# ---------------------------------------------------------------- models that should patch


@pytest.mark.parametrize("name", PATCHABLE)
def test_shape_finite_original_untouched_and_quiet(name, capfd):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = _state(model)
    capfd.readouterr()
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
    assert capfd.readouterr().err == ""  # tracing printed no warnings
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    _assert_unchanged(model, state, x, before)


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


# ---------------------------------------------------------- a. branches on the input's shape


def test_shape_branches_are_decided_for_the_example_and_noted():
    model, x = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = [n for n in patched.hotpatch_plan.notes if n.startswith("branch ")]
    assert len(notes) == 5  # each branch once (not again for the train-mode trace)
    by_line = {line: next(n for n in notes if line in n) for line in
               ("`if len(x.shape) == 3:", "`if x.dim() == 5:", "`if c == 3:", "`if x.shape[-1] != 2:", "`if f != self.num_frame:")}
    assert by_line["`if c == 3:"].endswith("taken: fixed for inputs of shape (B, 27, 17, 3)")
    assert " not taken: " in by_line["`if len(x.shape) == 3:"]
    assert "decided for F=27" in by_line["`if f != self.num_frame:"]
    # the taken branch drops the confidence: the patched model ignores channel 2, as the original
    y = x.clone()
    y[..., 2] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(patched(y), patched(x), atol=0, rtol=0)


def test_shape_branches_without_example_input():
    model, _ = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP)  # the input shape is inferred, then traced for it
    assert patched.hotpatch_config["input_shape"] == [27, 17, 2]
    assert any("`if c == 3:" in n and " not taken" in n for n in patched.hotpatch_plan.notes)
    assert patched(torch.randn(2, 27, 17, 2)).shape == (2, 27, 17, 3)


@pytest.mark.parametrize("name, match, line", [
    ("batch_branch", "depends on the batch size", "`if b == 1:"),
    ("inner_frame_branch", "frame count of tokens that a transformer block has computed",
     "`if x.shape[1] == self.pos_embed.shape[1]:`"),
])
def test_branches_that_cannot_be_decided_once_are_refused(name, match, line):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = _state(model)
    with pytest.raises(hotpatch.TraceFailure, match=match) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert line in msg and "wild_vpts.py:" in msg and "Fix:" in msg
    assert PACKAGE_DIR not in msg
    _assert_unchanged(model, state, x, before)


# ---------------------------------------------------------- b. calls fx cannot trace


def test_untraceable_helper_function_is_kept_opaque_and_named():
    model, x = wild_vpts.build("freq")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert "kept wild_dct.dct(...) as one opaque call: torch.fx cannot trace it ('len' is not supported in " \
        "symbolic tracing by default)" in notes
    calls = [n for n in patched.graph.nodes if n.op == "call_function" and n.target is wild_vpts.wild_dct.dct]
    assert len(calls) == 1


def test_blocks_after_a_transform_over_time_are_not_temporal():
    model, x = wild_vpts.build("freq")
    patched = hotpatch.apply(model, n=2, f=KEEP, example_input=x[:1])
    kinds = {b.name: b.kind for b in patched.hotpatch_plan.blocks}
    assert kinds == {"time_blocks.0": "temporal", "time_blocks.1": "temporal", "time_blocks.2": "temporal",
                     "freq_blocks.0": "static", "freq_blocks.1": "static"}
    assert any(n.startswith("wild_dct.dct(...) mixes all frames") and "blocks freq_blocks.0–1 work on it" in n
               for n in patched.hotpatch_plan.notes)
    # recovery comes before the DCT: it transforms all F frames, and the frequency blocks see F tokens
    seen = []
    patched.freq_blocks[0].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    patched.time_blocks[2].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    with torch.no_grad():
        patched(x)
    assert seen == [KEEP, F]


def test_every_block_on_coefficients_is_refused():
    model, x = wild_vpts.build("freq_only")
    with torch.no_grad():
        before = model(x)
    state = _state(model)
    with pytest.raises(hotpatch.NoTemporalBlocksError, match="coefficients, not frames") as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert "wild_dct.dct(...)" in str(err.value) and "blocks.0–2 (static)" in str(err.value)
    _assert_unchanged(model, state, x, before)


def test_submodule_that_iterates_a_tensor_becomes_an_opaque_leaf():
    model, x = wild_vpts.build("iter_norm")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert any(n.startswith("kept normalise (RootRelative) as one opaque call") for n in patched.hotpatch_plan.notes)
    assert [n.target for n in patched.graph.nodes if n.op == "call_module" and n.target == "normalise"] == ["normalise"]


def test_untraceable_block_container_is_not_hidden():
    model, x = wild_vpts.build("guarded_encoder")
    with torch.no_grad():
        before = model(x)
    state = _state(model)
    with pytest.raises(hotpatch.TraceFailure) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    _assert_unchanged(model, state, x, before)
    msg = str(err.value)
    assert "`if torch.isnan(x).any():`" in msg and "wild_vpts.py:" in msg
    assert "GuardedEncoder holds transformer blocks" in msg and "leaf_modules=[GuardedEncoder]" not in msg
    assert PACKAGE_DIR not in msg


# ---------------------------------------------------------- f. lifters that are not transformers


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
    state = _state(model)
    capfd.readouterr()
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert found in msg
    assert "cannot be patched" in msg and "leaf_modules=[YourBlockClass]" in msg
    assert capfd.readouterr().err == ""
    _assert_unchanged(model, state, x, before)


# ---------------------------------------------------------- g. an already patched model


@pytest.mark.parametrize("entry", ["apply", "prepare", "wrapped"])
def test_patching_a_patched_model_says_how_to_repatch(entry):
    model, x = wild_vpts.build("iter_norm")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    state = _state(patched)
    with pytest.raises(hotpatch.AlreadyPatchedError) as err:
        if entry == "prepare":
            hotpatch.prepare(patched)
        elif entry == "wrapped":
            hotpatch.apply(torch.nn.Sequential(patched), n=1, f=3, example_input=x[:1])
        else:
            hotpatch.apply(patched, n=2, f=3, example_input=x[:1])
    msg = str(err.value)
    assert f"already patched by hotpatch (n={N}, f={KEEP})" in msg
    assert "original" in msg and "hotpatch.prepare(original)" in msg
    assert PACKAGE_DIR not in msg
    assert all(torch.equal(patched.state_dict()[k], v) for k, v in state.items())
    assert isinstance(err.value, hotpatch.HotpatchError)


def test_repatching_the_original_after_a_refusal_works():
    model, x = wild_vpts.build("iter_norm")
    first = hotpatch.apply(model, n=1, f=KEEP, example_input=x[:1])
    with pytest.raises(hotpatch.AlreadyPatchedError):
        hotpatch.apply(first, n=2, f=3, example_input=x[:1])
    second = hotpatch.prepare(copy.deepcopy(model), example_input=x[:1]).patch(2, 3)
    assert second.hotpatch_config["n"] == 2 and second(x).shape == x.shape[:3] + (3,)


def test_star_unpack_shape_loops_and_an_own_helper():
    model, x = wild_vpts.build("star_unpack")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert notes == ["kept wild_vpts._root_centre(...) as one opaque call: torch.fx cannot trace it "
                     "('Proxy' object cannot be interpreted as an integer)"]
    with torch.no_grad():  # the batch stays free: *lead and the loop over x.shape are not baked in
        assert patched(torch.randn(5, 27, 17, 2)).shape == (5, 27, 17, 3)


def test_branches_after_the_blocks():
    model, x = wild_vpts.build("head_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert notes[0].startswith("kept head (PoseHead) as one opaque call: torch.fx cannot trace its forward "
                               "(the branch at ")
    assert "`if x.shape[1] == 1:  # a single (centre) frame` depends on the frame count" in notes[0]
    assert notes[2] == "inputs are checked to be (B, 27, 17, 2): the branches were decided for them"
    assert len(notes) == 3 and "`if x.dim() == 3 and x.shape[-1] == self.pos_embed.shape[-1]:` in HeadBranchVPT.forward taken: fixed" in notes[1]
    seen = []
    patched.head.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    with torch.no_grad():
        patched(x)
    assert seen == [F]  # the head runs after recovery, on all F frames


def test_a_patch_with_decided_branches_checks_the_input_shape():
    model, x = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])  # decided for C=3
    with torch.no_grad():
        assert model(x[..., :2]).shape == (2, 27, 17, 3)  # the original takes C=2 too, by another branch
        with pytest.raises(hotpatch.InputShapeError, match=r"decided those branches for inputs of shape \(B, 27, 17, 3\)"):
            patched(x[..., :2])
        with pytest.raises(hotpatch.HotpatchError, match=r"got an input of shape \(27, 17, 3\)"):
            patched(x[0])  # (F, J, C): the rank-3 branch was not kept (the frame guard sees it first)
