"""Pattern 6 of issue 27: a full-length (1, F, C) embedding sliced to the current length inside a
strided stage, ``x + self.pos[:, :x.shape[1]]`` with x on F/3 or F/9 rows (pass "stage positions",
tests/models/stage_pos_vpts.py). Before: ``RewriteError: `pos` (shape (1, 27, 32)) is indexed by
frame and used by %getitem_7 ...``. In the first stage the slice reads the frame count (pass
"sliced frame-indexed parameters": frozen at F rows, gathered); in the later stages it reads the
stage's length, which follows f, and its rows are the stage's positions: nothing is gathered."""

from __future__ import annotations

import operator

import pytest
import torch

import hotpatch
import stage_pos_vpts as vpts
import vpt_properties as props
from checks import block_input_shapes

F, N, KEEP = 27, 1, 18
SOURCES = {name: f"stage_pos_vpts:{cls.__name__}" for name, (cls, _) in vpts.ALL.items()}


def _stage(block: str) -> int:
    return int(block.split(".")[1])


@pytest.mark.parametrize("name", list(vpts.ALL))
def test_later_stages_read_their_own_first_rows(name):
    model, x = vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1], recover="linear")
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert "`pos` (1, 27, 32) sliced to the current length of the length-9 strided stage" in notes
    assert "`pos` (1, 27, 32) sliced to the current length of the length-3 strided stage" in notes
    slices = [n for n in patched.graph.nodes if n.target is operator.getitem and getattr(n.args[0], "target", None) == "pos"]
    assert [u.target for u in slices[0].users] != ["hotpatch_gather"]  # stage 0, before the cut: as written
    assert all(not str(u.target).startswith("hotpatch_gather") for s in slices[1:] for u in s.users)
    seen = {b: shape[1] for b, shape in block_input_shapes(patched, x).items()}
    assert seen == {b: F if b == "stages.0.0" else KEEP // 3 ** _stage(b) for b in seen}, seen


def test_the_embedding_added_before_every_block():
    """Sliced before every block: in the later stages each slice reads its stage's length."""
    class EveryBlock(vpts.SlicedStageFormer):
        def forward(self, x):
            b, f, j, c = x.shape
            x = self.embed(x.reshape(b, f, j * c))
            for i, blocks in enumerate(self.stages):
                if i > 0:
                    x = self.reduce[i - 1](x.transpose(1, 2)).transpose(1, 2)
                for blk in blocks:
                    x = blk(x + self.pos[:, : x.shape[1]])
            return self.head(self.norm(x)[:, x.shape[1] // 2]).view(b, 1, j, 3)

    torch.manual_seed(0)
    model, x = EveryBlock().eval(), torch.randn(2, F, 17, 2)
    patched = props.apply_or_refusal(model, n=1, f=KEEP, example_input=x[:1], recover="linear")
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert notes.count("sliced to the current length of the length-9 strided stage") == 2
    assert "frame split" not in notes  # slicing an embedding splits no tokens
    full = hotpatch.apply(model, n=1, f=F, example_input=x[:1], recover="linear")
    with torch.no_grad():
        assert patched(x).shape == model(x).shape and torch.equal(full(x), model(x))


@pytest.mark.parametrize("name", list(vpts.ALL))
def test_patch_keeps_the_original(name):
    props.patch_keeps_original(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", list(vpts.ALL))
def test_gradients_reach_every_original_parameter(name):
    props.gradients_reach_every_parameter(vpts.build, name, N, KEEP)


@pytest.mark.parametrize("name", list(vpts.ALL))
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(name, recover):
    props.all_frames_reproduce(vpts.build, name, N, F, recover)


@pytest.mark.parametrize("name", list(vpts.ALL))
def test_save_load_round_trip(name, tmp_path):
    props.save_load_round_trip(vpts.build, name, N, KEEP, SOURCES[name], tmp_path)
