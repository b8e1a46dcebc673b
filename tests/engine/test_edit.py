"""The graph under edit (hotpatch.engine.edit): size-argument edits, op classes, the pass interface."""

from __future__ import annotations

import operator

import pytest
import torch.fx as fx

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
