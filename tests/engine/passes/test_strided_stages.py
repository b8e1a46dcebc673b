"""The strided-stages pass and the fit pass on strided stages: F -> F/3 -> F/9 stages
follow f, their embeddings are sliced, an f that does not fit is refused."""

from __future__ import annotations

import copy

import pytest
import torch

import hotpatch
from checks import block_input_shapes, build_and_patch
import frame_use_vpts
from hotpatch.engine.passes.strided_stages import Reduction, ReducedIndex, valid_frames

F, N, KEEP = 27, 1, 9


def patch(name: str, **kw):
    return build_and_patch(frame_use_vpts, name, **{"n": N, "f": KEEP, **kw})


def test_strided_stages_follow_f_and_slice_their_embeddings():
    model, x, patched = patch("stridedformer", f=18)
    notes = patched.hotpatch_plan.notes
    assert "strided stage `reduce.0` (stride 3, kernel 3: 27 -> 9) after the cut: 18 -> 6 tokens" in notes
    assert "strided stage `reduce.1` (stride 3, kernel 3: 9 -> 3) after the cut: 6 -> 2 tokens" in notes
    assert any(n.startswith("`pos_embeds_1` (1, 9, 32) indexed by positions") and "first 6" in n for n in notes)
    assert any(n.startswith("`pos_embeds_2` (1, 3, 32)") and "first 2" in n for n in notes)
    assert any("recovered to 3" in n for n in notes)
    seen = {name: shape[1] for name, shape in block_input_shapes(patched, x).items()}
    with torch.no_grad():
        out = patched(x)
    assert seen == {"stages.0.0": 27, "stages.0.1": 18, "stages.1.0": 6, "stages.1.1": 6, "stages.2.0": 2}
    assert out.shape == (2, 1, 17, 3) and torch.isfinite(out).all()


def test_stage_embedding_is_sliced_not_gathered():
    """Stage embeddings are narrowed to their first rows, whatever frames were kept."""
    model, x, patched = patch("stridedformer", prune="uniform")
    uses = [n for n in patched.graph.nodes if n.target is torch.narrow]
    assert [(n.args[0].target, n.args[1:]) for n in uses] == [("pos_embeds.1", (1, 0, 3)), ("pos_embeds.2", (1, 0, 1))]


@pytest.mark.parametrize("f", [10, 20, 4])
def test_f_that_does_not_fit_the_strides_is_refused_with_valid_values(f):
    model, x = frame_use_vpts.build("stridedformer")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit the strided stage `reduce.0`.*Valid f near") as err:
        hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    assert "9, 18" in str(err.value) and "pass one of them" in str(err.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_cut_after_a_strided_stage_is_refused():
    model, x = frame_use_vpts.build("stridedformer")
    with pytest.raises(hotpatch.RewriteError, match=r"falls after the strided stage `reduce.0`.*choose n <= 1"):
        hotpatch.apply(model, n=2, f=9, example_input=x[:1])


def test_valid_frames_follow_kernel_stride_and_padding():
    exact = [Reduction("r0", "r0", 27, 9, 3, 3, 0, 1), Reduction("r1", "r1", 9, 3, 3, 3, 0, 1)]
    assert valid_frames(exact, 27) == [9, 18, 27]
    padded = [Reduction("r0", "r0", 27, 14, 3, 2, 1, 1)]  # (27 + 2 - 2 - 1) / 2 + 1 = 14, exact
    assert valid_frames(padded, 27) == list(range(1, 28, 2))


def test_reduced_positions_of_all_frames_are_the_stage_positions():
    assert torch.equal(ReducedIndex(9, 3, 3)(torch.arange(27).expand(2, -1)), torch.arange(3).expand(2, -1))
    kept = torch.tensor([[0, 1, 2, 3, 4, 5, 24, 25, 26]])
    assert torch.equal(ReducedIndex(3, 9, 3)(kept), torch.tensor([[0, 1, 8]]))


def test_functional_strided_stages_follow_f():
    """F.conv1d and F.max_pool1d with stride 3 are strided stages like their modules."""
    model, x, patched = patch("functionalstrided", f=18)
    notes = patched.hotpatch_plan.notes
    assert "strided stage `conv1d` (stride 3, kernel 3: 27 -> 9) after the cut: 18 -> 6 tokens" in notes
    assert "strided stage `max_pool1d` (stride 3, kernel 3: 9 -> 3) after the cut: 6 -> 2 tokens" in notes
    seen = {name: shape[1] for name, shape in block_input_shapes(patched, x).items()}
    with torch.no_grad():
        out = patched(x)
    assert seen == {"stages.0.0": 27, "stages.0.1": 18, "stages.1.0": 6, "stages.1.1": 6, "stages.2.0": 2}
    assert out.shape == (2, 1, 17, 3) and torch.isfinite(out).all()
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit the strided stage `conv1d`.*Valid f near 10: 9, 18, 27"):
        hotpatch.apply(model, n=1, f=10, example_input=x[:1])
