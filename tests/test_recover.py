"""TRA and the parameter-free recoverers as stand-alone modules (properties over random inputs:
test_token_properties.py; linear-tra: test_linear_tra.py)."""

from __future__ import annotations

import torch
import torch.nn as nn

from hotpatch import TRA, LinearRecover, NearestRecover


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
