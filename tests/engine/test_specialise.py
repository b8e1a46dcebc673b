"""Branches on the input's rank or sizes (hotpatch/engine/specialise.py) in VPT code written the
way other authors write it (tests/models/wild_vpts.py): decided once for the example input and
noted, refused when they would change with the batch or with the frames a block computed."""

from __future__ import annotations

import os

import pytest
import torch

import hotpatch
import wild_vpts
from checks import assert_unchanged, state_of

F, N, KEEP = 27, 1, 9
PACKAGE_DIR = os.path.dirname(hotpatch.__file__)


def test_shape_branches_are_decided_for_the_example_and_noted():
    model, x = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = [n for n in patched.hotpatch_plan.notes if n.startswith("branch ")]
    assert len(notes) == 5  # each branch once (not again for the train-mode trace)
    by_line = {line: next(n for n in notes if line in n) for line in
               ("`if len(x.shape) == 3:", "`if x.dim() == 5:", "`if c == 3:", "`if x.shape[-1] != 2:", "`if f != self.num_frame:")}
    assert by_line["`if c == 3:"].endswith("taken: fixed for inputs of shape (B, 27, 17, 3)")
    assert " not taken: " in by_line["`if len(x.shape) == 3:"]
    assert "decided for F=27" in by_line["`if f != self.num_frame:"]
    # the taken branch drops the confidence: the patched model ignores channel 2, as the original
    y = x.clone()
    y[..., 2] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(patched(y), patched(x), atol=0, rtol=0)


def test_shape_branches_without_example_input():
    model, _ = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP)  # the input shape is inferred, then traced for it
    assert patched.hotpatch_config["input_shape"] == [27, 17, 2]
    assert any("`if c == 3:" in n and " not taken" in n for n in patched.hotpatch_plan.notes)
    assert patched(torch.randn(2, 27, 17, 2)).shape == (2, 27, 17, 3)


@pytest.mark.parametrize("name, match, line", [
    ("batch_branch", "depends on the batch size", "`if b == 1:"),
    ("inner_frame_branch", "frame count of tokens that a transformer block has computed",
     "`if x.shape[1] == self.pos_embed.shape[1]:`"),
])
def test_branches_that_cannot_be_decided_once_are_refused(name, match, line):
    model, x = wild_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = state_of(model)
    with pytest.raises(hotpatch.TraceFailure, match=match) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert line in msg and "wild_vpts.py:" in msg and "Fix:" in msg
    assert PACKAGE_DIR not in msg
    assert_unchanged(model, state, x, before)


def test_branches_after_the_blocks():
    model, x = wild_vpts.build("head_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = patched.hotpatch_plan.notes
    assert notes[0].startswith("kept head (PoseHead) as one opaque call: torch.fx cannot trace its forward "
                               "(the branch at ")
    assert "`if x.shape[1] == 1:  # a single (centre) frame` depends on the frame count" in notes[0]
    assert notes[2] == "inputs are checked to be (B, 27, 17, 2): the branches were decided for them"
    assert len(notes) == 3 and "`if x.dim() == 3 and x.shape[-1] == self.pos_embed.shape[-1]:` in HeadBranchVPT.forward taken: fixed" in notes[1]
    seen = []
    patched.head.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    with torch.no_grad():
        patched(x)
    assert seen == [F]  # the head runs after recovery, on all F frames


def test_a_patch_with_decided_branches_checks_the_input_shape():
    model, x = wild_vpts.build("shape_branch")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])  # decided for C=3
    with torch.no_grad():
        assert model(x[..., :2]).shape == (2, 27, 17, 3)  # the original takes C=2 too, by another branch
        with pytest.raises(hotpatch.InputShapeError, match=r"decided those branches for inputs of shape \(B, 27, 17, 3\)"):
            patched(x[..., :2])
        with pytest.raises(hotpatch.HotpatchError, match=r"got an input of shape \(27, 17, 3\)"):
            patched(x[0])  # (F, J, C): the rank-3 branch was not kept (the frame guard sees it first)
