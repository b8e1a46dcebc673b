"""Every bad input gets a HotpatchError subclass that names the problem and the fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import hotpatch
import author_vpts


@pytest.fixture(scope="module")
def mixste():
    return author_vpts.build("mixste")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n": 0}, "n >= 1"),
        ({"n": 4}, "1 <= n <= 3"),
        ({"f": 0}, "1 <= f"),
        ({"f": 28}, "1 <= f <= 27"),
        ({"k": 0}, "k >= 1"),
        ({"n": 1.5}, "n must be an int"),
        ({"pipeline": "frames"}, "pipeline='frames' is unknown"),
        ({"prune": "random"}, "prune='random' is unknown"),
        ({"recover": "cubic"}, "recover='cubic' is unknown"),
    ],
)
def test_bad_arguments(mixste, kw, match):
    model, x = mixste
    args = {"n": 1, "f": 9, **kw}
    with pytest.raises(hotpatch.ConfigError, match=match):
        hotpatch.apply(model, example_input=x[:1], **args)


class SpatialOnly(nn.Module):
    """Blocks attend across joints only: nothing temporal to prune."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 16)
        self.blocks = nn.ModuleList([author_vpts.Block(16, 2) for _ in range(3)])
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b * f, j, c))
        for blk in self.blocks:
            x = blk(x)
        return self.head(x).view(b, f, j, 3)


class NoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.mlp(x)


@pytest.mark.parametrize("cls", [SpatialOnly, NoBlocks])
def test_no_temporal_blocks(cls):
    with pytest.raises(hotpatch.NoTemporalBlocksError, match="leaf_modules=") as err:
        hotpatch.apply(cls(), n=1, f=3, example_input=torch.randn(1, 9, 17, 2))
    if cls is SpatialOnly:
        assert "blocks.0–2 (spatial)" in str(err.value)


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)

    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow
            return self.lin(x)
        return x


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2 * 17, 16)
        self.gate = Gate()
        self.blocks = nn.ModuleList([author_vpts.Block(16, 2) for _ in range(3)])

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.gate(self.embed(x.reshape(b, f, j * c)))
        for blk in self.blocks:
            x = blk(x)
        return x


class GatedRoot(Untraceable):
    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        if x.mean() > 0:  # data-dependent control flow in the model's own forward
            x = -x
        for blk in self.blocks:
            x = blk(x)
        return x


def test_untraceable_model_names_the_line_and_the_fix():
    with pytest.raises(hotpatch.TraceFailure) as err:
        hotpatch.apply(GatedRoot(), n=1, f=3, example_input=torch.randn(1, 9, 17, 2))
    msg = str(err.value)
    assert "if x.mean() > 0:" in msg and "test_errors.py" in msg
    assert "make that line independent of tensor values" in msg


def test_untraceable_submodule_becomes_a_leaf_by_itself():
    patched = hotpatch.apply(Untraceable(), n=1, f=3, example_input=torch.randn(1, 9, 17, 2))
    assert patched(torch.randn(2, 9, 17, 2)).shape == (2, 9, 16)
    assert any(note.startswith("kept gate (Gate) as one opaque call") for note in patched.hotpatch_plan.notes)


def test_untraceable_part_can_be_made_a_leaf():
    patched = hotpatch.apply(Untraceable(), n=1, f=3, example_input=torch.randn(1, 9, 17, 2), leaf_modules=[Gate])
    assert patched(torch.randn(2, 9, 17, 2)).shape == (2, 9, 16)


@pytest.mark.parametrize("kw", [{"num_frame": 17}, {"num_frame": 32}])
def test_ambiguous_frame_axis(kw):
    # F == J (17) or F == C (32): the frame axis cannot be told apart
    model = author_vpts.MixSTELike(**kw).eval()
    with pytest.raises(hotpatch.AmbiguousFrameAxisError, match="another clip length"):
        hotpatch.apply(model, n=1, f=5, example_input=torch.randn(1, kw["num_frame"], 17, 2))


def test_missing_input_shape():
    model = author_vpts.EncoderLayerVPT().eval()
    with pytest.raises(hotpatch.InputShapeError, match="example_input="):
        hotpatch.apply(model, n=1, f=9)
    assert hotpatch.apply(model, n=1, f=9, frames=27)(torch.randn(1, 27, 17, 2)).shape == (1, 27, 17, 3)


def test_input_shape_inferred_from_the_weights(mixste):
    model, x = mixste
    patched = hotpatch.apply(model, n=1, f=9)
    assert patched.hotpatch_config["input_shape"] == [27, 17, 2]


def test_example_input_the_model_rejects(mixste):
    model, _ = mixste
    with pytest.raises(hotpatch.InputShapeError, match="rejects example_input of shape"):
        hotpatch.apply(model, n=1, f=9, example_input=torch.randn(1, 30, 17, 2))


def test_frames_and_example_disagree(mixste):
    model, x = mixste
    with pytest.raises(hotpatch.InputShapeError, match="frames=81"):
        hotpatch.apply(model, n=1, f=9, frames=81, example_input=x[:1])


def test_errors_share_one_base_class():
    for cls in (hotpatch.ConfigError, hotpatch.TraceFailure, hotpatch.InputShapeError,
                hotpatch.NoTemporalBlocksError, hotpatch.AmbiguousFrameAxisError, hotpatch.RewriteError):
        assert issubclass(cls, hotpatch.HotpatchError)
