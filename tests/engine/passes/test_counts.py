"""The sizes-and-literals pass: int frame counts read before the cut and literal F in shape ops
after it follow the stage's f; after the recovery they go back to F (or to recover_frames)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import author_vpts
import hotpatch
from author_vpts import Block
from checks import frames_per_block
from hotpatch.engine.wrappers import rescale_count


class LiteralFormer(nn.Module):
    """Writes the clip length as a literal in a view between its blocks (as code written for one F does)."""

    def __init__(self, frames: int = 27, joints: int = 17, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(2 * joints, dim * joints)
        self.pos = nn.Parameter(torch.randn(1, frames, dim * joints) * 0.02)
        self.blocks = nn.ModuleList([Block(dim * joints, 2) for _ in range(3)])
        self.head = nn.Linear(dim * joints, 3 * joints)

    def forward(self, x):
        b = x.shape[0]
        h = self.embed(x.reshape(b, 27, -1)) + self.pos
        for blk in self.blocks:
            h = blk(h).view(b, 27, 17, -1).reshape(b, 27, -1)
        return self.head(h).view(b, 27, 17, 3)


def _rescales(patched) -> list[tuple]:
    return [n.args[1:] for n in patched.graph.nodes if n.op == "call_function" and n.target is rescale_count]


def test_counts_read_before_the_cut_are_rescaled_to_f():
    model, x = author_vpts.build("mixste")  # b, f, n, c = x.shape, then blk(x, f) and views with f
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    assert _rescales(patched) and set(_rescales(patched)) == {(27, 9)}
    assert patched(x).shape == model(x).shape


def test_counts_follow_each_stage():
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=[1, 2], f=[15, 7], example_input=x[:1], recover="linear")
    assert set(_rescales(patched)) == {(27, 15), (27, 7)}


def test_counts_after_the_recovery_follow_recover_frames():
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="tra", recover_frames=1)
    assert (27, 1) in set(_rescales(patched))
    assert patched(x).shape[1] == 1


def test_literal_frame_counts_become_f_between_blocks():
    torch.manual_seed(0)
    model, x = LiteralFormer().eval(), torch.randn(2, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    assert frames_per_block(patched, x) == {"blocks.0": 27, "blocks.1": 9, "blocks.2": 9}
    views = [n.args for n in patched.graph.nodes if n.op == "call_method" and n.target in ("view", "reshape")]
    assert any(9 in a for a in views) and any(27 in a for a in views)  # pruned views and the head's
    assert patched(x).shape == (2, 27, 17, 3)


@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_literals_with_all_frames_kept_reproduce_the_original(recover):
    torch.manual_seed(0)
    model, x = LiteralFormer().eval(), torch.randn(2, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=27, example_input=x[:1], recover=recover)
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))
