"""The cut pass: later stages select among the tokens the previous stage kept and
compose indices; seq2frame keeps the centre frame in every stage."""

from __future__ import annotations

import pytest
import torch

import hotpatch
from checks import build_and_patch, stage_indices
import author_vpts
import folded_vpts
from checks import frames_per_block
from hotpatch.engine.folded import token_split
from hotpatch.errors import RewriteError
from hotpatch.prune import TPC, UniformPrune, top_frames
from hotpatch.layout import Layout
from hotpatch.engine.wrappers import PruneAgain

F, CUTS, KEEPS = 27, [1, 2], [15, 7]


def patch(name: str, **kw):
    return build_and_patch(author_vpts, name, **{"n": CUTS, "f": KEEPS, **kw})


@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_later_stages_select_among_kept_frames(prune):
    _, x, patched = patch("mixste", prune=prune, n=[1, 2, 3], f=[20, 11, 5])
    first, second, third = stage_indices(patched, x)
    assert [t.shape[1] for t in (first, second, third)] == [20, 11, 5]
    for before, after in ((first, second), (second, third)):
        for b in range(x.shape[0]):
            assert set(after[b].tolist()) <= set(before[b].tolist())
            assert after[b].tolist() == sorted(after[b].tolist())
    seen = frames_per_block(patched, x)
    assert sorted(set(seen.values()), reverse=True) == [F, 20, 11, 5]


@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_seq2frame_keeps_the_centre_frame_in_every_stage(prune):
    model, x, patched = patch("mixste", prune=prune, pipeline="seq2frame", n=[1, 2], f=[10, 3])
    for index in stage_indices(patched, x):
        assert (index == F // 2).any(dim=1).all()
    with torch.no_grad():
        assert patched(x).shape == (x.shape[0], 1, 17, 3)


def test_prune_again_composes_indices():
    x = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)
    x[:, 2] = 100.0  # an outlier frame: TPC's densest cluster centres lie elsewhere
    before = torch.tensor([[0, 4, 9, 13, 20], [1, 2, 3, 5, 8]])
    stage = PruneAgain(UniformPrune(3), [Layout((("B",), ("F",), (3,)))])
    kept, index = stage(x, before)
    assert index.tolist() == [[0, 9, 20], [1, 3, 8]]  # positions 0, 2, 4 of each sample's frames
    assert torch.equal(kept, x[:, [0, 2, 4]])
    centred = PruneAgain(UniformPrune(2), [Layout((("B",), ("F",), (3,)))], center=13)
    _, index = centred(x[:1], before[:1])
    assert 13 in index[0].tolist()


def test_centre_can_differ_per_sample():
    score = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert top_frames(score, 2, torch.tensor([4, 2])).tolist() == [[0, 4], [0, 2]]
    index = UniformPrune(3).select(torch.randn(2, 9, 4), torch.tensor([3, 5]))
    assert index.tolist() == [[0, 3, 8], [0, 5, 8]]
    assert TPC(2).select(torch.randn(2, 6, 4), torch.tensor([1, 4]))[:, :].eq(torch.tensor([[1], [4]])).any(1).all()


def test_strided_stage_between_cuts_is_refused():
    import frame_use_vpts

    model, x = frame_use_vpts.build("stridedformer")
    with pytest.raises(RewriteError, match="between two pruning cuts"):
        hotpatch.apply(model, n=[1, 2], f=[18, 9], example_input=x[:1])


# ------------------------------------------------ frames folded into one token axis (issue 27 item 2)


@pytest.mark.parametrize("name, tokens, parts", [
    ("class_token", "(1, 460, 32)", "460 = 1 + 27 × 17: 1 extra token and 17 tokens per frame"),
    ("no_extra_token", "(1, 459, 32)", "459 = 27 × 17: 17 tokens per frame"),
])
def test_frames_folded_into_one_token_axis_are_refused_before_the_rewrite(name, tokens, parts):
    """TimeSformer's layout: between blocks (B, c + F·J, C), the frame axis made only inside them."""
    model, x = folded_vpts.build(name)
    with pytest.raises(RewriteError) as info:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    msg = str(info.value)
    assert type(info.value) is RewriteError  # raised by the cut's inspect: not a PatchCheckError
    assert msg.startswith("no tensor alive before `blocks.1` (the cut) has an axis of the 27 frames alone: ")
    assert f"`blocks_0` {tokens} folds the frames into one token axis with other tokens ({parts}, merged by `rearrange`)" in msg
    assert "Fix: give the frames an axis of their own between the blocks, e.g. (B, F, N, C)" in msg
    assert len(msg) <= 600


def test_frames_on_an_axis_of_their_own_between_blocks_patch():
    """The refusal's fix: the same blocks over (B, F, J, C) tokens."""
    model, x, patched = build_and_patch(folded_vpts, "frames_own_axis", n=1, f=9)
    assert frames_per_block(patched, x) == {"blocks.0": F, "blocks.1": 9}
    with torch.no_grad():
        assert patched(x).shape == model(x).shape


@pytest.mark.parametrize("size, split", [
    (460, (1, 17)), (459, (0, 17)), (28, (1, 1)), (27 * 4 + 8, (8, 4)),
    (27, None), (27 * 4 + 9, None), (20, None),  # the frame axis itself; too many extra tokens; fewer than F
])
def test_token_split_reads_extra_tokens_and_tokens_per_frame(size, split):
    assert token_split(size, F) == split
