"""Modules the rewrite inserts (hotpatch.engine.wrappers), alone."""

from __future__ import annotations

import pytest
import torch

from hotpatch.engine.wrappers import CenterSelect, GatherAt, GatherConstant, check_frames, rescale_count
from hotpatch.errors import HotpatchError, RewriteError
from hotpatch.layout import Layout


def test_the_input_guard_names_the_frames_and_the_fix():
    x = torch.zeros(2, 27, 17, 2)
    assert check_frames(x, 27) is x
    with pytest.raises(HotpatchError, match=r"F=27 frames .* got an input of shape \(2, 30, 17, 2\).* pad or window"):
        check_frames(torch.zeros(2, 30, 17, 2), 27)


@pytest.mark.parametrize("value, expected", [(27, 9), (4 * 27, 4 * 9), (17 * 2 * 27, 17 * 2 * 9)])
def test_rescale_count_keeps_the_other_factors(value, expected):
    assert rescale_count(value, 27, 9) == expected


def test_gather_at_picks_each_samples_frames_in_a_joint_major_layout():
    lay = Layout((("B", "J"), ("F",), (4,)), joints=3)  # (B·J, F, C) as MixSTE's temporal tokens
    x = torch.arange(2 * 3 * 6 * 4, dtype=torch.float32).reshape(2 * 3, 6, 4)
    index = torch.tensor([[0, 5], [2, 3]])
    out = GatherAt(lay, frames=6)(x, index)
    assert out.shape == (6, 2, 4)
    xb = x.reshape(2, 3, 6, 4)
    for b in range(2):
        assert torch.equal(out.reshape(2, 3, 2, 4)[b], xb[b][:, index[b]])


def test_gather_constant_broadcasts_against_its_partner():
    lay = Layout((("B",), ("F",), (4,)))
    pos = torch.randn(1, 6, 4)
    index = torch.tensor([[1, 4], [0, 2]])
    out = GatherConstant((1, 6, 4), lay, frames=6)(pos, index)
    assert out.shape == (2, 2, 4)
    assert torch.equal(out[1], pos[0, [0, 2]])


def test_gather_constant_refuses_a_constant_with_more_axes():
    with pytest.raises(RewriteError, match="more axes"):
        GatherConstant((1, 1, 6, 4), Layout((("B",), ("F",), (4,))), frames=6)


def test_center_select_finds_the_centre_among_each_samples_kept_frames():
    lay = Layout((("B",), ("F",), (2,)))
    index = torch.tensor([[0, 3, 5], [3, 4, 6]])  # frame 3 is the centre of F=7: position 1, then 0
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    out = CenterSelect(lay, center=3)(x, index)
    assert torch.equal(out, torch.stack([x[0, 1:2], x[1, 0:1]]))
