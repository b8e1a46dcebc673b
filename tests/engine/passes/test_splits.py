"""The fit pass on splits of the frame axis: chunk/split/slices/einops windows follow f
(boundary b of F moves to b·f/F), in the graph and inside blocks; an f that splits a frame is refused."""

from __future__ import annotations

import copy
import operator

import pytest
import torch
import torch.nn as nn
from einops import rearrange

import hotpatch
from checks import build_and_patch
import frame_use_vpts
from hotpatch.engine.frame_layers import FrameBatchNorm1d
from hotpatch.engine.passes.splits import Split

F, N, KEEP = 27, 1, 9


def patch(name: str, **kw):
    return build_and_patch(frame_use_vpts, name, **{"n": N, "f": KEEP, **kw})


def test_literal_frame_slices_and_split_sizes_follow_f():
    model, x, patched = patch("segmentformer", f=18)
    index_args = [n.args[1] for n in patched.graph.nodes if n.target is operator.getitem and isinstance(n.args[1], tuple)]
    assert (slice(None, None, None), slice(None, 6, None)) in index_args  # x[:, :9] -> x[:, :6]
    assert (slice(None, None, None), slice(6, None, None)) in index_args  # x[:, 9:] -> x[:, 6:]
    sizes = [n.args[1] for n in patched.graph.nodes if n.target is torch.split]
    assert sizes == [[9, 18], [6, 12], [6, 12]]  # the first runs before the cut (after blocks.0)
    notes = patched.hotpatch_plan.notes
    assert any(n.startswith("frame split `chunk_") and "3 even parts of 18" in n for n in notes)
    assert any("(slice [:9] of the frame axis): boundary 9 -> 6" in n for n in notes)
    with torch.no_grad():
        assert patched(x).shape == model(x).shape


@pytest.mark.parametrize("f", [10, 13, 2])
def test_f_that_splits_a_frame_is_refused_with_valid_values(f):
    model, x = frame_use_vpts.build("segmentformer")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit `getitem_\d+` \(slice .* of the frame axis\).*Valid f near") as err:
        hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    valid = [int(v) for v in str(err.value).split("Valid f near")[1].split(":")[1].split(";")[0].split(",")]
    assert valid and all(v % 3 == 0 for v in valid)
    assert min(abs(v - f) for v in valid) <= 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_split_constraints():
    chunk = Split("c", parts=3)
    assert [f for f in range(1, 28) if chunk.fits(f, 27)] == list(range(3, 28, 3))
    bound = Split("b", bound=81)  # x[:, :81] of 243 frames
    assert [f for f in range(1, 244) if bound.fits(f, 243)][:4] == [3, 6, 9, 12]


def test_splits_inside_opaque_blocks_follow_f():
    model, x, patched = patch("windowformer")
    notes = patched.hotpatch_plan.notes
    assert "frame split inside block `blocks.1`: `rearrange` (einops 'b (w t) c -> (b w) t c'): 3 even parts of 9" in notes
    assert any(n.startswith("frame split inside block `blocks.2`: `getitem_") and "(slice [:9] of the frame axis): boundary 9 -> 3" in n for n in notes)
    assert not any("`blocks.0`" in n for n in notes)  # before the cut
    assert type(patched.blocks[0]) is frame_use_vpts.WindowBlock
    assert type(model.blocks[1]) is frame_use_vpts.WindowBlock  # the user's block is not replaced
    slices = [n.args[1] for n in patched.blocks[1].graph.nodes if n.target is operator.getitem and isinstance(n.args[1], tuple)]
    assert (slice(None, None, None), slice(None, 3, None)) in slices
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()


def test_f_that_splits_a_window_inside_a_block_is_refused():
    model, x = frame_use_vpts.build("windowformer")
    with pytest.raises(hotpatch.ConfigError, match=r"f=10 does not fit inside block `blocks.1`: `rearrange`.*3 parts.*Valid f near 10: 6, 9, 12, 15"):
        hotpatch.apply(model, n=1, f=10, example_input=x[:1])


class _WindowBNBlock(frame_use_vpts.WindowBlock):
    """A literal split and a BatchNorm1d(F) in one block: both passes edit the same block."""

    def __init__(self, dim, heads, num_frame):
        super().__init__(dim, heads, num_frame)
        self.tbn = nn.BatchNorm1d(num_frame)

    def forward(self, x):
        w = rearrange(self.norm0(x), "b (w t) c -> (b w) t c", w=self.windows)
        x = x + rearrange(self.local_attn(w), "(b w) t c -> b (w t) c", w=self.windows)
        x = x + self.tbn(self.attn(self.norm1(x)))
        x = torch.cat([x[:, : self.warmup] * self.gate, x[:, self.warmup :]], dim=1)
        return x + self.mlp(self.norm2(x))


def test_split_and_frame_sized_layer_in_the_same_block():
    model, x = frame_use_vpts.build("windowformer")
    torch.manual_seed(1)
    model.blocks = nn.ModuleList([_WindowBNBlock(32, 4, F) for _ in range(3)])
    frame_use_vpts._as_trained(model)
    model.eval()
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert "inside a block: `blocks.2.tbn` (BatchNorm1d" in notes and "`blocks.2`: `getitem_" in notes
    assert isinstance(patched.blocks[2], torch.fx.GraphModule) and isinstance(patched.blocks[2].tbn, FrameBatchNorm1d)
    assert type(model.blocks[2].tbn) is nn.BatchNorm1d
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()
    full = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(full(x), model(x))
