"""Which axes a block's attention mixes (hotpatch/engine/mixing.py): a block is temporal where
one of its attentions (or another op that mixes positions) mixes tokens along the frame axis,
found from the structure of its computation, not from how large its effect is."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from einops import rearrange

import hotpatch
import author_vpts
import gated_vpts

S, T = "spatial", "temporal"


def test_the_attention_that_mixes_frames_is_named():
    plan = _prepared("motionbert").plan
    # stage_st runs its spatial attention first: the temporal one (attn_t) is the reason
    assert all("attn_t" in b.why and "frames" in b.why for b in plan.blocks)
    plan = _prepared("mixste").plan
    spatial = [b for b in plan.blocks if b.kind == S]
    assert spatial and all("not frames" in b.why for b in spatial)
    assert "attends over frames" in str(plan)


def _prepared(name):
    model, x = author_vpts.build(name)
    return hotpatch.prepare(model, example_input=x[:1])


# ------------------------------------------------------------ residual branches scaled to ~0


@pytest.mark.parametrize("name", list(gated_vpts.ALL))
def test_scaled_branches_are_found_and_f_equal_F_reproduces_the_original(name, probe_mode):
    model, x = gated_vpts.build(name)
    with torch.no_grad():
        ref = model(x)
    patched = hotpatch.apply(model, n=1, f=x.shape[1], recover="linear", example_input=x[:1])
    assert [b.kind for b in patched.hotpatch_plan.blocks] == gated_vpts.KINDS[name]
    with torch.no_grad():
        out = patched(x)
    # every frame kept, in order, and linear recovery at integer positions: nothing is
    # recomputed differently, so the output is bit-identical
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name", list(gated_vpts.ALL))
def test_scaled_branches_are_patched_with_fewer_frames(name):
    model, x = gated_vpts.build(name)
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()
    assert patched.hotpatch_sites.cut_block is not None


def test_which_of_two_attentions_mixes_frames_is_recorded():
    plan = hotpatch.prepare(gated_vpts.build("layer_scale")[0], example_input=torch.randn(1, 27, 17, 2)).plan
    assert all("attn_t" in b.why for b in plan.blocks)  # attn_s runs first and is not the reason
    plan = hotpatch.prepare(gated_vpts.build("rezero")[0], example_input=torch.randn(1, 27, 17, 2)).plan
    assert all(b.why.endswith("in temporal attends over frames") for b in plan.blocks)


# ------------------------------------------------------------------------- other designs


class CrossHalves(nn.Module):
    """Cross-attention between the two halves of the frame axis (batch-first MHA)."""

    def __init__(self, dim):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):  # (B, F, C)
        half = x.shape[1] // 2
        past, future = x[:, :half], x[:, half:]
        h = self.norm(future)
        future = future + self.attn(h, self.norm(past), self.norm(past), need_weights=False)[0]
        x = torch.cat([past, future], dim=1)
        return x + self.fc2(self.fc1(x))


class TemporalConvBlock(nn.Module):
    """Spatial attention over joints plus a depthwise temporal convolution: frames are mixed,
    but not by an attention."""

    def __init__(self, dim, frames):
        super().__init__()
        self.attn = author_vpts.Attention(dim, 4)
        self.tconv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.frames = frames

    def forward(self, x):  # (B·F, J, C)
        x = x + self.attn(x)
        t = rearrange(x, "(b f) j c -> (b j) c f", f=self.frames)
        t = self.tconv(t)
        x = x + rearrange(t, "(b j) c f -> (b f) j c", j=x.shape[1])
        return x + self.fc2(self.fc1(x))


class FourierBlock(nn.Module):
    """Mixes tokens with an FFT (no attention, no rule for the op): decided by perturbation."""

    def __init__(self, dim, axis):
        super().__init__()
        self.axis = axis
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):  # (B, F, J, C); mixes along self.axis
        n = x.shape[self.axis]
        x = x + torch.fft.irfft(torch.fft.rfft(self.fc1(x), dim=self.axis), n=n, dim=self.axis)
        return x + self.fc4(self.fc3(self.fc2(x)))


class Stack(nn.Module):
    def __init__(self, blocks, layout):
        super().__init__()
        self.embed = nn.Linear(2, 16)
        self.blocks = nn.ModuleList(blocks)
        self.layout = layout
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x)
        if self.layout == "b f c":
            x = rearrange(x, "b f j c -> (b j) f c")
        elif self.layout == "(b f) j c":
            x = rearrange(x, "b f j c -> (b f) j c")
        for blk in self.blocks:
            x = blk(x)
        if self.layout == "b f c":
            x = rearrange(x, "(b j) f c -> b f j c", j=j)
        elif self.layout == "(b f) j c":
            x = rearrange(x, "(b f) j c -> b f j c", f=f)
        return self.head(x)


def _plan(model):
    torch.manual_seed(0)
    return hotpatch.prepare(model.eval(), example_input=torch.randn(1, 12, 17, 2)).plan


def test_cross_attention_between_parts_of_the_frame_axis_is_temporal():
    plan = _plan(Stack([CrossHalves(16) for _ in range(2)], "b f c"))
    assert [b.kind for b in plan.blocks] == [T, T]
    assert all("multi_head_attention" in b.why or "scaled_dot_product" in b.why or "softmax" in b.why for b in plan.blocks)


def test_a_temporal_convolution_mixes_frames_without_attention():
    plan = _plan(Stack([TemporalConvBlock(16, 12) for _ in range(2)], "(b f) j c"))
    assert [b.kind for b in plan.blocks] == [T, T]
    assert all("convolution in tconv mixes frames" in b.why for b in plan.blocks)


def test_blocks_without_followable_attention_fall_back_to_perturbation():
    plan = _plan(Stack([FourierBlock(16, axis=2), FourierBlock(16, axis=1), FourierBlock(16, axis=2)], "b f j c"))
    assert [b.kind for b in plan.blocks] == [S, T, S]
    notes = [n for n in plan.notes if "by perturbation" in n]
    assert len(notes) == 3 and notes[1].startswith("blocks.1: temporal by perturbation")


def test_a_weight_that_sums_the_frames_on_the_right_of_a_matmul_mixes_them():
    """``E @ k`` with an (r, F) parameter E: the frames are x's rows, on the right of the matmul. The
    contraction is recorded as mixing frames through a constant; the softmax runs over the r mixes."""
    from hotpatch.engine.mixing import plain, trace_mixing
    from projection_vpts import SummaryAttention

    block = SummaryAttention(16, 12, rank=4, heads=2)
    mix, _ = trace_mixing(block, (torch.randn(1, 12, 16),), {}, lambda i, t: plain(t.shape, axis_labels={1: "F"}))
    summed = [m for m in mix.others if m.module == "" and m.origins == {"F"}]
    assert len(summed) == 2 and all(m.constant for m in summed)  # keys and values
    assert [m.origins for m in mix.attentions] == [frozenset()]
    assert not any(m.constant for m in mix.others if m.module == "" and m.origins != {"F"})
