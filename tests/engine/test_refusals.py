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
import projection_vpts
import wild_vpts
from hotpatch.engine import rewrite as rewrite_module
from hotpatch.engine.refusals import LIMIT, Listing, block_ranges, cap, capped, in_words, one_line, refusal, shortened


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


class TwoListMixer(nn.Module):
    """The token-mixing MLP of wild_vpts with its blocks in two separately named lists."""

    def __init__(self, frames=27, joints=17, dim=32):
        super().__init__()
        self.embed = nn.Linear(joints * 2, dim)
        self.first_stage_token_mixing_blocks = nn.ModuleList([wild_vpts.MixerBlock(frames, dim) for _ in range(3)])
        self.second_stage_token_mixing_blocks = nn.ModuleList([wild_vpts.MixerBlock(frames, dim) for _ in range(3)])
        self.head = nn.Linear(dim, joints * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, -1))
        for blk in self.first_stage_token_mixing_blocks:
            x = blk(x)
        for blk in self.second_stage_token_mixing_blocks:
            x = blk(x)
        return self.head(x).view(b, f, j, 3)


def test_a_mixer_in_two_lists_is_refused_within_the_limit_naming_its_blocks_once():
    """It took 841 characters, listed the blocks twice and lost the reason to a cut."""
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(TwoListMixer().eval(), n=1, f=9, example_input=torch.randn(1, 27, 17, 2))
    msg = str(err.value)
    assert len(msg) <= LIMIT and "\n" not in msg
    assert msg.count("first_stage_token_mixing_blocks.0–2") == 1
    assert "(a linear layer expects 27 input features but got 26): a layer inside is sized by the frame count" in msg
    assert msg.endswith("pass leaf_modules=[YourBlockClass].")


def test_shortened_drops_whole_items_and_counts_them():
    items = [f"blocks.{i}" for i in range(20)]
    assert shortened(items, 1000) == ", ".join(items)
    text = shortened(items, 40)
    assert len(text) <= 40 and text.startswith("blocks.0, blocks.1") and text.endswith(" more")
    assert int(text.split("and ")[1].split()[0]) + text.count("blocks.") == 20
    assert shortened(["x" * 100], 20) == "x" * 19 + "…"


def test_refusal_keeps_the_fixed_text_whole_and_shortens_the_lists():
    long = [f"encoder.layer_{i}" for i in range(100)]
    msg = refusal("found nothing (", Listing(long), "); also ", Listing(["a", "b"]), ". Fix: pass leaf_modules=[X].",
                  limit=120)
    assert len(msg) <= 120 and msg.startswith("found nothing (encoder.layer_0") and "); also a, b." in msg
    assert msg.endswith(". Fix: pass leaf_modules=[X].") and "more" in msg
    floor = refusal("why: ", Listing(["the reason " * 8], floor=100), " found: ", Listing(long), ". pass it.",
                    limit=200)
    assert "the reason " * 7 in floor and len(floor) <= 200  # a list with a floor keeps it; the others give way
    assert refusal("a ", Listing(["b", "c"]), " d") == "a b, c d"  # spaces around the parts are kept


def test_cap_keeps_the_start_and_the_fix():
    line = "found a problem: " + "detail, " * 120 + "more detail. Pass leaf_modules=[Block] to fix it."
    capped_line = cap(line)
    assert len(capped_line) <= LIMIT and capped_line.startswith("found a problem: detail,")
    assert capped_line.endswith("… Pass leaf_modules=[Block] to fix it.")
    three = "could not trace M: " + "x " * 400 + "\n  at model.py:12 in M.forward: `if x.sum():`\nFix: move it."
    out = cap(three)
    assert len(out) <= LIMIT and out.endswith("\n  at model.py:12 in M.forward: `if x.sum():`\nFix: move it.")
    assert cap("short") == "short"


def test_capped_shortens_every_hotpatch_error_it_lets_through():
    with pytest.raises(hotpatch.RewriteError) as err, capped():
        raise hotpatch.RewriteError("the patched model fails: " + "node, " * 200 + "choose another n.")
    assert len(str(err.value)) <= LIMIT and str(err.value).endswith("choose another n.")
    with pytest.raises(ValueError) as other, capped():
        raise ValueError("v" * 1000)  # not a refusal: untouched
    assert len(str(other.value)) == 1000


def test_blocks_mixing_frames_through_a_frame_sized_parameter_are_refused_naming_it(monkeypatch):
    """Low-rank attention (tests/models/projection_vpts.py): keys and values projected along the
    frames by (r, F) parameters. The block runs on fewer frames (it slices them), but not soundly:
    refused before any rewrite, naming the parameter and the blocks."""
    model, x = projection_vpts.build("projected")
    with torch.no_grad():
        model.blocks[0](torch.randn(1, 26, 32))  # runs on one frame fewer: that test alone would pass it
        before = model(x)
    monkeypatch.setattr(hotpatch.patch, "rewrite", lambda *a, **k: pytest.fail("the rewrite ran"))
    with pytest.raises(hotpatch.NoTemporalBlocksError) as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    msg = str(err.value)
    assert len(msg) <= 600 and "\n" not in msg
    assert "`blocks.0.attn.e_keys` (6, 27) projects the 27 frames onto 6 learned mixes (and `attn.e_values` (6, 27)) " \
           "in blocks blocks.0–2: a block mixing frames through a frame-sized parameter cannot run on fewer frames" in msg
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_a_block_mixing_frames_through_a_frame_sized_parameter_after_the_cut_is_refused(monkeypatch):
    """Two blocks that attend over frames, then a low-rank one: it is not a level of temporal blocks,
    and no cut can come after it."""
    model, x = projection_vpts.build("attend_then_project")
    plan = hotpatch.prepare(model, example_input=x[:1]).plan
    assert [b.kind for b in plan.blocks] == ["temporal", "temporal", "frame-channel"] and plan.levels == 2
    for cls in rewrite_module.PASSES:
        monkeypatch.setattr(cls, "run", lambda self, edit: pytest.fail("a pass ran before the refusal"))
    with pytest.raises(hotpatch.RewriteError) as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    msg = str(err.value)
    assert len(msg) <= 600 and not isinstance(err.value, hotpatch.PatchCheckError)
    assert msg.startswith("block blocks.2 uses frames as its feature axis (`blocks.2.attn.e_keys` (6, 27), "
                          "`blocks.2.attn.e_values` (6, 27))")
    assert msg.endswith("No n puts the cut after `blocks.2`, so this model cannot be patched as it is.")
