"""Pattern (d) of issue 19: a frame embedding sliced to the current length after the cut,
``x + self.pos_embedding[:, :x.shape[1]]`` (pass "sliced frame-indexed parameters"), on
``SlicedPosVPT`` (tests/models/diffusion_style_vpts.py)."""

from __future__ import annotations

import operator

import torch

import diffusion_style_vpts as vpts
import hotpatch
import vpt_properties as props

NAME, F, N, KEEP = "sliced_pos", 27, 1, 9


def test_kept_frames_get_their_own_rows():
    """The decoder sees the pruned tokens plus the embedding rows of the frames they came from."""
    model, x = vpts.build(NAME)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    got = props.capture(patched, x, outputs={"enc": "encoder.1"}, inputs={"dec": ("decoder.0", 0)})
    index = got["index"]
    assert index.shape == (2, KEEP) and not torch.equal(index[0], torch.arange(KEEP))
    assert torch.equal(got["dec"], got["enc"] + model.pos_embedding[0, index])


def test_the_slice_is_frozen_at_F_rows_and_noted():
    model, x = vpts.build(NAME)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    sliced = [n for n in patched.graph.nodes if n.target is operator.getitem and getattr(n.args[0], "target", None) == "pos_embedding"]
    assert len(sliced) == 1 and sliced[0].args[1][1] == slice(None, F, None)
    assert [u.target for u in sliced[0].users] == ["hotpatch_gather"]
    assert any("`pos_embedding` sliced to the current length" in note for note in patched.hotpatch_plan.notes)


def test_two_stages_gather_with_the_second_index():
    model, x = vpts.build(NAME)
    patched = hotpatch.apply(model, n=[1, 2], f=[15, 9], example_input=x[:1])
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
    full = hotpatch.apply(model, n=[1, 2], f=[F, F], recover="nearest", example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(full(x), model(x))


globals().update(props.property_tests(vpts.build, {"sliced_pos": "diffusion_style_vpts:SlicedPosVPT"}, N, KEEP, F))
