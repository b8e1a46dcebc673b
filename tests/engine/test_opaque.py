"""Calls torch.fx cannot trace, kept as one opaque call (hotpatch/engine/opaque.py), in VPT code
written the way other authors write it (tests/models/wild_vpts.py): helper functions, submodules
that iterate tensors, transforms over time whose output is not frames."""

from __future__ import annotations

import os

import pytest
import torch

import hotpatch
import wild_vpts
from checks import assert_unchanged, state_of

F, N, KEEP = 27, 1, 9
PACKAGE_DIR = os.path.dirname(hotpatch.__file__)


def test_untraceable_helper_function_is_kept_opaque_and_named():
    model, x = wild_vpts.build("freq")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    # len(x.shape) is the rank since issue 27; range(n) of a size in the helper's own module still is not
    assert "kept wild_dct.dct(...) as one opaque call: torch.fx cannot trace it ('Proxy' object cannot be " \
        "interpreted as an integer)" in notes
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
    state = state_of(model)
    with pytest.raises(hotpatch.NoTemporalBlocksError, match="coefficients, not frames") as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert "wild_dct.dct(...)" in msg and "blocks blocks.0–2 work on it, so they are not temporal for HoT" in msg
    assert msg.count("blocks.0–2") == 1  # the blocks the note explains are not listed again
    assert_unchanged(model, state, x, before)


def test_submodule_that_iterates_a_tensor_becomes_an_opaque_leaf():
    model, x = wild_vpts.build("iter_norm")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert any(n.startswith("kept normalise (RootRelative) as one opaque call") for n in patched.hotpatch_plan.notes)
    assert [n.target for n in patched.graph.nodes if n.op == "call_module" and n.target == "normalise"] == ["normalise"]


def test_untraceable_block_container_is_not_hidden():
    model, x = wild_vpts.build("guarded_encoder")
    with torch.no_grad():
        before = model(x)
    state = state_of(model)
    with pytest.raises(hotpatch.TraceFailure) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert_unchanged(model, state, x, before)
    msg = str(err.value)
    assert "`if torch.isnan(x).any():`" in msg and "wild_vpts.py:" in msg
    assert "GuardedEncoder holds transformer blocks" in msg and "leaf_modules=[GuardedEncoder]" not in msg
    assert PACKAGE_DIR not in msg


def test_star_unpack_shape_loops_and_an_own_helper():
    model, x = wild_vpts.build("star_unpack")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    # the helper's range(len(x[0, 0])) gets the joint count J=17 (issue 27: capture by running), so
    # the helper is traced; only the inputs' sizes are checked (J is fixed from now on)
    assert notes == ["inputs are checked to be (B, 27, 17, 2): Python numbers were decided for them"]
    assert not any(n.op == "call_function" and n.target is wild_vpts._root_centre for n in patched.graph.nodes)
    with torch.no_grad():  # the batch stays free: *lead and the loop over x.shape are not baked in
        assert patched(torch.randn(5, 27, 17, 2)).shape == (5, 27, 17, 3)
