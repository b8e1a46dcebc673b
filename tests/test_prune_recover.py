"""TPC, the other pruners and the recoverers as stand-alone modules."""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn

from hotpatch import TPC, TRA, AttentionPrune, LinearRecover, MotionPrune, NearestRecover, UniformPrune
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


def test_linear_recovery_of_a_ramp_is_exact():
    index = torch.tensor([[0, 4, 9], [2, 3, 7]])
    x = index.float().view(2, 3, 1)  # each kept token holds its own frame number
    out = LinearRecover(10)(x, index)
    assert out.shape == (2, 10, 1)
    torch.testing.assert_close(out[0, :, 0], torch.arange(10.0))
    # outside the kept range the nearest end is repeated
    torch.testing.assert_close(out[1, :, 0], torch.tensor([2.0, 2, 2, 3, 4, 5, 6, 7, 7, 7]))


def test_nearest_recovery_ties_go_to_the_earlier_frame():
    index = torch.tensor([[0, 4, 9]])
    x = torch.tensor([[[0.0], [4.0], [9.0]]])
    out = NearestRecover(10)(x, index)[0, :, 0]
    assert out.tolist() == [0, 0, 0, 4, 4, 4, 4, 9, 9, 9]


def test_tra_equals_torch_multihead_cross_attention():
    torch.manual_seed(3)
    dim, frames, heads = 16, 10, 4
    tra = TRA(dim, frames, heads)
    with torch.no_grad():
        tra.queries.normal_()
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([tra.q.weight, tra.k.weight, tra.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([tra.q.bias, tra.k.bias, tra.v.bias]))
        mha.out_proj.weight.copy_(tra.proj.weight)
        mha.out_proj.bias.copy_(tra.proj.bias)
    x = torch.randn(2, 4, 3, dim)  # (B, f, J, C)
    out = tra(x, torch.arange(4).expand(2, -1))
    assert out.shape == (2, frames, 3, dim)
    for j in range(3):
        q = tra.queries.expand(2, -1, -1)
        ref = q + mha(q, x[:, :, j], x[:, :, j], need_weights=False)[0]
        torch.testing.assert_close(out[:, :, j], ref, atol=1e-5, rtol=1e-5)


def test_tra_parameter_count_matches_the_paper_formula():
    tra = TRA(512, 243, 8)
    assert sum(p.numel() for p in tra.parameters()) == 4 * (512 * 512 + 512) + 243 * 512
    assert torch.count_nonzero(tra.queries) == 0
