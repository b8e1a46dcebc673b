"""Strided stages joined by average pooling: ``nn.AvgPool1d`` and ``F.avg_pool1d`` with stride 3
(tests/models/frame_use_vpts.py: AvgPoolStridedFormer, FunctionalAvgPoolStridedFormer)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import frame_use_vpts
import hotpatch
from checks import block_input_shapes
from hotpatch.prune import UniformPrune

FRAMES = 27
MODELS = {"avgpoolstrided": ("reduce.0", "reduce.1"), "functionalavgpool": ("avg_pool1d", "avg_pool1d_1")}
SOURCES = {"avgpoolstrided": "frame_use_vpts:AvgPoolStridedFormer",
           "functionalavgpool": "frame_use_vpts:FunctionalAvgPoolStridedFormer"}


def _tokens_per_block(patched, x) -> dict[str, int]:
    """Tokens (axis 1) of each block's input in one forward (a reduced stage has no frame axis)."""
    return {name: shape[1] for name, shape in block_input_shapes(patched, x).items()}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("f", [9, 18])
def test_pooled_stages_follow_f_and_the_output_shape_is_kept(name, f):
    model, x = frame_use_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    patched = hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    first, second = MODELS[name]
    assert f"strided stage `{first}` (stride 3, kernel 3: 27 -> 9) after the cut: {f} -> {f // 3} tokens" in notes
    assert f"strided stage `{second}` (stride 3, kernel 3: 9 -> 3) after the cut: {f // 3} -> {f // 9} tokens" in notes
    assert any(n.startswith("`pos_embeds_1` (1, 9, 32)") and f"first {f // 3} " in n for n in notes)
    assert _tokens_per_block(patched, x) == {
        "stages.0.0": FRAMES, "stages.0.1": f, "stages.1.0": f // 3, "stages.1.1": f // 3, "stages.2.0": f // 9}
    with torch.no_grad():
        out = patched(x)
        assert torch.equal(model(x), before)  # the original is untouched
    assert out.shape == before.shape == (2, 1, 17, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(name, recover):
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=1, f=FRAMES, recover=recover, example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


def _by_hand(model, x, kept):
    """The model's forward written out with the frames ``kept`` (B, 9) after stages.0.0: pooled
    stages of 3 and 1 tokens with the first rows of their embeddings; the last stage's single
    token is the recovered centre."""
    b, f, j, c = x.shape
    h = model.embed(x.reshape(b, f, j * c)) + model.pos_embeds[0]
    h = model.stages[0][0](h)
    h = h[torch.arange(b).unsqueeze(1), kept]
    h = model.stages[0][1](h)
    for i, length in ((1, 3), (2, 1)):
        h = F.avg_pool1d(h.transpose(1, 2), kernel_size=3, stride=3).transpose(1, 2)
        h = h + model.pos_embeds[i][:, :length]
        for blk in model.stages[i]:
            h = blk(h)
    return model.head(model.norm(h)[:, 0]).view(b, 1, j, 3)


@pytest.mark.parametrize("name", list(MODELS))
def test_pruned_model_equals_the_forward_written_by_hand(name):
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=1, f=9, prune="uniform", recover="nearest", example_input=x[:1])
    kept = UniformPrune(9).select(torch.zeros(2, FRAMES, 1))
    with torch.no_grad():
        torch.testing.assert_close(patched(x), _by_hand(model, x, kept), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("f", [10, 20])
def test_f_that_does_not_fit_the_pooling_is_refused_with_valid_values(name, f):
    model, x = frame_use_vpts.build(name)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.ConfigError, match=rf"does not fit the strided stage `{MODELS[name][0]}`") as err:
        hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    assert "9, 18" in str(err.value) and "pass one of them" in str(err.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip_is_exact(name, tmp_path):
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=1, f=18, example_input=x[:1])
    with torch.no_grad():  # as if fine-tuned: every parameter moves (TRA queries included)
        gen = torch.Generator().manual_seed(2)
        for p in patched.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    path = hotpatch.save(patched, tmp_path / "m.pt", source={"class": SOURCES[name], "kwargs": {}})
    loaded = hotpatch.load(path)
    assert loaded.hotpatch_config["f"] == 18
    assert _tokens_per_block(loaded, x) == _tokens_per_block(patched, x)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), patched.eval()(x))
