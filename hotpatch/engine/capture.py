"""Capture by running: Python in ``forward`` that needs a number gets the example's value.

torch.fx records tensor ops on proxies, but Python that needs an actual number cannot run on a
proxy: ``m = np.ones(seq_len); m[::5] = 0``, ``range(t)``, ``int(c ** 0.5)``, a list of ints
for ``torch.tensor``, a table filled in a loop. Here such a proxy is given the value it has for
the example input, where that value is the same for every input the patched model accepts:

* it must not depend on the input's values (that stays a
  :class:`~hotpatch.errors.TraceFailure` that says so);
* it must not change with the batch size (the patched model takes any batch): a value is
  computed for the example and for twice its batch, and must agree;
* it must not be the frame count of tokens a transformer block computed (after the cut those
  have f frames, not F).

Everything else a patched model sees is fixed (its inputs are checked to have the example's
sizes), so what Python computes from these numbers is a constant of the graph, made for all F
frames; after a cut the rewrite gathers a constant's kept frames like any frame-indexed constant.
Whatever stays a tensor op stays symbolic, so the passes remap it. Values are computed lazily,
in graph order and once each (:class:`Evaluator`); the code before the first block is cheap.

Also here: torch factory functions in every calling form (``torch.ones(b, f)``,
``torch.zeros(B, L, C)``, ``torch.tensor([b, f])``) are recorded as calls; Python and NumPy dtypes
(``dtype=int``, ``np.int32``) become torch dtypes; ``.cuda()`` and ``device="cuda"`` become moves to
the device of the model's input, so a model traces on a CPU machine and the patched model runs
where its input is.
"""

from __future__ import annotations

import builtins
import linecache
import operator
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_aggregate, map_arg

from hotpatch.engine.callsite import user_frame
from hotpatch.engine.specialise import ShapeNeeded

_MODULE_CALL = nn.Module.__call__  # the originals: fx (and this module) replace them while tracing
_MODULE_GETATTR = nn.Module.__getattr__
_TENSOR_METHODS = {name: getattr(torch.Tensor, name) for name in ("cuda", "to")}
_IS_TENSOR = torch.is_tensor
_SIZE_ATTRS = ("shape", "ndim")
META_ATTRS = ("shape", "ndim", "device", "dtype", "is_cuda", "layout", "is_nested", "is_sparse", "is_quantized",
              "is_meta")  # attributes that read no tensor values
SIZE_METHODS = ("size", "dim", "ndimension", "numel")
_DETERMINISTIC = ("zeros", "ones", "empty", "full", "arange", "range", "eye", "linspace", "logspace",
                  "tensor", "as_tensor", "tril_indices", "triu_indices")
_RANDOM = ("rand", "randn", "randint", "randperm", "normal", "bernoulli")
FACTORIES = tuple(getattr(torch, name) for name in _DETERMINISTIC + _RANDOM)
"""The torch functions recorded as calls when a size argument is a proxy."""
_PY_DTYPES = {int: torch.int64, float: torch.float64, bool: torch.bool, complex: torch.complex128}


class SizeValueError(TypeError):
    """Python needed a number that cannot be fixed once for the patched model. A TypeError, so
    that torch's argument parser, which probes ``__index__``, treats the proxy as before."""


def as_dtype(a: Any) -> Any:
    """``int`` / ``float`` / ``np.int32`` / ``np.dtype("f4")`` as the torch dtype they stand for
    (``int`` is int64 and ``float`` float64, as torch reads them); anything else unchanged."""
    if isinstance(a, type) and a in _PY_DTYPES:
        return _PY_DTYPES[a]
    if isinstance(a, np.dtype) or (isinstance(a, type) and issubclass(a, np.generic)):
        return torch.from_numpy(np.empty(0, dtype=a)).dtype
    return a


def is_cuda(a: Any) -> bool:
    """A device argument naming CUDA (``"cuda"``, ``"cuda:0"``, ``torch.device("cuda")``)."""
    if isinstance(a, str):
        return a.split(":")[0] == "cuda"
    return isinstance(a, torch.device) and a.type == "cuda"


def site(frame: types.FrameType | None) -> str:
    """``file.py:12 `the line``` of a user frame."""
    if frame is None:
        return "forward"
    file, line = frame.f_code.co_filename, frame.f_lineno
    owner = frame.f_locals.get("self")
    where = f" in {type(owner).__name__}.{frame.f_code.co_name}" if owner is not None else ""
    code = linecache.getline(file, line).strip()
    code = code if len(code) <= 90 else code[:87] + "..."
    return f"{file.rsplit('/', 1)[-1]}:{line}{where} `{code}`"


class Evaluator:
    """Values of a graph that is still being traced, for zero inputs of the example's shapes with
    ``batch`` times its batch: nodes are run in graph order, once each (in-place writes land as
    they do in eager mode), submodules in eval mode, so no state changes."""

    def __init__(self, tracer: Any, batch: int) -> None:
        self.tracer, self.batch = tracer, batch
        self.env: dict[fx.Node, Any] = {}
        self.last: fx.Node | None = None

    def value(self, node: fx.Node) -> Any:
        if node in self.env:
            return self.env[node]
        graph = node.graph
        n = next(iter(graph.nodes)) if self.last is None else self.last.next
        root: nn.Module = self.tracer.root
        was_training = root.training
        traced_call, traced_getattr = nn.Module.__call__, nn.Module.__getattr__
        traced_methods = {name: getattr(torch.Tensor, name) for name in _TENSOR_METHODS}
        nn.Module.__call__, nn.Module.__getattr__ = _MODULE_CALL, _MODULE_GETATTR  # fx's, while tracing
        for name, method in _TENSOR_METHODS.items():
            setattr(torch.Tensor, name, method)
        root.eval()
        try:
            with torch.no_grad():
                while node not in self.env and n.op != "root":
                    self.env[n] = self._run(n, root)
                    self.last, n = n, n.next
        finally:
            nn.Module.__call__, nn.Module.__getattr__ = traced_call, traced_getattr
            for name, method in traced_methods.items():
                setattr(torch.Tensor, name, method)
            root.train(was_training)
        return self.env[node]

    def _run(self, n: fx.Node, root: nn.Module) -> Any:
        if n.op != "placeholder":
            return run_node(n, self.env, root, getattr(self.tracer, "dropouts", {}))
        specs = self.tracer.example_inputs or {}
        first = next(iter(n.graph.nodes))
        spec = specs.get(n.target, specs.get(None) if n is first else None)
        if spec is None:
            return n.args[0] if n.args else None
        shape, dtype = spec
        return torch.zeros((self.batch * shape[0], *shape[1:]), dtype=dtype)


def run_node(n: fx.Node, env: dict[fx.Node, Any], root: nn.Module, modules: dict[str, nn.Module] | None = None) -> Any:
    """Run one node (not a placeholder) of a graph of ``root`` on the values of its inputs in
    ``env``; ``modules`` are call targets that are not (yet) submodules of ``root``."""
    args = map_arg(n.args, env.__getitem__)
    kwargs = map_arg(n.kwargs, env.__getitem__)
    if n.op == "get_attr":
        obj: Any = root
        for part in n.target.split("."):
            obj = getattr(obj, part)
        return obj
    if n.op == "call_function":
        return n.target(*args, **kwargs)
    if n.op == "call_method":
        return getattr(args[0], n.target)(*args[1:], **kwargs)
    if n.op == "call_module":
        module = modules[n.target] if modules and n.target in modules else root.get_submodule(n.target)
        return module(*args, **kwargs)
    return None


class Concretiser:
    """Gives a proxy the value it has for the example input, when that is safe (module docstring).
    One per trace; every value it hands out becomes one note (per source line)."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self.evaluators: dict[int, Evaluator] = {}
        self._reads_values: dict[fx.Node, bool] = {}
        self._after_block: dict[fx.Node, bool] = {}
        self.sites: dict[str, str] = {}  # source line -> note (values that count frames)
        self.used = False  # whether any value was handed out (then the inputs' sizes are checked)

    def value(self, proxy: fx.Proxy) -> Any:
        """The value of ``proxy`` for the example input. Raises :class:`SizeValueError` where
        that value would not hold for every input of the patched model."""
        node = proxy.node
        frame = user_frame(sys._getframe(1))
        where = site(frame)
        if self.reads_values(node):
            raise SizeValueError(
                f"{where} needs the value of `{node.name}`, which depends on the input's values, not "
                "only on its shape; hotpatch records tensor operations, not Python on their values. "
                "Fix: keep that computation in torch ops, or move it into a submodule that holds no "
                "transformer block (hotpatch keeps such a submodule as one opaque call)."
            )
        after_block = self.after_block(node)
        if self.tracer.example_inputs is None:
            raise ShapeNeeded(where)
        one = self.evaluator(1).value(node)
        two = self.evaluator(2).value(node)
        if not _same(one, two):
            raise SizeValueError(
                f"{where} uses the batch size as a Python value (here {_shown(one)}); a patched model "
                "takes any batch size, so hotpatch cannot fix that value once. Fix: build it with torch "
                "from x.shape[0] (torch.ones(b, f), x.new_zeros(b, t)), or for one sample and expand it."
            )
        frames = _frames(self.tracer.example_inputs)
        if after_block and _counts_frames(one, frames):
            raise SizeValueError(
                f"{where} uses a size of tokens that a transformer block computed ({_shown(one)}, a "
                f"multiple of the clip's {frames} frames) as a Python value; after the cut those tokens "
                "have f frames, not F. Fix: read the size from the input at the top of forward, or keep "
                "the computation in torch ops on the tokens."
            )
        self.used = True
        if frame is not None and where not in self.sites and _counts_frames(one, frames):
            self.sites[where] = (
                f"{where} uses the clip's {frames} frames as a Python number: what it makes is a "
                f"constant for F={frames} frames (after a cut, its kept frames are gathered)"
            )
        return one

    def length(self, proxy: fx.Proxy) -> int:
        """How many items iterating ``proxy`` gives (a shape or a slice of it, a tuple, a tensor's
        first axis): that count must be the same for every input of the patched model, the items
        themselves stay proxies (``batch, seq, *_ = *x.shape[:2], ...``)."""
        node = proxy.node
        where = site(user_frame(sys._getframe(1)))
        if self.tracer.example_inputs is None:
            raise ShapeNeeded(where)
        one, two = (_length(self.evaluator(b).value(node)) for b in (1, 2))
        if one is None or one != two:
            raise SizeValueError(
                f"{where} iterates `{node.name}`, whose length {'' if one is None else f'({one}) '}changes with the "
                "batch size; a patched model takes any batch size. Fix: iterate a fixed-size axis, or keep the "
                "computation in batched torch ops."
            )
        frames = _frames(self.tracer.example_inputs)
        value = self.evaluator(1).value(node)
        tensors = isinstance(value, torch.Tensor) or (
            isinstance(value, (tuple, list)) and bool(value) and isinstance(value[0], torch.Tensor))
        if tensors and _counts_frames(one, frames):
            raise SizeValueError(  # before any block it would be unrolled F times: a submodule stays opaque instead
                f"{where} iterates over the {one} frames of a tensor; hotpatch records tensor operations, and "
                "after the cut the tokens have f frames, not F. Fix: keep the computation in torch ops over the "
                "frame axis, or move the loop into a submodule without transformer blocks (kept as one call)."
            )
        self.used = True
        return one

    def device_attribute(self, device: fx.Proxy, name: str) -> Any:
        """``x.device.type`` (or ``.index``): the device the model is traced on; Python that reads
        it (``autocast(x.device.type)``, ``if x.device.type == "cuda"``) is decided for that device."""
        value = getattr(self.value(device), name)
        where = site(user_frame(sys._getframe(1)))
        if where not in self.sites:
            self.sites[where] = f"{where} reads the device ({value!r}) while tracing: Python that depends on it is decided for it"
        return value

    def concrete(self, value: Any) -> Any:
        """``value`` with every proxy in it (also inside tuples, lists, dicts) replaced by its
        example value."""
        if isinstance(value, fx.Proxy):
            return self.value(value)
        if isinstance(value, (tuple, list)):
            return type(value)(self.concrete(v) for v in value) if type(value) in (tuple, list) else value
        if isinstance(value, dict):
            return {k: self.concrete(v) for k, v in value.items()}
        return value

    def evaluator(self, batch: int) -> Evaluator:
        if batch not in self.evaluators:
            self.evaluators[batch] = Evaluator(self.tracer, batch)
        return self.evaluators[batch]

    def reads_values(self, node: fx.Node) -> bool:
        """True if ``node`` depends on an input's values (not only on its shape, dtype, device)."""
        return _memo(self._reads_values, node, _reads_values_here)

    def after_block(self, node: fx.Node) -> bool:
        """True if ``node`` is computed from the output of a transformer block."""
        blocks = self.tracer.blocks

        def here(n: fx.Node, inputs: list[bool]) -> bool:
            return (n.op == "call_module" and n.target in blocks) or any(inputs)

        return _memo(self._after_block, node, here)

    @property
    def notes(self) -> list[str]:
        return list(self.sites.values())


_LENDS_METADATA = ("new_zeros", "new_ones", "new_empty", "new_full", "new_tensor")  # x.new_zeros(...): x's dtype, device
_LIKE = tuple(getattr(torch, f"{name}_like") for name in ("zeros", "ones", "empty", "full", "rand", "randn", "randint"))


def value_inputs(n: fx.Node) -> list[fx.Node]:
    """The inputs whose *values* ``n`` reads: none for a read of sizes or metadata (``x.shape``,
    ``x.size(1)``, ``len(x)``, ``x.device``, ``x.dtype``); not the tensor that only lends its shape,
    dtype or device (``x.new_zeros(b, t)``, ``torch.ones_like(x)``, ``t.type_as(x)``, ``t.to(x)``)."""
    if n.op in ("placeholder", "get_attr"):
        return []
    if n.op == "call_function" and n.target is getattr and n.args[1] in META_ATTRS:
        return []
    if (n.op == "call_method" and n.target in SIZE_METHODS) or (n.op == "call_function" and n.target is builtins.len):
        return []
    if (n.op == "call_method" and n.target in _LENDS_METADATA) or (n.op == "call_function" and n.target in _LIKE):
        return _nodes((n.args[1:], n.kwargs))
    if n.op == "call_method" and n.target in ("type_as", "to"):
        return _nodes(n.args[:1])
    return list(n.all_input_nodes)


def writes(n: fx.Node) -> fx.Node | None:
    """The tensor ``n`` writes into (``t[i] = v``, ``t.copy_(v)``, ``t.add_(v)``), or None."""
    if n.op == "call_function" and n.target is operator.setitem and isinstance(n.args[0], fx.Node):
        return n.args[0]
    if n.op == "call_method" and str(n.target).endswith("_") and isinstance(n.args[0], fx.Node):
        return n.args[0]
    return None


def data_dependence(graph: fx.Graph) -> dict[fx.Node, bool]:
    """Which nodes depend on the inputs' values, not only on their sizes and metadata. A tensor
    made from sizes and then written with such values (``buf[:, :2] = x``) depends on them too."""
    dep: dict[fx.Node, bool] = {}
    for n in graph.nodes:
        dep[n] = n.op == "placeholder" or any(dep.get(a, False) for a in value_inputs(n))
        target = writes(n)
        if target is not None and dep[n]:
            dep[target] = True
    return dep


def _nodes(args: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    map_arg(args, lambda a: found.append(a) or a)
    return found


def _reads_values_here(n: fx.Node, inputs: list[bool]) -> bool:
    if n.op == "placeholder":
        return True
    value_reads = set(value_inputs(n))
    return any(dep for a, dep in zip(n.all_input_nodes, inputs) if a in value_reads) or any(
        writes(w) is n and _written_with_values(w) for w in n.users)


def _written_with_values(w: fx.Node) -> bool:
    """A write whose value comes (directly) from a placeholder-derived tensor: checked one level
    deep at trace time; the analysis' :func:`data_dependence` follows the whole graph."""
    stack, seen = list(w.all_input_nodes[1:]), set()
    while stack:
        a = stack.pop()
        if a in seen:
            continue
        seen.add(a)
        if a.op == "placeholder":
            return True
        stack.extend(value_inputs(a))
    return False


def _memo(memo: dict[fx.Node, bool], node: fx.Node, here: Callable[[fx.Node, list[bool]], bool]) -> bool:
    """A property of ``node`` computed from the same property of its inputs, once per node
    (iteratively: graphs can be deeper than Python's recursion limit)."""
    stack = [node]
    while stack:
        n = stack[-1]
        if n in memo:
            stack.pop()
            continue
        missing = [a for a in n.all_input_nodes if a not in memo]
        if missing:
            stack.extend(missing)
            continue
        memo[n] = here(n, [memo[a] for a in n.all_input_nodes])
        stack.pop()
    return memo[node]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b)) and np.shape(a) == np.shape(b)
    try:
        return bool(a == b)
    except Exception:
        return False


def _length(v: Any) -> int | None:
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return v.shape[0] if v.ndim else None
    return len(v) if isinstance(v, (tuple, list, torch.Size)) else None


def _shown(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _frames(specs: Any) -> int:
    shapes = [shape for shape, _ in specs.values()]
    clip = next((s for s in shapes if len(s) >= 3), shapes[0])
    return clip[1] if len(clip) > 1 else clip[0]


def _counts_frames(v: Any, frames: int) -> bool:
    """An int (or a shape's entry, or a tensor's size) that is a positive multiple of F."""
    if isinstance(v, (torch.Tensor, np.ndarray)):
        sizes = list(v.shape)
    elif isinstance(v, (tuple, list, torch.Size)):
        sizes = [s for s in v if isinstance(s, int)]
    else:
        sizes = [v]
    return any(isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % frames == 0 for s in sizes)


# ----------------------------------------------------------------- calls recorded while tracing


def _find_proxy(args: Any, kwargs: Any) -> fx.Proxy | None:
    found: list[fx.Proxy] = []
    map_aggregate((args, kwargs), lambda v: found.append(v) if isinstance(v, fx.Proxy) else None)
    return found[0] if found else None


def recorded_factory(fn: Callable) -> Callable:
    """``fn`` (a torch factory) recorded as one call when any argument is a proxy, in whatever
    form it is called (``torch.ones(b, f)`` as well as ``torch.ones((b, f))``); run as is otherwise."""

    def call(*args: Any, **kwargs: Any) -> Any:
        proxy = _find_proxy(args, kwargs)
        if proxy is None:
            return fn(*args, **kwargs)
        return proxy.tracer.create_proxy("call_function", fn, args, kwargs)

    call.__name__ = call.__qualname__ = fn.__name__
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def traced_is_tensor(obj: Any) -> bool:
    """``torch.is_tensor`` that takes a proxy of a tensor for a tensor (not one of a size)."""
    if isinstance(obj, fx.Proxy):
        return not is_size_value(obj.node)
    return _IS_TENSOR(obj)


def is_size_value(n: fx.Node) -> bool:
    """A node that computes a Python int or shape from sizes (``x.shape[1] // 2``)."""
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] in _SIZE_ATTRS
    if n.op == "call_method":
        return n.target in SIZE_METHODS
    if n.op == "call_function" and n.target is builtins.len:
        return True
    if n.op == "call_function" and getattr(n.target, "__module__", None) in ("_operator", "operator"):
        nodes = n.all_input_nodes
        return bool(nodes) and all(is_size_value(a) for a in nodes)
    return False


def concrete_call(fn: Callable, capture: Concretiser) -> Callable:
    """``fn`` (a NumPy function) called with the example values of any proxies among its arguments."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*capture.concrete(args), **capture.concrete(kwargs))

    call.__name__ = call.__qualname__ = getattr(fn, "__name__", "call")
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


class ConcreteNumpy:
    """NumPy (or one of its submodules) as model code sees it while tracing: its functions get
    the example values of proxies (``np.ones(seq_len)``, ``np.arange(t)``); types and constants
    are NumPy's own."""

    def __init__(self, module: types.ModuleType, capture: Concretiser) -> None:
        self._module, self._capture = module, capture
        self._wrapped: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self._wrapped:
            return self._wrapped[name]
        value = getattr(self._module, name)
        if isinstance(value, types.ModuleType) and value.__name__.startswith("numpy"):
            value = ConcreteNumpy(value, self._capture)
        elif callable(value) and not isinstance(value, type):
            value = concrete_call(value, self._capture)
        self._wrapped[name] = value
        return value


def _is_numpy_function(value: Any) -> bool:
    module = getattr(value, "__module__", None) or ""
    return callable(value) and not isinstance(value, type) and module.split(".")[0] == "numpy"


def patched_namespaces(capture: Concretiser, namespaces: list[dict]) -> Iterator[tuple[dict, str, Any]]:
    """The replacements to make while tracing: torch's factories and ``is_tensor``, in torch's own
    namespace and where model code imported them by name (``from torch import arange``); in model
    code, NumPy and its functions (:class:`ConcreteNumpy`) and ``range``, which get example values.
    Yields ``(dict, name, new value)``."""
    by_id: dict[int, Any] = {id(fn): recorded_factory(fn) for fn in FACTORIES}
    by_id[id(_IS_TENSOR)] = traced_is_tensor
    for d in [torch.__dict__, *namespaces]:
        for name, value in list(d.items()):
            if not name.startswith("_") and callable(value) and id(value) in by_id:
                yield d, name, by_id[id(value)]
    for d in namespaces:
        if "range" not in d:
            yield d, "range", concrete_call(builtins.range, capture)
        for name, value in list(d.items()):
            if value is np or (isinstance(value, types.ModuleType) and value.__name__.startswith("numpy.")):
                yield d, name, ConcreteNumpy(value, capture)
            elif _is_numpy_function(value):
                yield d, name, concrete_call(value, capture)


def device_of_input(tracer: Any) -> fx.Proxy:
    """A proxy of the first input's device (what ``.cuda()`` moves to in the patched model)."""
    first = next(n for n in tracer.graph.nodes if n.op == "placeholder")
    return tracer.create_proxy("call_function", getattr, (tracer.proxy(first), "device"), {})


def cuda_to_input_device(tracer: Any, kind: str, target: Any, args: tuple, kwargs: dict) -> tuple | None:
    """``x.cuda()``, ``x.to("cuda")`` and ``device="cuda"`` as moves to the input's device; None
    when the call names no CUDA device. Returns ``(kind, target, args, kwargs)``."""
    if kind == "call_method" and target == "cuda":
        return "call_method", "to", (args[0], device_of_input(tracer)), {}
    if kind == "call_method" and target == "to" and any(is_cuda(a) for a in args[1:]):
        args = (args[0], *(device_of_input(tracer) if is_cuda(a) else a for a in args[1:]))
        return kind, target, args, kwargs
    if is_cuda(kwargs.get("device")):
        return kind, target, args, {**kwargs, "device": device_of_input(tracer)}
    return None


def tensor_methods(tracer: Any) -> list[tuple[str, Callable]]:
    """``Tensor.cuda`` and ``Tensor.to`` while tracing: a real tensor (a constant the model made)
    sent to CUDA is moved to the input's device in the graph instead of to a GPU now."""
    to = torch.Tensor.to

    def cuda(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return tracer.create_proxy("call_method", "to", (self, device_of_input(tracer)), {})

    def to_device(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if any(is_cuda(a) for a in args) or is_cuda(kwargs.get("device")):
            moved = cuda_to_input_device(tracer, "call_method", "to", (self, *args), kwargs)
            return tracer.create_proxy(*moved)
        return to(self, *args, **kwargs)

    cuda.__name__ = cuda.__qualname__ = "cuda"  # torch's __torch_function__ records methods by name
    to_device.__name__ = to_device.__qualname__ = "to"
    return [("cuda", cuda), ("to", to_device)]
