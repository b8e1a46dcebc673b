"""The frame-indexed-parameters pass: a (1, F, C) positional embedding added after the cut is
gathered per sample by the kept frames; another use of it after the cut is refused clearly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import author_vpts
import hotpatch
from author_vpts import Block
from hotpatch.engine.wrappers import GatherConstant
from hotpatch.errors import PatchCheckError, RewriteError


class LatePosFormer(nn.Module):
    """Adds its temporal embedding before every block (so also after the cut)."""

    def __init__(self, frames: int = 27, width: int = 34) -> None:
        super().__init__()
        self.embed = nn.Linear(34, width)
        self.pos = nn.Parameter(torch.randn(1, frames, width))
        self.blocks = nn.ModuleList([Block(width, 2) for _ in range(3)])
        self.head = nn.Linear(width, 51)

    def forward(self, x):
        b, f = x.shape[:2]
        h = self.embed(x.reshape(b, f, -1))
        for blk in self.blocks:
            h = blk(h + self.pos)
        return self.head(h).reshape(b, f, 17, 3)


class MaxPosFormer(LatePosFormer):
    """Takes the element-wise maximum with its (1, F, C) embedding after the first block: an op the
    passes do not gather a frame-indexed constant for."""

    def forward(self, x):
        b, f = x.shape[:2]
        h = self.blocks[0](self.embed(x.reshape(b, f, -1)))
        for blk in self.blocks[1:]:
            h = blk(torch.maximum(h, self.pos))
        return self.head(h).reshape(b, f, 17, 3)


class ConcatPosFormer(LatePosFormer):
    """Concatenates its embedding to the tokens after the first block: not an element-wise use."""

    def __init__(self) -> None:
        super().__init__(width=34)
        self.mix = nn.Linear(68, 34)

    def forward(self, x):
        b, f = x.shape[:2]
        h = self.blocks[0](self.embed(x.reshape(b, f, -1)))
        for blk in self.blocks[1:]:
            h = blk(self.mix(torch.cat([h, self.pos.expand(b, -1, -1)], dim=-1)))
        return self.head(h).reshape(b, f, 17, 3)


def test_embedding_rows_are_the_kept_frames_of_each_sample():
    torch.manual_seed(0)
    model, x = LatePosFormer().eval(), torch.randn(3, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    gathers = [m for m in patched.modules() if isinstance(m, GatherConstant)]
    assert len(gathers) == 1  # the add before block 2 (the one before block 1 comes before the cut)
    seen = {}
    gathers[0].register_forward_hook(lambda _m, args, out: seen.update(index=args[1], out=out))
    with torch.no_grad():
        patched(x)
    index, out = seen["index"], seen["out"]
    assert out.shape == (3, 9, 34)
    for b in range(3):
        assert torch.equal(out[b], model.pos[0, index[b]])


def test_embedding_gathered_in_the_layout_of_its_partner():
    model, x = author_vpts.build("encoder_layer")  # (F, B, C) tokens of nn.TransformerEncoderLayer
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    assert any(isinstance(m, GatherConstant) for m in patched.modules())
    assert patched(x).shape == model(x).shape


@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(recover):
    torch.manual_seed(0)
    model, x = LatePosFormer().eval(), torch.randn(2, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=27, example_input=x[:1], recover=recover)
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


def test_an_embedding_expanded_to_the_batch_and_concatenated_after_the_cut_is_gathered():
    # pos.expand(b, -1, -1) has a batch axis: the per-frame contexts pass gathers each sample's kept
    # rows for torch.cat (before issue 27 this was refused as a non-element-wise use)
    torch.manual_seed(0)
    model, x = ConcatPosFormer().eval(), torch.randn(2, 27, 17, 2)
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    seen = {}
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: seen.update(index=o[-1]))
    patched.mix.register_forward_pre_hook(lambda m, a: seen.update(mixed=a[0]))  # the last call: after the cut
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
    index, mixed = seen["index"], seen["mixed"]
    assert mixed.shape == (2, 9, 68)
    for b in range(2):
        assert torch.equal(mixed[b, :, 34:], model.pos[0, index[b]])


def test_a_use_no_pass_gathers_is_refused_before_the_rewrite_with_the_fix():
    torch.manual_seed(0)
    model, x = MaxPosFormer().eval(), torch.randn(2, 27, 17, 2)
    with pytest.raises(RewriteError, match=r"`pos` .* is indexed by frame and used by .*torch.maximum.*"
                                           r"Choose n >= 2 so that the cut comes after it") as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    assert len(str(err.value)) <= 600 and not isinstance(err.value, PatchCheckError)  # refused before the rewrite
