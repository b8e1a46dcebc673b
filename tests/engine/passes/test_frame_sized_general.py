"""Pattern 5 of issue 27: frame-sized layers in general, inside blocks that also attend over
frames (tests/models/frame_channel_vpts.py). Grouped ``Conv1d(F, F, 3, groups=3)`` and
``GroupNorm(3, F)`` get gathering twins (hotpatch/engine/frame_layers.py); a frame-sized layer of
any other type that keeps frames apart runs on all F positions and its kept frames are read back
(hotpatch/engine/frame_scatter.py); one that mixes frames, or a block's own frame-sized tensor,
is refused before the rewrite naming it (hotpatch/engine/uses.py). Pass "frame-sized layers"."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import frame_channel_vpts as vpts
import hotpatch
import vpt_properties as props
from checks import build_and_patch
from hotpatch.engine import rewrite as rewrite_module
from hotpatch.engine.frame_layers import FrameConv1d, FrameGroupNorm, KeptFrames, swap
from hotpatch.engine.frame_scatter import ScatterFrames, attach, keeps_frames_apart
from hotpatch.layout import Layout

F, N, KEEP = 27, 1, 9
SOURCES = {name: f"frame_channel_vpts:{cls.__name__}" for name, (cls, _) in vpts.ALL.items()}


def _index(b=2, f=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(F, generator=gen)[:f].sort().values for _ in range(b)])


def _kept(full, index):
    return torch.stack([full[s, index[s]] for s in range(full.shape[0])])


def test_plan_names_each_gathered_layer():
    _, _, patched = build_and_patch(vpts, "grouped", n=N, f=KEEP)
    notes = "\n".join(patched.hotpatch_plan.notes)
    for i in (1, 2):
        assert f"`blocks.{i}.tconv` (Conv1d, frames as features): rows and columns of its block-diagonal weight (3 groups)" in notes
        assert f"`blocks.{i}.gn` (GroupNorm, frames as features): affine (normalised over the kept frames of each of its 3 groups)" in notes
    assert isinstance(patched.get_submodule("blocks.1.tconv"), FrameConv1d)
    assert isinstance(patched.get_submodule("blocks.2.gn"), FrameGroupNorm)
    assert type(patched.get_submodule("blocks.0.gn")) is nn.GroupNorm  # before the cut: untouched


def test_per_frame_layers_without_a_twin_are_run_on_all_frame_positions():
    model, x = vpts.build("per_frame")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = "\n".join(patched.hotpatch_plan.notes)
    for layer in ("blocks.1.act` (PReLU", "blocks.2.gain` (FrameGain"):
        assert f"`{layer}, sized by the frame count) keeps frames apart" in notes
    assert type(patched.get_submodule("blocks.1.act")) is nn.PReLU  # class, name and keys kept: hooks only
    assert not model.blocks[1].act._forward_hooks and not model.blocks[1].act._forward_pre_hooks
    assert set(patched.state_dict()) - set(model.state_dict()) == {k for k in patched.state_dict() if k.startswith("hotpatch")}


def test_grouped_conv_equals_the_original_on_zero_filled_frames():
    """Each kept output frame sums over the kept input frames of its own group."""
    conv = nn.Conv1d(F, F, 3, padding=1, groups=3)
    root = nn.ModuleDict({"conv": copy.deepcopy(conv)})
    twin = swap(root, "conv", Layout((("B",), ("F",), (8,))), F, (True, True))
    index = _index()
    kept = torch.randn(2, index.shape[1], 8)
    full = torch.zeros(2, F, 8)
    for s in range(2):
        full[s, index[s]] = kept[s]
    torch.testing.assert_close(twin(kept, index), _kept(conv(full), index), atol=1e-5, rtol=0)
    assert torch.equal(twin(full), conv(full))  # no index: the original


def test_group_norm_normalises_each_kept_frame_within_its_original_group():
    gn = nn.GroupNorm(3, F)
    gn.weight.data.normal_(1, 0.2)
    gn.bias.data.normal_(0, 0.2)
    root = nn.ModuleDict({"gn": copy.deepcopy(gn)})
    twin = swap(root, "gn", Layout((("B",), ("F",), (8,))), F, (True, True))
    index = _index()
    kept = torch.randn(2, index.shape[1], 8)
    expected = torch.empty_like(kept)
    for s in range(2):
        group = index[s] // (F // 3)
        for g in group.unique():
            rows = group == g
            part = kept[s, rows]
            expected[s, rows] = (part - part.mean()) / torch.sqrt(part.var(unbiased=False) + gn.eps)
        expected[s] = expected[s] * gn.weight[index[s], None] + gn.bias[index[s], None]
    torch.testing.assert_close(twin(kept, index), expected, atol=1e-5, rtol=0)
    every = torch.arange(F).expand(2, -1)
    full = torch.randn(2, F, 8)
    assert torch.equal(twin(full, every), gn(full))  # all frames kept: the original


def test_scattered_layer_equals_the_original_at_the_kept_frames():
    prelu = nn.PReLU(F, init=0.1)
    prelu.weight.data.uniform_(-1, 1)
    full = torch.randn(2, F, 8)
    assert keeps_frames_apart(prelu, full[:1], 1, 1)
    assert not keeps_frames_apart(vpts.FrameMean(F), full[:1], 1, 1)
    holder, index = KeptFrames(), _index()
    root = nn.ModuleDict({"act": prelu})
    layout = Layout((("B",), ("F",), (8,)))
    attach(root, "act", ScatterFrames(layout, layout, F, holder))
    holder(index)
    assert torch.equal(root.act(_kept(full, index)), _kept(prelu(full), index))
    assert not prelu._forward_hooks  # the module given keeps no hook


def test_a_layer_that_mixes_frames_is_refused_before_the_rewrite(monkeypatch):
    model, x = vpts.build("frame_mix")
    for cls in rewrite_module.PASSES:  # no pass may run: the refusal comes before any edit
        monkeypatch.setattr(cls, "run", lambda self, edit: pytest.fail("a pass ran before the refusal"))
    refusal = props.apply_or_refusal(model, n=1, f=KEEP, example_input=x[:1])
    props.assert_refused(refusal, hotpatch.RewriteError, "`blocks.1.mix` (FrameMean)", "`weight` of shape (27,)",
                         "mixes frames", "Choose n >= 2")
    refusal = props.apply_or_refusal(model, n=2, f=KEEP, example_input=x[:1])
    props.assert_refused(refusal, hotpatch.RewriteError, "block `blocks.2` (OwnBiasBlock)", "`frame_bias` of shape (1, 27, 32)",
                         "No n puts the cut after `blocks.2`")


def test_a_layer_sized_by_a_strided_stage_reads_its_first_positions():
    """BatchNorm1d(F/3) over the positions of the F/3 stage: the stage's f/3 tokens use its first
    f/3 channels, as a stage embedding its first rows; f = F is the original."""
    model, x = vpts.build("stage_norm")
    patched = props.apply_or_refusal(model, n=1, f=18, example_input=x[:1], recover="linear")
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert ("`stages.1.0.pos_layer` (BatchNorm1d, sized by the length-9 strided stage) keeps positions apart: "
            "the stage's 6 tokens use its first positions") in notes
    seen = {}
    patched.get_submodule("stages.1.0.pos_layer").register_forward_hook(lambda m, a, o: seen.update(i=a[0], o=o))
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
    bn = model.stages[1][0].pos_layer
    assert seen["i"].shape[1] == 9 and seen["o"].shape[1] == 6  # padded in, cut back out
    torch.testing.assert_close(seen["o"], bn(seen["i"])[:, :6], rtol=0, atol=0)
    full = hotpatch.apply(model, n=1, f=F, example_input=x[:1], recover="linear")
    with torch.no_grad():
        assert torch.equal(full(x), model(x))


def test_a_layer_that_mixes_a_stages_positions_is_refused():
    model, x = vpts.build("stage_mix")
    refusal = props.apply_or_refusal(model, n=1, f=18, example_input=x[:1])
    props.assert_refused(refusal, hotpatch.RewriteError, "`stages.1.0.pos_layer` (Linear)", "`weight` of shape (9, 9)",
                         "sized by the length-9 strided stage", "mixes them", "No n puts the cut after `stages.1.0`")


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
