"""Python branches on the input's rank or fixed sizes, decided once for the example input.

Real VPT code starts ``forward`` with ``if len(x.shape) == 3: x = x[None]``, ``if x.dim() == 3``,
``b, f, j, c = x.shape; if c == 3: ...``. torch.fx cannot follow such a branch, but a patched
model only ever runs on inputs of one rank and one set of non-batch sizes (the clip length F is
checked when it runs), so the branch can be decided with the example input. A branch is decided
only when that is safe:

* its condition is computed from sizes alone (``x.shape``, ``x.size()``, ``x.dim()``, ``x.ndim``,
  ``len(...)``), never from tensor values: those stay a :class:`~hotpatch.errors.TraceFailure`;
* it has the same value for a batch of 1 and of 2: a branch on the batch size would change at
  run time, so it is refused;
* if its value changes with the frame count, it reads sizes of tensors computed before any
  transformer block: those have the input's F frames, and F is fixed for a patched model. A
  branch on the frame count of tokens a block has computed is refused, because after the cut
  they have f frames, not F. Whether a value changes with F is found by evaluating it for F+1
  frames; where the model accepts only F, a size read that is a multiple of F counts as a
  frame count (as the analysis labels axes by their size).

A refused branch inside a submodule makes that submodule one opaque call instead
(:mod:`hotpatch.engine.opaque`), which runs the branch as written.

Each decided branch becomes one note in the plan.
"""

from __future__ import annotations

import builtins
import linecache
import operator
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_arg

from hotpatch.errors import InputShapeError, TraceFailure

InputSpecs = Mapping[Any, tuple[tuple[int, ...], torch.dtype]]
"""Shape and dtype of each traced input by ``forward`` parameter name (``None``: the first input)."""

_MODULE_CALL = nn.Module.__call__  # the originals: fx replaces them while it traces
_MODULE_GETATTR = nn.Module.__getattr__
_SHAPE_ATTRS = ("shape", "ndim")
_META_ATTRS = ("dtype", "device", "layout", "is_nested", "is_sparse", "is_quantized", "is_meta", "is_cuda")
_SHAPE_METHODS = ("size", "dim", "ndimension", "numel")


class ShapeNeeded(Exception):
    """A branch on the input's sizes was met while tracing without an example shape."""


def _is_size_read(n: fx.Node) -> bool:
    if n.op == "call_function" and n.target is getattr and n.args[1] in _SHAPE_ATTRS:
        return True
    if n.op == "call_method" and n.target in _SHAPE_METHODS:
        return True
    return n.op == "call_function" and n.target is builtins.len


def ancestors(node: fx.Node) -> set[fx.Node]:
    """``node`` and every node it is computed from."""
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _reads_values(nodes: list[fx.Node]) -> bool:
    """True if the last node depends on the input's values, not only on sizes."""
    dep: dict[fx.Node, bool] = {}
    for n in nodes:
        if n.op == "placeholder":
            dep[n] = True
        elif n.op == "get_attr" or _is_size_read(n) or (
                n.op == "call_function" and n.target is getattr and n.args[1] in _META_ATTRS):
            dep[n] = False  # sizes and metadata (x.is_nested, x.device.type): fixed for the example
        else:
            dep[n] = any(dep[a] for a in n.all_input_nodes)
    return dep[nodes[-1]]


def _size_reads(node: fx.Node) -> list[fx.Node]:
    """The size reads whose values the condition ``node`` is computed from (not those that
    only shaped a tensor on the way)."""
    reads, seen, stack = [], set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_function" and n.target is operator.getitem and _is_size_read(n.args[0]):
            reads.append(n)  # one entry of a shape: x.shape[-1], x.size()[1]
            continue
        if _is_size_read(n) and not (n.target is builtins.len and _is_size_read(n.args[0])):
            reads.append(n)
            continue
        stack.extend(n.all_input_nodes)
    return reads


def _reads_rank(n: fx.Node) -> bool:
    """``x.dim()``, ``x.ndim``, ``len(x.shape)``: the rank never depends on F."""
    if n.op == "call_method" and n.target in ("dim", "ndimension"):
        return True
    if n.op == "call_function" and n.target is getattr and n.args[1] == "ndim":
        return True
    return bool(n.users) and all(u.op == "call_function" and u.target is builtins.len for u in n.users)


def _multiple_of(value: Any, frames: int) -> bool:
    """True if a size read (an int or a shape) holds a multiple of the frame count."""
    sizes = list(value) if isinstance(value, (tuple, list, torch.Size)) else [value]
    return any(isinstance(v, int) and v > 0 and v % frames == 0 for v in sizes)


def _vary(specs: InputSpecs, batch: int = 1, extra_frame: bool = False) -> dict[Any, tuple]:
    """``specs`` with ``batch`` times the batch and, with ``extra_frame``, one frame more on every
    input whose axis 1 has the clip's frame count."""
    frames = _frames(specs)
    out = {}
    for name, (shape, dtype) in specs.items():
        shape = (batch * shape[0], *shape[1:])
        if extra_frame and len(shape) >= 2 and shape[1] == frames:
            shape = (shape[0], frames + 1, *shape[2:])
        out[name] = (shape, dtype)
    return out


def _frames(specs: InputSpecs) -> int:
    """The clip's frame count: axis 1 of the first input of rank 3 or more (else of the first)."""
    shapes = [shape for shape, _ in specs.values()]
    clip = next((s for s in shapes if len(s) >= 3), shapes[0])
    return clip[1] if len(clip) > 1 else clip[0]


def _shapes_text(specs: InputSpecs) -> str:
    """``(B, 27, 17, 2)`` for one input, ``x (B, 27, 17, 2), t (B)`` for several."""
    def one(shape):
        return f"(B{''.join(f', {s}' for s in shape[1:])})"
    if len(specs) == 1:
        return one(next(iter(specs.values()))[0])
    return ", ".join(f"{name} {one(shape)}" for name, (shape, _) in specs.items())


def _evaluate(tracer: Any, nodes: list[fx.Node], specs: InputSpecs) -> dict[fx.Node, Any]:
    """Values of ``nodes`` (graph order) for zero inputs of ``specs``' shapes and dtypes (a
    parameter fixed while tracing has its default); runs the submodules on the way in eval mode,
    so no state (BatchNorm statistics) changes."""
    root: nn.Module = tracer.root
    env: dict[fx.Node, Any] = {}
    first = next((n for n in nodes[0].graph.nodes if n.op == "placeholder"), None) if nodes else None
    was_training = root.training
    root.eval()
    traced_call, traced_getattr = nn.Module.__call__, nn.Module.__getattr__
    nn.Module.__call__, nn.Module.__getattr__ = _MODULE_CALL, _MODULE_GETATTR  # fx's, while tracing
    try:
        with torch.no_grad():
            for n in nodes:
                args = map_arg(n.args, env.__getitem__)
                kwargs = map_arg(n.kwargs, env.__getitem__)
                if n.op == "placeholder":
                    spec = specs.get(n.target, specs.get(None) if n is first else None)
                    env[n] = torch.zeros(spec[0], dtype=spec[1]) if spec is not None else (n.args[0] if n.args else None)
                elif n.op == "get_attr":
                    env[n] = resolve(root, n.target)
                elif n.op == "call_function":
                    env[n] = n.target(*args, **kwargs)
                elif n.op == "call_method":
                    env[n] = getattr(args[0], n.target)(*args[1:], **kwargs)
                elif n.op == "call_module":
                    module = tracer.dropouts[n.target] if n.target in tracer.dropouts else root.get_submodule(n.target)
                    env[n] = module(*args, **kwargs)
    finally:
        nn.Module.__call__, nn.Module.__getattr__ = traced_call, traced_getattr
        root.train(was_training)
    return env


def resolve(root: nn.Module, target: str) -> Any:
    """The attribute at dotted path ``target`` of ``root`` (a submodule, parameter or buffer)."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _site(frame: types.FrameType | None) -> str:
    if frame is None:
        return "forward"
    file, line = frame.f_code.co_filename, frame.f_lineno
    return f"{file.rsplit('/', 1)[-1]}:{line} `{linecache.getline(file, line).strip()}`"


def specialise_branch(tracer: Any, node: fx.Node, frame: types.FrameType | None) -> bool | None:
    """Decide a branch whose condition is ``node``; None if it reads tensor values (the caller
    then fails as fx does). Raises :class:`ShapeNeeded` without an example shape, and
    :class:`TraceFailure` for a branch on the batch size or on an inner frame count."""
    nodes = [n for n in node.graph.nodes if n in ancestors(node)]
    if _reads_values(nodes):
        return None
    if tracer.example_inputs is None:
        raise ShapeNeeded(_site(frame))
    specs = tracer.example_inputs
    frames = _frames(specs)
    try:
        env = _evaluate(tracer, nodes, specs)
        batch_value = bool(_evaluate(tracer, nodes, _vary(specs, batch=2))[node])
    except Exception:  # cannot be computed apart from the model: fail as fx does
        return None
    value = bool(env[node])
    where = f"{_site(frame)}{_owner(frame)}"
    if batch_value != value:
        raise TraceFailure(
            f"the branch at {_full_site(frame)} depends on the batch size, which changes at run time, so "
            "hotpatch cannot decide it once. Fix: make the branch independent of the batch size "
            "(e.g. test x.dim() instead of x.shape[0])."
        )
    reads = _size_reads(node)
    # before the first block every tensor has the input's F frames (the cut comes after a block)
    after_block = any(n.op == "call_module" and n.target in tracer.blocks for n in nodes)
    try:
        frame_dependent = bool(_evaluate(tracer, nodes, _vary(specs, extra_frame=True))[node]) != value
    except Exception:  # the model accepts only its own F: judge the sizes read by their values
        frame_dependent = any(_multiple_of(env[r], frames) for r in reads if not _reads_rank(r))
    if after_block and frame_dependent:
        raise TraceFailure(
            f"the branch at {_full_site(frame)} depends on the frame count of tokens that a transformer "
            "block has computed; after the cut they have f frames, not F, so hotpatch cannot decide "
            "it once. Fix: branch on the input's shape at the top of forward, or on a fixed size."
        )
    taken = "taken" if value else "not taken"
    if not frame_dependent:
        detail = f"fixed for inputs of shape {_shapes_text(specs)}"
    else:
        detail = f"decided for F={frames}, the only clip length the patched model accepts"
    note = f"branch {where} {taken}: {detail}"
    if note not in tracer.notes:  # a branch in a loop, or `a and b` on one line, is noted once
        tracer.notes.append(note)
    return value


def _owner(frame: types.FrameType | None) -> str:
    owner = frame.f_locals.get("self") if frame is not None else None
    return f" in {type(owner).__name__}.{frame.f_code.co_name}" if owner is not None and frame else ""


def _full_site(frame: types.FrameType | None) -> str:
    if frame is None:
        return "forward"
    file, line = frame.f_code.co_filename, frame.f_lineno
    return f"{file}:{line}{_owner(frame)}: `{linecache.getline(file, line).strip()}`"


def shape_rank(tracer: Any, node: fx.Node) -> int | None:
    """Length of a shape (``x.shape``, ``x.size()``) computed from sizes alone, for iterating it;
    None for anything else. Ranks do not change with the batch or the clip length."""
    is_shape = (node.op == "call_function" and node.target is getattr and node.args[1] == "shape") or (
        node.op == "call_method" and node.target == "size" and len(node.args) == 1 and not node.kwargs
    )
    if not is_shape:
        return None
    nodes = [n for n in node.graph.nodes if n in ancestors(node)]
    if tracer.example_inputs is None:
        raise ShapeNeeded("a shape is iterated")
    return len(_evaluate(tracer, nodes, tracer.example_inputs)[node])


def check_input_shape(x: torch.Tensor, sizes: tuple[int, ...], name: str = "") -> torch.Tensor:
    """Guard at an input of a graph whose ``forward`` branched on the inputs' shapes: the
    branches were decided for inputs of shape (B, *sizes) only."""
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(sizes):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        which = f"its input {name} of shape" if name else "inputs of shape"
        raise InputShapeError(
            f"this model's forward branches on the input's shape, and hotpatch decided those "
            f"branches for {which} (B, {', '.join(map(str, sizes))}) (see hotpatch_plan); "
            f"got {got}. Pass inputs of that shape, or patch the original model again "
            "with example_input= of the shape you use."
        )
    return x


def guard_input(graph: fx.Graph, sizes: Sequence[int] | Mapping[Any, Sequence[int]]) -> None:
    """Insert :func:`check_input_shape` right after each input placeholder: ``sizes`` are the
    non-batch sizes of the one input, or a dict by input name (``None``: the first input)."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    by_name = sizes if isinstance(sizes, Mapping) else {None: sizes}
    for name, shape in by_name.items():
        x = placeholders[0] if name is None else next((n for n in placeholders if n.target == name), None)
        if x is None:
            continue
        shown = "" if len(by_name) == 1 else str(x.target)
        with graph.inserting_after(x):
            guard = graph.call_function(check_input_shape, (x, tuple(shape), shown))
        x.replace_all_uses_with(guard, delete_user_cb=lambda u, g=guard: u is not g)


torch.fx.wrap("check_input_shape")
