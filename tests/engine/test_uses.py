"""Item 2 of issue 27: the analysis decides, the rewrite never discovers (hotpatch/engine/uses.py).

Before any pass edits the graph, every frame-count use after the cut is listed and claimed by a
pass, or the model is refused with a one-line RewriteError naming the use and its layer. A
failure after the rewrite is a PatchCheckError, a bug in that analysis, which
``vpt_properties.apply_or_refusal`` turns into a test failure (the corpus tests use it too)."""

from __future__ import annotations

import pytest
import torch

import frame_channel_vpts
import frame_use_vpts
import hotpatch
import vpt_properties as props
from hotpatch.engine import rewrite as rewrite_module
from hotpatch.engine import uses
from hotpatch.engine.passes.frame_sized import FrameSizedLayers
from hotpatch.errors import PatchCheckError, RewriteError


def _claims(monkeypatch, build, name, **settings) -> list[tuple[str, str, list[str]]]:
    """(kind, what, names of the passes that claim it) for every use the analysis lists."""
    seen = []
    real = uses.decide

    def record(edit, passes):
        for use in uses.inventory(edit):
            what = use.layer.name if use.kind == "layer" else use.value.name
            seen.append((use.kind, what, [p.name for p in passes if p.claims(edit, use)]))
        real(edit, passes)

    monkeypatch.setattr(rewrite_module, "decide", record)
    model, x = build(name)
    hotpatch.apply(model, example_input=x[:1], **settings)
    return seen


def test_every_use_after_the_cut_is_claimed_by_the_pass_that_handles_it(monkeypatch):
    seen = _claims(monkeypatch, frame_use_vpts.build, "graphformer", n=1, f=9)
    layers = {what: by for kind, what, by in seen if kind == "layer"}
    constants = {what: by for kind, what, by in seen if kind == "constant"}
    assert layers == {f"gcns.{i}.bn": ["frame-sized layers"] for i in (1, 2, 3)}
    assert constants == {f"gcns_{i}_adj": ["frame-sized layers"] for i in (1, 2, 3)}
    seen = _claims(monkeypatch, frame_use_vpts.build, "adjacencyformer", n=1, f=9)
    assert {what: by for _, what, by in seen} == {f"blocks.{i}": ["fit"] for i in (1, 2)}  # rebuilt blocks: (F, F) adj


def test_an_unclaimed_use_is_refused_before_any_pass_runs(monkeypatch):
    for cls in rewrite_module.PASSES:
        monkeypatch.setattr(cls, "run", lambda self, edit: pytest.fail("a pass ran before the refusal"))
    model, x = frame_channel_vpts.build("frame_mix")
    refusal = props.apply_or_refusal(model, n=1, f=9, example_input=x[:1])
    props.assert_refused(refusal, RewriteError, "`blocks.1.mix` (FrameMean)", "after the cut before `blocks.1`")
    assert not isinstance(refusal, PatchCheckError)


def test_without_the_analysis_the_rewrite_would_discover_a_bug(monkeypatch):
    """The refusal above, skipped: the patched model fails its check, a PatchCheckError that
    apply_or_refusal reports as a failed test."""
    monkeypatch.setattr(rewrite_module, "decide", lambda edit, passes: None)
    model, x = frame_channel_vpts.build("frame_mix")
    with pytest.raises(PatchCheckError, match=r"fails at `blocks_1`.*bug in hotpatch's analysis") as err:
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    assert len(str(err.value)) <= 600 and "\n" not in str(err.value)
    with pytest.raises(pytest.fail.Exception, match="the rewrite discovered what the analysis should have refused"):
        props.apply_or_refusal(model, n=1, f=9, example_input=x[:1])


def test_a_refusal_raised_while_the_passes_run_is_a_bug(monkeypatch):
    def refuse(self, edit):
        raise RewriteError("something only the rewrite saw")

    monkeypatch.setattr(FrameSizedLayers, "run", refuse)
    model, x = frame_use_vpts.build("graphformer")
    with pytest.raises(PatchCheckError, match=r"'frame-sized layers' rewrite pass refused during the rewrite.*"
                                              r"something only the rewrite saw"):
        hotpatch.apply(model, n=1, f=9, example_input=x[:1])


def test_refusals_name_the_construct_and_say_which_n_avoids_it():
    model, x = frame_channel_vpts.build("frame_mix")
    text = str(props.apply_or_refusal(model, n=2, f=9, example_input=x[:1]))
    assert text.startswith("block `blocks.2` (OwnBiasBlock) has `frame_bias` of shape (1, 27, 32)")
    assert text.endswith("No n puts the cut after `blocks.2`, so this model cannot be patched as it is.")


def test_apply_or_refusal_returns_the_patch_or_the_refusal():
    model, x = frame_use_vpts.build("graphformer")
    assert isinstance(props.apply_or_refusal(model, n=1, f=9, example_input=x[:1]), torch.fx.GraphModule)
    assert isinstance(props.apply_or_refusal(model, n=9, f=9, example_input=x[:1]), hotpatch.ConfigError)
