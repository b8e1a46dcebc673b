"""Blocks found by the loop: layers a parent calls piecewise, one loop iteration per block.

A popular way to write a transformer keeps each layer as ``ModuleList([attention, feed_forward])``
(or ``[attn, ff, regressor]``) and writes the residual adds in the parent's loop::

    for attn, ff in self.layers:
        x = attn(x) + x
        x = ff(x) + x

No module is "the block", so nothing is kept as one call while tracing; yet each iteration is
one. After tracing, the nodes of each such container (found by structure as a block that is never
called as a whole) are the ones fx ran inside its submodules (``nn_module_stack``); the block is
the span of the graph from its first to its last node, plus the residual adds right after it. The
span is outlined into one call of the container's own name: a :class:`LoopBlock` that holds the
container's children under their names (so every state_dict key stays as it was) and runs the
recorded code. Everything else in the engine then sees an ordinary block.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.refusals import block_ranges

_RESIDUAL = {operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, torch.add, torch.mul}
_RESIDUAL_METHODS = {"add", "add_", "mul", "mul_"}


class LoopBlock(nn.Module):
    """One iteration of a parent's loop over a container of layers, as one module.

    Its children are the container's (same objects, same names: ``layers.3.0.attn.qkv.weight``
    stays that key); ``forward`` runs the code the parent ran for that iteration, residual adds
    included (generated from the recorded graph, one parameter per value it reads, as fx's
    GraphModule does). It iterates and indexes like the container it stands for, so the parent's
    own loop still works on it.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> LoopBlock:
        class Impl(cls):  # type: ignore[valid-type, misc]  # one class per instance: forward is generated
            pass

        Impl.__name__ = Impl.__qualname__ = cls.__name__
        return super().__new__(Impl)

    def __init__(self, container: nn.Module, graph: fx.Graph, outer: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        for name, child in container.named_children():
            self.add_module(name, child)
        self._order = [name for name, _ in container.named_children()]
        for name, module in (outer or {}).items():
            # a module of the model that the iteration calls (a shared norm, a dropout hotpatch made):
            # referenced, not registered, so it keeps its own name and state_dict key
            object.__setattr__(self, name, module)
        self.container = type(container).__name__
        self.graph = graph
        self._compile()

    def _compile(self) -> None:
        code = self.graph.python_code(root_module="self")
        namespace = dict(code.globals)
        exec(compile(code.src, f"<hotpatch loop block {self.container}>", "exec"), namespace)
        type(self).forward = namespace["forward"]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter([self._modules[name] for name in self._order])

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i: int) -> nn.Module:
        return self._modules[self._order[i]]

    def __reduce__(self) -> tuple:  # the per-instance class cannot be pickled by name
        return _restore, (dict(self.__dict__),)

    def extra_repr(self) -> str:
        return f"one iteration of a loop over a {self.container}"


def _restore(state: dict) -> LoopBlock:
    block = LoopBlock.__new__(LoopBlock)
    block.__dict__.update(state)
    block._compile()
    return block


def owner_of(node: fx.Node, name: str) -> bool:
    """True if fx recorded ``node`` inside a submodule of ``name`` (or ``name`` itself)."""
    prefix = name + "."
    if node.op in ("call_module", "get_attr") and isinstance(node.target, str) and node.target.startswith(prefix):
        return True
    stack = node.meta.get("nn_module_stack") or {}
    return any(q == name or q.startswith(prefix) for q, _ in stack.values())


def _is_residual(n: fx.Node, inside: set[fx.Node]) -> bool:
    """An element-wise op right after the span that combines one of its values (``ff(x) + x``)."""
    is_op = (n.op == "call_function" and n.target in _RESIDUAL) or (n.op == "call_method" and n.target in _RESIDUAL_METHODS)
    return is_op and any(a in inside for a in n.all_input_nodes)


def find_span(graph: fx.Graph, name: str) -> list[fx.Node] | None:
    """The nodes of the loop iteration of container ``name``, in graph order (None if fx ran none)."""
    nodes = list(graph.nodes)
    owned = [i for i, n in enumerate(nodes) if owner_of(n, name)]
    if not owned:
        return None
    span = nodes[owned[0]: owned[-1] + 1]
    inside = set(span)
    for n in nodes[owned[-1] + 1:]:
        if not _is_residual(n, inside):
            break
        span.append(n)
        inside.add(n)
    return span


def outline(gm_root: nn.Module, graph: fx.Graph, name: str, span: list[fx.Node],
            dropouts: dict[str, nn.Module], blocks: list[str]) -> str | None:
    """Replace ``span`` in ``graph`` by one call of ``name``, a :class:`LoopBlock` set into
    ``gm_root`` in place of the container. Returns why it cannot be done, or None when done."""
    inside = set(span)
    prefix = name + "."
    outer: dict[str, nn.Module] = {}
    hoisted: list[fx.Node] = []
    for n in span:
        if n.op == "placeholder" or n.op == "output":
            return "it reads the model's inputs directly"
        if n.op == "get_attr" and not n.target.startswith(prefix):
            hoisted.append(n)  # a parameter of another module, or a constant: an input of the block
        elif n.op == "call_module" and not n.target.startswith(prefix):
            if n.target in blocks:
                return f"it runs the block `{n.target}` inside"
            outer["hotpatch_outer_" + n.target.replace(".", "_")] = (
                dropouts[n.target] if n.target in dropouts else gm_root.get_submodule(n.target))
    for n in hoisted:
        inside.discard(n)
    body = [n for n in span if n in inside]
    inputs: list[fx.Node] = []
    for n in body:
        for a in n.all_input_nodes:
            if a not in inside and a not in inputs:
                inputs.append(a)
    outputs = [n for n in body if any(u not in inside for u in n.users)]
    if not outputs:
        return "nothing it computes is used afterwards"

    sub = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for a in inputs:
        env[a] = sub.placeholder(a.name)
    for n in body:
        copy = sub.node_copy(n, lambda a: env[a])
        if n.op in ("call_module", "get_attr") and n.target.startswith(prefix):
            copy.target = n.target[len(prefix):]
        elif n.op == "call_module":
            copy.target = "hotpatch_outer_" + n.target.replace(".", "_")
        env[n] = copy
    sub.output(env[outputs[0]] if len(outputs) == 1 else tuple(env[o] for o in outputs))

    container = gm_root.get_submodule(name)
    parent_name, _, child = name.rpartition(".")
    parent = gm_root.get_submodule(parent_name) if parent_name else gm_root
    setattr(parent, child, LoopBlock(container, sub, outer))

    first = body[0]
    with graph.inserting_before(first):
        call = graph.call_module(name, tuple(inputs))
    if len(outputs) == 1:
        outputs[0].replace_all_uses_with(call, delete_user_cb=lambda u: u not in inside)
    else:
        for i, o in enumerate(outputs):
            with graph.inserting_after(call):
                item = graph.call_function(operator.getitem, (call, i))
            o.replace_all_uses_with(item, delete_user_cb=lambda u: u not in inside)
    for n in reversed(body):
        graph.erase_node(n)
    return None


def outline_loop_blocks(root: nn.Module, graph: fx.Graph, blocks: list[str],
                        dropouts: dict[str, nn.Module]) -> tuple[list[str], list[str]]:
    """Outline every block of ``blocks`` that the graph never calls as a whole but whose
    submodules it runs (a container called piecewise by a loop). Returns the blocks that are
    called after this, and one note per decision."""
    called = {n.target for n in graph.nodes if n.op == "call_module"}
    notes: list[str] = []
    kept: list[str] = []
    outlined: list[str] = []
    for name in blocks:
        if name in called:
            kept.append(name)
            continue
        span = find_span(graph, name)
        if span is None:
            continue  # a block the forward never runs
        if any(owner_of(n, other) for n in span for other in blocks if other != name and other not in called):
            notes.append(f"`{name}` is not a block: its layers run interleaved with those of another block")
            continue
        why = outline(root, graph, name, span, dropouts, blocks)
        if why is not None:
            notes.append(f"`{name}` ({type(root.get_submodule(name)).__name__}) is not a block: {why}")
            continue
        kept.append(name)
        outlined.append(name)
    if outlined:
        notes.append(f"blocks {block_ranges(outlined)} are loop iterations: the parent calls their layers one "
                     "by one (residual adds included); each iteration is kept as one call")
    graph.lint()
    return kept, notes
