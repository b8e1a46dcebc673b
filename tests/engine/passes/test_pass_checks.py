"""Each rewrite pass checks what it ensures: with its work undone, its own check refuses the
patch with a RewriteError naming the pass (instead of a silently wrong model)."""

from __future__ import annotations

import pytest

import author_vpts
import frame_use_vpts
import hotpatch
import skip_vpts
from hotpatch.engine.passes import carried, counts, cut, frame_params, frame_sized, recovery
from hotpatch.errors import RewriteError


def _noop(*_args, **_kwargs):
    return None


@pytest.mark.parametrize("build, target, attr, pass_name", [
    (lambda: author_vpts.build("mixste"), counts.FrameCounts, "run", "sizes and literals"),
    (skip_vpts.build, carried.CarriedTensors, "run", "carried tensors"),
    (lambda: author_vpts.build("encoder_layer"), frame_params.FrameIndexedConstants, "run", "frame-indexed parameters"),
    (lambda: author_vpts.build("mixste"), recovery.Recovery, "run", "recovery"),
    (lambda: frame_use_vpts.build("mixerformer"), frame_sized, "set_holders", "frame-sized layers"),
    (lambda: author_vpts.build("mixste"), cut, "prune_call", "cut"),
])
def test_a_pass_whose_work_is_undone_fails_its_own_check(monkeypatch, build, target, attr, pass_name):
    model, x = build()
    hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")  # patches as it is
    monkeypatch.setattr(target, attr, _noop)
    with pytest.raises(RewriteError, match=f"'{pass_name}' rewrite pass"):
        hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
