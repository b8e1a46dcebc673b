"""Pattern 4 of issue 27: the frame axis followed through strided slices
(tests/models/subsample_vpts.py). A model that subsamples its own clip (``x[:, ::3]``,
``x[:, 2::4]``) before the embedding: its tokens are the frames HoT prunes (analysis:
hotpatch/engine/subsample.py); a strided slice after blocks that saw the whole clip is a strided
stage (hotpatch/engine/reductions.py, pass "strided stages")."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import subsample_vpts as vpts
import vpt_properties as props
from checks import block_input_shapes
from hotpatch.engine.reductions import Reduction

CLIP = 27
TOKENS = {"subsample": 9, "offset_subsample": 7}  # len(range(0, 27, 3)), len(range(2, 27, 4))
N, KEEP = 1, 4
SOURCES = {"subsample": "subsample_vpts:SubsampleVPT", "offset_subsample": "subsample_vpts:OffsetSubsampleVPT"}


def test_the_tokens_are_the_frames_hot_prunes():
    model, x = vpts.build("subsample")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    plan = patched.hotpatch_plan
    assert (plan.frames, plan.clip_frames) == (9, CLIP)
    assert [b.kind for b in plan.blocks] == ["temporal"] * 3
    assert any("keeps one in 3 of the 27 input frames, from frame 0: its 9 tokens are the frames HoT prunes" in n
               for n in plan.notes)
    assert str(plan).startswith("input (B, F, ...) = (1, 27, 17, 2), 27 frames read as F = 9 tokens")
    index = props.capture(patched, x)["index"]
    assert index.shape == (2, KEEP) and int(index.max()) < 9  # f of the 9 tokens


def test_the_patched_model_still_takes_the_whole_clip():
    model, x = vpts.build("offset_subsample")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with pytest.raises(hotpatch.HotpatchError, match="patched for clips of F=27 frames"):
        patched(x[:, 2::4])


def test_f_beyond_the_tokens_is_refused_in_their_terms():
    model, x = vpts.build("offset_subsample")
    with pytest.raises(hotpatch.ConfigError, match=r"f=9 exceeds the F=7 tokens the model reads from its 27-frame clip"):
        hotpatch.apply(model, n=N, f=9, example_input=x[:1])


@pytest.mark.parametrize("name", list(TOKENS))
def test_patch_keeps_the_original(name):
    props.patch_keeps_original(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", list(TOKENS))
def test_blocks_after_the_cut_see_f_tokens(name):
    props.blocks_see_f(vpts.build, name, N, KEEP, TOKENS[name])


@pytest.mark.parametrize("name", list(TOKENS))
def test_gradients_reach_every_original_parameter(name):
    props.gradients_reach_every_parameter(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", list(TOKENS))
@pytest.mark.parametrize("prune, recover", [("tpc", "nearest"), ("tpc", "linear"), ("merge", "unmerge")])
def test_all_tokens_kept_reproduces_the_original(name, prune, recover):
    props.all_frames_reproduce(vpts.build, name, N, TOKENS[name], recover, prune)


@pytest.mark.parametrize("name", list(TOKENS))
def test_token_merging_is_per_sample(name):
    props.merge_is_per_sample(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", list(TOKENS))
def test_save_load_round_trip(name, tmp_path):
    props.save_load_round_trip(vpts.build, name, N, KEEP, SOURCES[name], tmp_path)


# ------------------------------------------------------------ a strided slice after the first blocks


def test_a_slice_after_blocks_is_a_strided_stage_that_follows_f():
    model, x = vpts.build("mid_slice")
    patched = hotpatch.apply(model, n=1, f=12, example_input=x[:1], recover="linear")
    plan = patched.hotpatch_plan
    assert [b.kind for b in plan.blocks] == ["temporal"] * 4 and plan.clip_frames is None
    assert [(r.kernel, r.stride, r.offset, r.length_in, r.length_out) for r in plan.reductions] == [(1, 3, 1, 27, 9)]
    notes = "\n".join(plan.notes)
    assert "(one position in 3 from 1: 27 -> 9) after the cut: 12 -> 4 tokens" in notes
    assert "`stage_embed` (1, 9, 32) indexed by positions of the length-9 stage: sliced to its first 4" in notes
    seen = {name: shape[1] for name, shape in block_input_shapes(patched, x).items()}
    assert seen == {"full.0": 27, "full.1": 12, "thin.0": 4, "thin.1": 4}
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape == (2, 9, 17, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_a_slice_stage_with_every_frame_kept_reproduces_the_original(recover):
    model, x = vpts.build("mid_slice")
    patched = hotpatch.apply(model, n=1, f=CLIP, example_input=x[:1], recover=recover)
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


def test_any_f_that_leaves_the_slice_a_token_fits():
    """A slice sums over no window: unlike a strided convolution, no f drops a frame it would keep."""
    stage = Reduction("getitem", "getitem", 27, 9, 1, 3, 0, 1, offset=1)
    assert [n for n in range(1, 28) if stage.fits(n)] == list(range(2, 28))
    assert stage.out_length(12) == 4 and stage.out_length(2) == 1
    model, x = vpts.build("mid_slice")
    with pytest.raises(hotpatch.ConfigError, match=r"f=1 does not fit the strided stage .*Valid f near 1: 2, 3, 4, 5"):
        hotpatch.apply(model, n=1, f=1, example_input=x[:1])
