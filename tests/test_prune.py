"""TPC and the other pruners as stand-alone modules (properties over random inputs: test_token_properties.py)."""

from __future__ import annotations

import pytest
import torch

from hotpatch import TPC, AttentionPrune, MotionPrune, UniformPrune
from hotpatch.prune import dpc_knn_scores


def test_tpc_picks_known_centres_by_hand():
    # 1-D tokens in two groups and an outlier; values are exact in binary.
    # k=2: densities of 0,1 tie (earlier is denser), 2,3,4 tie; deltas 9, .125, .25, 4.625, .25, 3.75
    x = torch.tensor([0.0, 0.125, 0.375, 5.0, 5.25, 9.0]).view(1, 6, 1)
    score, density, delta = dpc_knn_scores(x, k=2)
    torch.testing.assert_close(delta[0], torch.tensor([9.0, 0.125, 0.25, 4.625, 0.25, 3.75], dtype=delta.dtype))
    assert density[0, 0] == density[0, 1] and density[0, 2] == density[0, 3] == density[0, 4]
    assert TPC(2).select(x).tolist() == [[0, 3]]
    assert TPC(3).select(x).tolist() == [[0, 2, 3]]  # 2 and 4 tie on score: the earlier frame wins


def test_tpc_selects_one_centre_per_cluster():
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 5
    offsets = torch.tensor([3.0, 1.0, 0.0, -1.0, -3.0]).view(5, 1) * 0.05
    direction = torch.randn(16)
    # clusters laid out in time, each five frames around its centre token (the middle one)
    tokens = torch.cat([c + offsets * direction for c in centres]).unsqueeze(0)
    index = TPC(4, k=5).select(tokens)
    assert index.tolist() == [[2, 7, 12, 17]]


def test_tpc_is_deterministic_sorted_and_per_sample():
    torch.manual_seed(1)
    x = torch.randn(5, 40, 17, 8)
    kept, index = TPC(12)(x)
    assert kept.shape == (5, 12, 17, 8) and index.shape == (5, 12)
    assert torch.equal(index, TPC(12)(x)[1])
    assert (index[:, 1:] > index[:, :-1]).all()
    for i in range(5):
        alone = TPC(12).select(x[i : i + 1].mean(dim=2))
        assert torch.equal(alone[0], index[i])
    assert torch.equal(kept[2], x[2, index[2]])


def test_tpc_keeping_every_frame_is_the_identity():
    x = torch.randn(3, 10, 4)
    kept, index = TPC(10)(x)
    assert torch.equal(index, torch.arange(10).expand(3, -1))
    assert torch.equal(kept, x)


@pytest.mark.parametrize("cls", [TPC, UniformPrune, AttentionPrune, MotionPrune])
def test_centre_frame_is_always_kept(cls):
    torch.manual_seed(2)
    x = torch.randn(4, 27, 6)
    x[:, 13] = x[:, 12]  # the centre is a duplicate: unlikely to be picked on merit
    index = cls(5, center=13).select(x)
    assert index.shape == (4, 5)
    assert (index == 13).any(dim=1).all()
    assert (index[:, 1:] > index[:, :-1]).all()


def test_uniform_is_evenly_spaced():
    assert UniformPrune(3).select(torch.randn(2, 9, 4)).tolist() == [[0, 4, 8], [0, 4, 8]]


def test_motion_prune_prefers_big_changes():
    x = torch.zeros(1, 8, 2)
    x[0, 5:] = 10.0  # a jump at frame 5
    assert 5 in MotionPrune(1).select(x).tolist()[0]


def test_tpc_optional_positional_embedding():
    tpc = TPC(3, pos_embed_dim=8)
    assert tpc.pos_embed.shape == (1, 3, 8) and torch.count_nonzero(tpc.pos_embed) == 0
    with torch.no_grad():
        tpc.pos_embed.fill_(1.0)
    x = torch.randn(2, 9, 4, 8)
    kept, index = tpc(x)
    plain = torch.stack([x[b, index[b]] for b in range(2)])
    torch.testing.assert_close(kept, plain + 1.0)
