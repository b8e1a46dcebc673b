"""The graph under edit (hotpatch.engine.edit): size-argument edits, op classes, the pass interface,
the layouts it refuses."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx as fx

import folded_vpts
import hotpatch
from checks import build_and_patch, frames_per_block

from hotpatch.engine.edit import RewritePass, edit_sizes, is_elementwise, is_sizing
from hotpatch.errors import RewriteError


def _graph(fn) -> fx.Graph:
    return fx.symbolic_trace(fn).graph


def _node(graph: fx.Graph, target) -> fx.Node:
    return next(n for n in graph.nodes if n.target == target)


@pytest.mark.parametrize("fn", [lambda x: x.view(2, 27, 5), lambda x: x.view((2, 27, 5))])
def test_edit_sizes_changes_loose_and_packed_sizes(fn):
    graph = _graph(fn)
    view = _node(graph, "view")
    assert is_sizing(view)
    assert edit_sizes(view, lambda i, s: 9 if s == 27 else s)
    sizes = view.args[1] if isinstance(view.args[1], tuple) else view.args[1:]
    assert tuple(sizes) == (2, 9, 5)
    assert not edit_sizes(view, lambda i, s: s)  # nothing to change: reported as such


def test_elementwise_ops_are_told_apart_from_others():
    graph = _graph(lambda x, p: (x + p).mul(p) @ p)
    assert is_elementwise(_node(graph, operator.add)) and is_elementwise(_node(graph, "mul"))
    assert not is_elementwise(_node(graph, operator.matmul)) and not is_sizing(_node(graph, operator.add))


def test_a_failed_check_names_the_pass():
    class Example(RewritePass):
        name = "example"

    err = Example().fail("something is off")
    assert isinstance(err, RewriteError) and "'example' rewrite pass" in str(err) and "something is off" in str(err)
    with pytest.raises(NotImplementedError):
        Example().run(None)


@pytest.mark.parametrize("streams", [2, 4])
def test_a_batch_folded_with_copies_of_each_sample_is_refused_before_the_rewrite(streams):
    """Hyper-connection residual streams: (B·S, F, C), each sample's S rows copies at the cut."""
    torch.manual_seed(0)
    model = folded_vpts.StreamsVPT(streams=streams).eval()
    with pytest.raises(RewriteError) as info:
        hotpatch.apply(model, n=1, f=9, example_input=torch.randn(1, 27, 17, 2))
    msg = str(info.value)
    assert type(info.value) is RewriteError  # raised by the cut's inspect: not a PatchCheckError
    assert msg.startswith(f"tensor alive at the cut `blocks_0` of shape ({streams}, 27, 32): its axis 0 "
                          f"({streams} at batch 1, {2 * streams} at batch 2) is the batch folded with {streams} rows "
                          "per sample (residual streams, heads or hypotheses)")
    assert "(made by `repeat` from `add` (1, 27, 32))" in msg
    assert f"Fix: keep the {streams} rows on an axis of their own, e.g. (B, {streams}, F, C)" in msg
    assert "zero-initialised" not in msg  # the hint for all-equal tokens is for another case
    assert len(msg) <= 600


def test_copies_on_an_axis_of_their_own_patch():
    """The refusal's fix: the same blocks over (B, S, F, C)."""
    model, x, patched = build_and_patch(folded_vpts, "streams_own_axis", n=1, f=9)
    assert frames_per_block(patched, x) == {"blocks.0": 27, "blocks.1": 9, "blocks.2": 9}
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
