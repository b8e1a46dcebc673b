"""Stage 1: symbolic tracing that keeps every transformer block as one leaf call.

A *block* is found by structure, never by name: an element of an ``nn.ModuleList`` or
``nn.Sequential`` whose sub-tree owns an attention (an ``nn.MultiheadAttention``, or at least
two projection layers) and an MLP (two more), and that contains no smaller such element.

Code fx cannot follow as written is handled where that is safe: branches on the input's sizes
are decided for the example input (:mod:`hotpatch.engine.specialise`), and helper functions or
submodules that cannot be traced are kept as one opaque call (:mod:`hotpatch.engine.opaque`).
"""

from __future__ import annotations

import builtins
import dis
import inspect
import linecache
import logging
import math
import operator
import sys
import types
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import einops
import einops.layers.torch
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from hotpatch.errors import HotpatchError, TraceFailure
from hotpatch.engine import capture
from hotpatch.engine.capture import Concretiser, SizeValueError
from hotpatch.engine.opaque import Opaque
from hotpatch.engine.refusals import one_line
from hotpatch.engine.callsite import is_library, user_frame
from hotpatch.engine.loops import outline_loop_blocks
from hotpatch.engine.inputs import forward_parameters
from hotpatch.engine.specialise import InputSpecs, ShapeNeeded, guard_input, resolve, shape_rank, specialise_branch

log = logging.getLogger(__name__)

_PROJECTIONS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_EINOPS_FUNCS = (einops.rearrange, einops.repeat, einops.reduce)
_EINOPS_LAYERS = (einops.layers.torch.Rearrange, einops.layers.torch.Reduce)
_DROPOUT_FUNCS = {
    F.dropout: nn.Dropout,
    F.dropout1d: nn.Dropout1d,
    F.dropout2d: nn.Dropout2d,
    F.dropout3d: nn.Dropout3d,
    F.alpha_dropout: nn.AlphaDropout,
    F.feature_alpha_dropout: nn.FeatureAlphaDropout,
}


def owns_block_parts(module: nn.Module) -> bool:
    """True if ``module``'s sub-tree has attention and an MLP (counted by layer types)."""
    projections = 0
    has_mha = False
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention):
            has_mha = True
        elif isinstance(m, _PROJECTIONS):
            projections += 1
    return (has_mha and projections >= 2) or projections >= 4


def find_blocks(model: nn.Module, leaf_modules: Sequence[type] = ()) -> list[str]:
    """Qualified names of the transformer blocks of ``model``, in registration order.

    ``leaf_modules`` are classes the user declares to be blocks; their instances are
    always blocks and are never searched inside.
    """
    leaf_types = tuple(leaf_modules)
    found: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            qual = f"{prefix}{name}"
            if leaf_types and isinstance(child, leaf_types):
                found.append(qual)
                continue
            in_container = isinstance(module, (nn.ModuleList, nn.Sequential))
            if in_container and owns_block_parts(child) and not _has_inner_block(child):
                found.append(qual)
                continue
            visit(qual + ".", child)

    if leaf_types and isinstance(model, leaf_types):
        return [""]
    visit("", model)
    return found


def _has_inner_block(module: nn.Module) -> bool:
    for parent in module.modules():
        if isinstance(parent, (nn.ModuleList, nn.Sequential)):
            if any(owns_block_parts(c) for c in parent.children()):
                return True
    return False


def _is_training_switch(module: nn.Module) -> bool:
    """A childless, non-torch.nn module whose forward reads ``self.training`` (DropPath)."""
    if next(module.children(), None) is not None or type(module).__module__.startswith("torch."):
        return False
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return "self.training" in source


def _traced_len(obj: Any) -> Any:
    if isinstance(obj, fx.Proxy):
        return obj.tracer.create_proxy("call_function", builtins.len, (obj,), {})
    return builtins.len(obj)


def _is_assert_jump(frame: types.FrameType) -> bool:
    """True if the frame is at the conditional jump of an ``assert`` statement."""
    instructions = list(dis.get_instructions(frame.f_code))
    for i, ins in enumerate(instructions):
        if ins.offset == frame.f_lasti:
            following = instructions[i + 1] if i + 1 < len(instructions) else None
            targets = [following] + [j for j in instructions if j.offset == ins.argval]
            return any(t is not None and t.opname == "LOAD_ASSERTION_ERROR" for t in targets)
    return False


def _frame_site(frame: types.FrameType) -> str:
    file, line = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(file, line).strip()
    owner = frame.f_locals.get("self")
    where = f" in {type(owner).__name__}.{frame.f_code.co_name}" if owner is not None else ""
    return f"{file}:{line}{where}: `{text}`"


class WritableProxy(fx.Proxy):
    """A proxy that records item assignment (``x[:, idx] += e``, ``x[mask] = 0``) as an
    ``operator.setitem`` node (later reads of ``x`` come after it in the graph, as in eager), and
    that Python may turn into a number where that is safe (``int(t)``, ``float(c) ** 0.5``: see
    :mod:`hotpatch.engine.capture`)."""

    def __setitem__(self, index: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})

    def __int__(self) -> int:
        return int(self.tracer.capture.value(self))

    def __float__(self) -> float:
        return float(self.tracer.capture.value(self))

    def __len__(self) -> int:  # len() in library code (the model's own calls are recorded: _traced_len)
        rank = shape_rank(self.tracer, self.node)
        return rank if rank is not None else self.tracer.capture.length(self)

    def __getattr__(self, k: str) -> Any:
        if k.startswith("__array"):  # NumPy probes these: a proxy is no array
            raise AttributeError(k)
        if k in ("type", "index") and isinstance(self, WritableAttribute) and self.attr == "device":
            return self.tracer.capture.device_attribute(self, k)
        return WritableAttribute(self, k)


class WritableAttribute(fx.proxy.Attribute, WritableProxy):
    """fx's lazy ``x.shape`` / ``x.mean`` attribute proxy, with :class:`WritableProxy`'s methods."""


WritableProxy.__name__ = WritableProxy.__qualname__ = "Proxy"  # fx's errors name the type: keep its name
WritableAttribute.__name__ = WritableAttribute.__qualname__ = "Attribute"


class HotpatchTracer(fx.Tracer):
    """fx tracer for VPTs: blocks are leaves, einops and ``len`` are recorded as calls,
    shape asserts are assumed to hold, item
    assignment is recorded (:class:`WritableProxy`), functional dropout becomes an ``nn.Dropout`` module
    (so the patched model still follows ``.train()``/``.eval()``), DropPath-like
    modules that read ``self.training`` stay opaque calls, branches on the input's sizes are
    decided for the example inputs (``example_inputs``: shape and dtype by input name; a plain
    ``example_shape`` is one input's), shapes are iterated by their rank, and the calls listed in
    ``opaque`` are recorded as single nodes.
    """

    def __init__(
        self,
        blocks: Iterable[str],
        leaf_types: Sequence[type] = (),
        example_shape: Sequence[int] | None = None,
        opaque: Opaque | None = None,
        example_inputs: InputSpecs | None = None,
    ) -> None:
        super().__init__(autowrap_modules=(math,), autowrap_functions=_EINOPS_FUNCS)
        self.blocks = set(blocks)
        self.leaf_types = tuple(leaf_types)
        if example_inputs is None and example_shape is not None:
            example_inputs = {None: (tuple(example_shape), torch.float32)}  # the first input, whatever its name
        self.example_inputs = dict(example_inputs) if example_inputs is not None else None
        self.opaque = opaque if opaque is not None else Opaque()
        self.dropouts: dict[str, nn.Module] = {}
        self.dropout_training: list[bool] = []
        self.notes: list[str] = []  # decisions taken while tracing (specialised branches)
        self.capture = Concretiser(self)  # numbers Python needs, from the example input

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.blocks or module_qualified_name in self.opaque.modules:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        prefix = module_qualified_name + "."
        if any(b.startswith(prefix) for b in self.blocks):
            return False  # a container of blocks (even from torch.nn) must be traced through
        return _is_training_switch(m) or super().is_leaf_module(m, module_qualified_name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return WritableProxy(node, self)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        """einops' ``Rearrange`` / ``Reduce`` layers are recorded as the function call they make
        (``rearrange(x, pattern, **axes_lengths)``), so their sizes are seen and remapped like
        those of a functional call; their recipe lookup by ``x.ndim`` cannot run on a proxy."""
        if isinstance(m, _EINOPS_LAYERS) and len(args) == 1 and not kwargs and isinstance(args[0], fx.Proxy):
            if isinstance(m, einops.layers.torch.Reduce):
                return self.create_proxy("call_function", einops.reduce, (args[0], m.pattern, m.reduction),
                                         dict(m.axes_lengths))
            return self.create_proxy("call_function", einops.rearrange, (args[0], m.pattern), dict(m.axes_lengths))
        return super().call_module(m, forward, args, kwargs)

    def to_bool(self, obj: fx.Proxy) -> bool:
        frame = user_frame(sys._getframe(1))
        if frame is not None and _is_assert_jump(frame):
            return True  # a shape assert: the probes check the real shapes later
        value = specialise_branch(self, obj.node, frame)
        if value is None:
            return super().to_bool(obj)
        return value

    def iter(self, obj: fx.Proxy) -> Iterator:
        """``*_, c = x.shape`` and ``for s in x.size()``: a shape's length is the input's rank;
        ``map(f, qkv.chunk(3))`` gives three pieces; anything else (``*x.shape[:2]``, ``t.tolist()``,
        the rows of a tensor) as many items as it has for the example, if that count is fixed: the
        items stay proxies."""
        rank = shape_rank(self, obj.node)
        if rank is None:
            rank = _chunks(obj.node)
        if rank is None:
            rank = self.capture.length(obj)
        return iter([obj[i] for i in range(rank)])

    def create_arg(self, a: Any) -> Any:
        return super().create_arg(capture.as_dtype(a))  # dtype=int, np.int32: torch dtypes

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # type: ignore[override]
        moved = capture.cuda_to_input_device(self, kind, target, args, kwargs)
        if moved is not None:  # .cuda(), device="cuda": the input's device, so tracing works on a CPU
            kind, target, args, kwargs = moved
        if kind == "call_function" and target in _DROPOUT_FUNCS:
            bound = inspect.signature(target).bind(*args, **kwargs)
            bound.apply_defaults()
            self.dropout_training.append(bool(bound.arguments["training"]))
            qualname = f"hotpatch_dropout{len(self.dropouts)}"
            self.dropouts[qualname] = _DROPOUT_FUNCS[target](p=float(bound.arguments["p"]))
            return super().create_proxy("call_module", qualname, (bound.arguments["input"],), {})
        return super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)

    def trace(self, root, concrete_args=None):  # type: ignore[override]
        namespaces = _forward_globals(root)
        replaced: list[tuple[Any, str, Any]] = []  # (namespace or class, name, original)
        for g in namespaces:
            if "len" not in g:
                replaced.append((g, "len", _MISSING))
                g["len"] = _traced_len
        for d, name, value in capture.patched_namespaces(self.capture, namespaces):
            replaced.append((d, name, d.get(name, _MISSING)))
            d[name] = value
        for name, method in capture.tensor_methods(self):
            replaced.append((torch.Tensor, name, getattr(torch.Tensor, name)))
            setattr(torch.Tensor, name, method)
        try:
            with self.opaque.wrapped(namespaces):
                return super().trace(root, concrete_args)
        finally:
            for where, name, value in reversed(replaced):
                if isinstance(where, dict):
                    if value is _MISSING:
                        where.pop(name, None)
                    else:
                        where[name] = value
                else:
                    setattr(where, name, value)


_MISSING = object()


def _chunks(node: fx.Node) -> int | None:
    """The number of pieces of ``t.chunk(n)`` / ``torch.chunk(t, n)`` with a literal n."""
    if (node.op == "call_method" and node.target == "chunk") or (node.op == "call_function" and node.target is torch.chunk):
        n = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
        return n if type(n) is int else None
    return None


def _forward_globals(root: nn.Module) -> list[dict]:
    seen: dict[int, dict] = {}
    for m in root.modules():
        for cls in type(m).__mro__:
            fn = cls.__dict__.get("forward")
            g = getattr(fn, "__globals__", None)
            if g is not None and not g.get("__name__", "").startswith("torch."):
                seen[id(g)] = g
    return list(seen.values())


def concrete_flags(model: nn.Module, inputs: Sequence[str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Split ``forward``'s parameters into traced inputs and flags fixed to their defaults
    through ``concrete_args`` (``return_rep=False``, ``index=None`` ...). The inputs are
    ``inputs`` if given (the parameters an example gives), else those without a default."""
    params = forward_parameters(model)
    if inputs is None:
        inputs = [p.name for p in params if p.default is inspect.Parameter.empty]
    flags = {p.name: p.default for p in params if p.name not in inputs}
    return [p.name for p in params if p.name in inputs], flags


def trace(
    model: nn.Module,
    leaf_modules: Sequence[type] = (),
    example_shape: Sequence[int] | None = None,
    *,
    example_inputs: InputSpecs | None = None,
) -> tuple[fx.GraphModule, list[str]]:
    """Trace ``model`` (already in eval mode) with blocks as leaves.

    ``example_shape`` is the shape of the input the patch is built for; a model with several
    inputs gives ``example_inputs`` instead (name -> (shape, dtype), in ``forward``'s order):
    those parameters are traced as inputs, the others fixed to their defaults. Python branches
    on the inputs' rank or fixed sizes are decided with them (without them such a branch raises
    :class:`ShapeNeeded`). A free function or a submodule that fx cannot trace is retried as
    one opaque call (see :mod:`hotpatch.engine.opaque`). The decisions are listed in
    ``graph_module.meta["hotpatch_notes"]``. The graph's ``forward`` has the model's parameter
    names, so it can be called with keywords as the model is.

    Returns ``(graph_module, block_names)``. Raises :class:`TraceFailure`
    naming the offending source line when tracing is impossible.
    """
    blocks = find_blocks(model, leaf_modules)
    inputs, flags = concrete_flags(model, list(example_inputs) if example_inputs is not None else None)
    if example_inputs is None and len(inputs) != 1:
        raise TraceFailure(
            f"{type(model).__name__}.forward takes {len(inputs)} required inputs {inputs}; pass one example of "
            "each as example_input=(a, b, ...) or a dict by name (CLI: --example-input inputs.pt), or give "
            "the others default values."
        )
    if example_inputs is None and example_shape is not None:
        example_inputs = {inputs[0]: (tuple(example_shape), torch.float32)}
    opaque = Opaque()
    while True:
        tracer = HotpatchTracer(blocks, leaf_modules, opaque=opaque, example_inputs=example_inputs)
        try:
            graph = _run_tracer(tracer, model, flags)
            break
        except TraceFailure as failure:
            if not opaque.learn(failure.__cause__ or failure, model, blocks):
                raise
    train_tracer = HotpatchTracer(blocks, leaf_modules, opaque=opaque, example_inputs=example_inputs)
    model.train()
    try:
        _run_tracer(train_tracer, model, flags)
    except TraceFailure:
        train_tracer = None
    finally:
        model.eval()
    _decide_dropouts(graph, tracer, train_tracer)
    blocks, loop_notes = outline_loop_blocks(model, graph, blocks, tracer.dropouts)
    _keep_parameter_names(graph, model)
    notes = [*opaque.notes, *loop_notes, *tracer.notes, *tracer.capture.notes]
    if (tracer.notes or tracer.capture.used) and example_inputs is not None:  # decided for these shapes
        sizes = {name: shape[1:] for name, (shape, _) in example_inputs.items()}
        guard_input(graph, sizes)
        shown = ", ".join(f"(B, {', '.join(map(str, s))})" if len(sizes) == 1 else f"{k} (B, {', '.join(map(str, s))})"
                          for k, s in sizes.items())
        what = {(True, False): "the branches were", (False, True): "Python numbers were",
                (True, True): "the branches and Python numbers were"}[bool(tracer.notes), tracer.capture.used]
        notes.append(f"inputs are checked to be {shown}: {what} decided for them")
    gm = build_graph_module(model, graph, tracer.dropouts, type(model).__name__ + "Traced")
    gm.meta["hotpatch_notes"] = notes
    gm.meta["hotpatch_opaque_functions"] = list(opaque.functions)
    return gm, blocks


def _keep_parameter_names(graph: fx.Graph, model: nn.Module) -> None:
    """fx renames a parameter fixed through ``concrete_args`` (``mask`` -> ``mask_1``); give every
    placeholder back the name of its ``forward`` parameter, so keyword calls work as on the model."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    params = forward_parameters(model)
    if len(placeholders) == len(params):
        for node, p in zip(placeholders, params):
            node.target = p.name


def _run_tracer(tracer: HotpatchTracer, model: nn.Module, flags: dict[str, Any]) -> fx.Graph:
    try:
        with warnings.catch_warnings():  # fx's own warnings are noise to the user here
            warnings.simplefilter("ignore")
            return tracer.trace(model, concrete_args=flags or None)
    except (ShapeNeeded, HotpatchError):
        raise
    except Exception as exc:  # fx raises many types; all become one clear error
        raise TraceFailure(_trace_failure_message(model, exc, tracer.blocks)) from exc


def _trace_failure_message(model: nn.Module, exc: Exception, blocks: Iterable[str] = ()) -> str:
    tb = exc.__traceback__
    site = None
    owner = None
    while tb is not None:
        frame = tb.tb_frame
        if not is_library(frame.f_code.co_filename):
            site = frame
        tb = tb.tb_next
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, SizeValueError):  # names the line, the construct and the fix itself
        return one_line(f"could not trace {type(model).__name__} with torch.fx: {reason}")
    msg = f"could not trace {type(model).__name__} with torch.fx: {one_line(reason, 200).rstrip('.')}"
    if site is not None:
        msg += f"; at {_frame_site(site)}"
        owner = site.f_locals.get("self")
    holds_blocks = isinstance(owner, nn.Module) and any(
        b == q or b.startswith(q + ".") for q, m in model.named_modules() if m is owner for b in blocks
    )
    if holds_blocks:
        msg += (
            f". Fix: make that line independent of tensor values (shape asserts are fine); "
            f"{type(owner).__name__} holds transformer blocks, so it cannot be kept as one opaque call."
        )
    elif isinstance(owner, nn.Module) and owner is not model:
        msg += (
            f". Fix: pass leaf_modules=[{type(owner).__name__}] so hotpatch keeps that module "
            "as one opaque call, or make that line independent of tensor values."
        )
    else:
        msg += (
            ". Fix: make that line independent of tensor values (shape asserts are fine), or "
            "move it into a submodule that holds no transformer block (hotpatch keeps a submodule "
            "it cannot trace as one opaque call)."
        )
    return one_line(msg)


def _decide_dropouts(
    graph: fx.Graph, tracer: HotpatchTracer, train_tracer: HotpatchTracer | None
) -> None:
    """Keep a functional dropout as a module only if it follows ``self.training``.

    A call whose ``training`` argument is the same in the eval and the train trace is a
    constant: ``training=False`` is dropped (identity); ``training=True`` stays a dropout that
    is always active, as in the original.
    """
    names = list(tracer.dropouts)
    in_train = train_tracer.dropout_training if train_tracer is not None else None
    for i, name in enumerate(names):
        eval_flag = tracer.dropout_training[i]
        train_flag = in_train[i] if in_train is not None and len(in_train) == len(names) else True
        if eval_flag == train_flag:
            node = next(n for n in graph.nodes if n.op == "call_module" and n.target == name)
            if eval_flag:  # always on: keep as a module that stays in train mode
                tracer.dropouts[name] = _AlwaysTrain(tracer.dropouts[name])
            else:
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                del tracer.dropouts[name]


class _AlwaysTrain(nn.Module):
    """Wraps a dropout module that the original called with ``training=True``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner.train()
        return self.inner(x)


def build_graph_module(
    root: nn.Module, graph: fx.Graph, new_modules: dict[str, nn.Module], class_name: str
) -> fx.GraphModule:
    """A GraphModule whose module tree, parameters and buffers are exactly ``root``'s (same
    qualified names, same container types, same state_dict keys) plus ``new_modules``."""
    targets: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            if node.target in new_modules:
                targets[node.target] = new_modules[node.target]
            else:
                targets[node.target] = resolve(root, node.target)
    gm = fx.GraphModule(targets, graph, class_name=class_name)
    gm._modules.clear()
    gm._modules.update(root._modules)
    gm._modules.update(new_modules)
    gm._parameters.clear()
    gm._parameters.update(root._parameters)
    gm._buffers.clear()
    gm._buffers.update(root._buffers)
    gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
    for node in graph.nodes:  # tensor constants fx created on the root during tracing
        if node.op == "get_attr" and "." not in node.target and not _has_attr(gm, node.target):
            value = targets[node.target]
            if isinstance(value, torch.Tensor):
                gm.register_buffer(node.target, value, persistent=False)
            else:
                setattr(gm, node.target, value)
        elif node.op == "get_attr" and node.target.startswith("_tensor_constant") and node.target in gm._buffers:
            gm._non_persistent_buffers_set.add(node.target)  # one fx's deepcopy registered: still not state
    gm.training = root.training
    return gm


def _has_attr(gm: nn.Module, name: str) -> bool:
    return name in gm._modules or name in gm._parameters or name in gm._buffers
