"""Pattern (f) of issue 19 and readable refusals: attention only within a frame with frames
mixed by strided / up-sampling convolutions (``UNetPoseNet``, ``UNetConvPoseNet`` in
tests/models/diffusion_style_vpts.py) is refused before any rewrite, in one line that names
block ranges and what mixes frames; raw torch errors are said in words."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import diffusion_style_vpts as vpts
import hotpatch
import hotpatch.patch
import wild_vpts
from hotpatch.engine.refusals import block_ranges, in_words, one_line


@pytest.mark.parametrize("name, kind", [("unet", "spatial"), ("unet_conv", "temporal")])
def test_u_shaped_net_is_refused_before_any_rewrite(name, kind, monkeypatch):
    model, x = vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = copy.deepcopy(model.state_dict())

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the rewrite ran")

    monkeypatch.setattr(hotpatch.patch, "rewrite", no_rewrite)
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    msg = str(err.value)
    assert len(msg) <= 600 and "\n" not in msg
    assert f"encoder.layers.0–3 ({kind}), decoder.layers.0–3 (static)" in msg
    assert "`down` (Conv2d, 27 → 9 frames), `up` (ConvTranspose2d, 9 → 27 frames)" in msg
    assert "encoder.layers.1" not in msg and "leaf_modules=[YourBlockClass]" in msg
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_frame_sized_mixer_refusal_says_the_torch_error_in_words():
    model, x = wild_vpts.build("mixer")
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    msg = str(err.value)
    assert len(msg) <= 600 and "mat1" not in msg
    assert "blocks blocks.0–2 mix frames but accept only F=27 tokens (a linear layer expects 27 input features but got 26)" in msg


@pytest.mark.parametrize("names, text", [
    (["encoder.layers.0", "encoder.layers.1", "encoder.layers.2", "encoder.layers.3"], "encoder.layers.0–3"),
    (["blocks.0", "blocks.2", "blocks.3", "norm"], "blocks.0, blocks.2–3, norm"),
    (["a.0", "b.1", "b.2"], "a.0, b.1–2"),
    (["0", "1"], "0–1"),
])
def test_block_ranges(names, text):
    assert block_ranges(names) == text


def _error(fn) -> Exception:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


def test_torch_errors_in_words():
    cases = [
        (lambda: nn.Linear(3, 4)(torch.randn(2, 5)), "a linear layer expects 3 input features but got 5"),
        (lambda: torch.randn(2, 3) + torch.randn(2, 4), "two tensors combined element-wise disagree on axis 1 (3 against 4)"),
        (lambda: torch.randn(2, 3).view(4, 2), "a reshape to [4, 2] does not fit a tensor of 6 elements"),
        (lambda: nn.Conv1d(4, 4, 1)(torch.randn(1, 3, 5)), "a convolution expects 4 channels but got 3"),
        (lambda: nn.BatchNorm1d(4).eval()(torch.randn(2, 5)), "a batch norm has 4 features but got 5"),
    ]
    for fn, words in cases:
        assert in_words(_error(fn)).startswith(words)
    assert in_words(ValueError("first line\nsecond")) == "first line"


def test_one_line():
    assert one_line("a\n  b   c") == "a b c"
    assert one_line("x" * 700) == "x" * 597 + "..."
