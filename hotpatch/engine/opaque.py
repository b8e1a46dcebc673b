"""Calls torch.fx cannot trace, kept as one opaque call; and frames lost inside such a call.

When tracing fails, the traceback tells which call of the model's code was being traced:

* a free function called from a module's ``forward`` (a DCT helper from a small package that
  loops over ``x.shape``, anything that iterates a Proxy or calls ``len`` on it) is retried as
  one ``call_function`` node: it runs as written when the patched model runs;
* otherwise, the submodule whose ``forward`` failed is retried as a leaf module, unless it is
  the model itself or contains transformer blocks (those must stay visible to be patched).

An opaque function that mixes values across frames (a transform over time) returns
coefficients, not frames, even where their count equals F: :func:`forget_mixed_frames` removes
the frame axis from everything computed only from its output, so the blocks that follow are
not temporal for HoT.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_aggregate

from hotpatch.engine.callsite import is_library
from hotpatch.engine.inputs import Inputs, as_inputs
from hotpatch.engine.refusals import NOTE_LIMIT, ON_COEFFICIENTS, SIZED_BY_FRAMES, Listing, in_words, range_items, refusal

_MAX_OPAQUE = 16


class Opaque:
    """What one trace keeps opaque: free functions and submodules (by qualified name)."""

    def __init__(self) -> None:
        self.functions: dict[Callable, str] = {}
        self.modules: set[str] = set()
        self.notes: list[str] = []

    def learn(self, exc: BaseException | None, model: nn.Module, blocks: list[str]) -> bool:
        """Add the call that made this trace fail; False if there is none that is safe to hide."""
        if exc is None or len(self.functions) + len(self.modules) >= _MAX_OPAQUE:
            return False
        frames = _frames(exc.__traceback__)
        names = {id(m): q for q, m in model.named_modules()}
        owners = [i for i, fr in enumerate(frames) if id(_receiver(fr)) in names
                  and not is_library(fr.f_code.co_filename)]
        if not owners:
            return False
        i = owners[-1]
        reason = _reason(exc)
        callee = next((fr for fr in frames[i + 1:] if not is_library(fr.f_code.co_filename)), None)
        fn = _function_of(callee, frames[i]) if callee is not None else None
        if fn is not None and fn not in self.functions:
            name = f"{fn.__module__}.{fn.__qualname__}"
            self.functions[fn] = name
            self.notes.append(f"kept {name}(...) as one opaque call: torch.fx cannot trace it ({reason})")
            return True
        module = _receiver(frames[i])
        qual = names[id(module)]
        called = any(fr.f_code.co_name == "forward" and _receiver(fr) is module for fr in frames)
        if module is model or not called or qual in self.modules or _holds_blocks(qual, blocks):
            return False
        self.modules.add(qual)
        self.notes.append(
            f"kept {qual} ({type(module).__name__}) as one opaque call: torch.fx cannot trace its "
            f"forward ({reason})"
        )
        return True

    @contextlib.contextmanager
    def wrapped(self, namespaces: list[dict]) -> Iterator[None]:
        """Within the block, the opaque functions are recorded as single calls when tracing."""
        if not self.functions:
            yield
            return
        dicts = _namespaces(namespaces, self.functions)
        saved: list[tuple[dict, str, Any]] = []
        for d in dicts:
            for key, value in list(d.items()):
                if isinstance(value, types.FunctionType) and value in self.functions:
                    saved.append((d, key, value))
                    d[key] = _leaf_call(value)
        try:
            yield
        finally:
            for d, key, value in saved:
                d[key] = value


def _namespaces(namespaces: list[dict], functions: dict[Callable, str]) -> list[dict]:
    """The forward globals, the modules they import, and the modules defining the functions."""
    out: dict[int, dict] = {id(d): d for d in namespaces}
    for d in namespaces:
        for value in list(d.values()):
            if isinstance(value, types.ModuleType):
                out.setdefault(id(value.__dict__), value.__dict__)
    for fn in functions:
        mod = sys.modules.get(fn.__module__)
        if mod is not None:
            out.setdefault(id(mod.__dict__), mod.__dict__)
    return list(out.values())


def _leaf_call(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        proxies: list[fx.Proxy] = []
        map_aggregate((args, kwargs), lambda v: proxies.append(v) if isinstance(v, fx.Proxy) else None)
        if not proxies:
            return fn(*args, **kwargs)
        return proxies[0].tracer.create_proxy("call_function", fn, args, kwargs)

    return call


def _receiver(frame: types.FrameType) -> Any:
    """The first argument of the function running in ``frame`` (``self`` of a method)."""
    code = frame.f_code
    return frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None


def _frames(tb: types.TracebackType | None) -> list[types.FrameType]:
    out = []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def _function_of(frame: types.FrameType, caller: types.FrameType) -> Callable | None:
    """The module-level function running in ``frame`` (None for methods and closures)."""
    if isinstance(_receiver(frame), nn.Module):
        return None
    for d in (frame.f_globals, caller.f_globals):
        for value in d.values():
            if isinstance(value, types.FunctionType) and value.__code__ is frame.f_code:
                return value
    return None


def _holds_blocks(qual: str, blocks: list[str]) -> bool:
    return qual == "" or any(b == qual or b.startswith(qual + ".") for b in blocks)


def _reason(exc: BaseException) -> str:
    return in_words(exc).split(". ")[0].split("; ")[0].rstrip(".")


# ------------------------------------------------------------------ frames lost in an opaque call


def forget_mixed_frames(gm: fx.GraphModule, plan: Any, example: torch.Tensor | Inputs) -> None:
    """Remove the frame axis from what an opaque function that mixes frames computes.

    Each opaque function call whose input carries frames is tested like a block (one frame of
    its input perturbed); if its output changes at other frames it mixes them, so what it
    returns, and everything computed from that alone, carries no frames. Blocks left without
    frame-carrying inputs become ``static``; levels are recounted. Decisions go to plan notes.
    """
    from hotpatch.engine.analyse import assign_levels

    functions = set(gm.meta.get("hotpatch_opaque_functions", ()))
    calls = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in functions]
    if not calls:
        return
    captured = _capture(gm, calls, example)
    mixing: list[fx.Node] = []
    tainted: set[fx.Node] = set()
    for n in calls:  # in graph order: a call on coefficients only is not tested again
        live = [a for a in n.all_input_nodes if a not in tainted and _live_frames(a, plan)]
        if n.name not in captured or not live:
            continue
        args, kwargs, out = captured[n.name]
        if _mixes_frames(n, args, kwargs, out, plan):
            mixing.append(n)
            tainted = _taint(gm.graph, set(mixing), plan)
    if not mixing:
        return
    for n in tainted:
        f = plan.facts.get(n.name)
        if f is None:
            continue
        f.count = None
        if f.axes is not None:
            f.axes = tuple(None if a is None else tuple(plan.frames if x == "F" else x for x in a) for a in f.axes)
    lost: dict[str, str] = {}
    by_name = {n.name: n for n in gm.graph.nodes}
    for b in plan.blocks:
        node = by_name[b.node]
        if b.kind == "temporal" and not any(_live_frames(a, plan) for a in node.all_input_nodes):
            b.kind, b.why = "static", ON_COEFFICIENTS
            lost[b.name] = b.node
        b.level = 0
    assign_levels(gm.graph, plan.blocks)
    plan.levels = max((b.level for b in plan.blocks), default=0)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    plan.output_layouts = [
        plan.facts[a.name].layout(plan.joints).describe()
        for a in output.all_input_nodes
        if a.name in plan.facts and plan.facts[a.name].carries_frames and None not in plan.facts[a.name].axes
    ]
    for n in mixing:
        mine = _taint(gm.graph, {n}, plan)
        names = [name for name, node in lost.items() if by_name[node] in mine]
        after = ["; blocks ", Listing(range_items(names)), " work on it, so they are not temporal for HoT"] if names else []
        plan.note(refusal(
            f"{n.target.__module__}.{n.target.__qualname__}(...) mixes all frames: its output holds "
            "coefficients, not frames", *after, limit=NOTE_LIMIT,
        ))


def _mixes_frames(node: fx.Node, args: tuple, kwargs: dict, out: list[torch.Tensor], plan: Any) -> bool:
    """True if changing one frame of the call's frame-carrying inputs changes its outputs at
    other positions of an axis of F entries (at B=1)."""
    frames, t0 = plan.frames, plan.frames // 2
    gen = torch.Generator().manual_seed(0)

    def bump(arg: Any, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or not isinstance(arg, fx.Node) or not _live_frames(arg, plan):
            return value
        axis = next(i for i, a in enumerate(plan.facts[arg.name].axes) if a is not None and "F" in a)
        if value.shape[axis] != frames:
            return value  # a merged axis (B·F at B=1 is F; J·F is not)
        value = value.clone()
        frame = value.select(axis, t0)
        frame.add_(torch.randn(frame.shape, generator=gen).to(value) * (1.0 + value.abs().mean()))
        return value

    new_args = tuple(bump(a, v) for a, v in zip(node.args, args))
    new_kwargs = {k: bump(node.kwargs.get(k), v) for k, v in kwargs.items()}
    with torch.no_grad():
        result = node.target(*new_args, **new_kwargs)
    new: list[torch.Tensor] = []
    map_aggregate(result, lambda v: new.append(v) if isinstance(v, torch.Tensor) else None)
    others = torch.tensor([i for i in range(frames) if i != t0], dtype=torch.long)
    for r, p in zip(out, new):
        for ax in (i for i, size in enumerate(r.shape) if size == frames):
            diff = (r.index_select(ax, others) - p.index_select(ax, others)).abs().max()
            if diff > 1e-6 * (1.0 + r.abs().max()):
                return True
    return False


def _live_frames(n: fx.Node, plan: Any) -> bool:
    f = plan.facts.get(n.name)
    return f is not None and f.carries_frames and plan.data_dependent.get(n.name, True)


def _taint(graph: fx.Graph, start: set[fx.Node], plan: Any) -> set[fx.Node]:
    """Nodes computed from the mixing calls' outputs and from no other frame-carrying value."""
    tainted = set(start)
    for n in graph.nodes:
        if n in tainted or n.op == "output":
            continue
        inputs = n.all_input_nodes
        if not any(a in tainted for a in inputs):
            continue
        f = plan.facts.get(n.name)
        is_int = f is not None and f.kind == "int"  # a tensor's frames come from tensors, not sizes
        live = [a for a in inputs if a not in tainted and (_live_frames(a, plan) or is_int and _counts_frames(a, plan))]
        if not live:
            tainted.add(n)
    return tainted


def _counts_frames(n: fx.Node, plan: Any) -> bool:
    f = plan.facts.get(n.name)
    return f is not None and f.kind == "int" and f.count is not None


def _capture(gm: fx.GraphModule, calls: list[fx.Node], example: torch.Tensor | Inputs) -> dict[str, tuple]:
    wanted = {n.name for n in calls}
    captured: dict[str, tuple] = {}

    class _Capture(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            if n.name in wanted:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                out: list[torch.Tensor] = []
                map_aggregate(result, lambda v: out.append(v.clone()) if isinstance(v, torch.Tensor) else None)
                captured[n.name] = (args, kwargs, out)
            return result

    with torch.no_grad():
        _Capture(gm).run(*as_inputs(gm.graph, example).args(gm.graph))
    return captured


# ------------------------------------------------------------ blocks that accept only F tokens


def pin_frame_sized_blocks(gm: fx.GraphModule, plan: Any, example: torch.Tensor | Inputs) -> None:
    """A temporal block with no attention over frames (it mixes them only through a weight or
    buffer sized by F: an MLP-Mixer token MLP ``Linear(F, ..)``, a ``BatchNorm1d(F)``; or in ops
    only the perturbation test saw, such as a hand-written scan) that fails on one frame fewer
    has no tokens for HoT: it becomes ``frame-channel`` and no longer counts as a level of
    temporal blocks. So does one that mixes frames by contracting them with a constant while it
    owns a frame-sized parameter or buffer, even where it runs on fewer frames (Linformer's (F, k)
    projections of keys and values, sliced to the first f rows: learned for those positions, not
    for a sample's kept frames). Any other block that runs on fewer frames stays temporal (a scan
    over whatever frames it is given: HoT prunes its tokens as it prunes an attention's), and the
    plan says so. Blocks that attend over frames stay temporal: their frame-sized layers are
    gathered per sample after the cut (:mod:`hotpatch.engine.frame_layers`)."""
    from hotpatch.engine.analyse import ATTENDS_OVER_FRAMES, BY_PERTURBATION, WITH_WEIGHTS, assign_levels

    by_name = {n.name: n for n in gm.graph.nodes}
    temporal = [by_name[b.node] for b in plan.blocks
                if b.kind == "temporal" and ATTENDS_OVER_FRAMES not in b.why
                and (b.why.startswith(BY_PERTURBATION) or _frame_sized_tensors(gm.get_submodule(b.name), plan.frames))]
    if not temporal:  # the test runs the model once more: only where a weight could be sized by F
        return
    captured = _capture(gm, temporal, example)
    _note_scans(gm, plan, captured, by_name)
    pinned, weighted = [], []
    for b in plan.blocks:
        if b.node not in captured:
            continue
        args, kwargs, _ = captured[b.node]
        shorter = _one_frame_fewer(by_name[b.node], args, kwargs, plan)
        if shorter is None:  # F is also another axis' size: neither test can be made
            continue
        try:
            with torch.no_grad():
                gm.get_submodule(b.name)(*shorter[0], **shorter[1])
        except Exception as exc:
            b.kind, b.why = "frame-channel", SIZED_BY_FRAMES
            pinned.append(b.name)
            reason = _reason(exc)
            continue
        if WITH_WEIGHTS in b.why and _frame_sized_tensors(gm.get_submodule(b.name), plan.frames):
            b.kind, b.why = "frame-channel", SIZED_BY_FRAMES
            weighted.append(b.name)
    if not pinned and not weighted:
        return
    for b in plan.blocks:
        b.level = 0
    assign_levels(gm.graph, plan.blocks)
    plan.levels = max((b.level for b in plan.blocks), default=0)
    if pinned:
        plan.note(refusal(
            "blocks ", Listing(range_items(pinned)), f" mix frames but accept only F={plan.frames} tokens ({reason}): "
            "a layer inside is sized by the frame count, so they are not temporal for HoT", limit=NOTE_LIMIT,
        ))
    if weighted:
        plan.note(_weights_note(gm, weighted, plan.frames))


def _weights_note(gm: fx.GraphModule, blocks: list[str], frames: int) -> str:
    """The plan note (and refusal) for blocks that mix frames through frame-sized parameters:
    the first block's first such parameter in full, its others by their names in the block."""
    first = blocks[0]
    (name, shape), *others = _frame_sized_tensors(gm.get_submodule(first), frames)
    also = [" (and ", Listing([f"`{n}` {s}" for n, s in others]), ")"] if others else []
    where = ["in block ", first] if len(blocks) == 1 else ["in blocks ", Listing(range_items(blocks))]
    return refusal(
        f"`{first}.{name}` {shape}{_mixes(shape, frames)}", *also, " ", *where, ": a block mixing frames "
        "through a frame-sized parameter cannot run on fewer frames, so it is not temporal for HoT", limit=NOTE_LIMIT,
    )


def _mixes(shape: tuple[int, ...], frames: int) -> str:
    """`` projects the 27 frames onto 8 learned mixes`` for an (F, k) or (k, F) weight, else `` mixes the
    27 frames``."""
    if len(shape) != 2 or shape.count(frames) != 1:
        return f" mixes the {frames} frames"
    return f" projects the {frames} frames onto {shape[1 - shape.index(frames)]} learned mixes"


def _note_scans(gm: fx.GraphModule, plan: Any, captured: dict, by_name: dict) -> None:
    """Say which blocks judged temporal by perturbation run on one frame fewer (they keep their kind)."""
    from hotpatch.engine.analyse import BY_PERTURBATION
    from hotpatch.engine.refusals import block_ranges

    ok = []
    for b in plan.blocks:
        if b.node not in captured or not b.why.startswith(BY_PERTURBATION):
            continue
        args, kwargs, _ = captured[b.node]
        shorter = _one_frame_fewer(by_name[b.node], args, kwargs, plan)
        try:
            with torch.no_grad():
                if shorter is not None:
                    gm.get_submodule(b.name)(*shorter[0], **shorter[1])
                    ok.append(b.name)
        except Exception:
            continue
    if ok:
        plan.note(f"blocks {block_ranges(ok)} mix frames without an attention hotpatch can follow (judged by the "
                  f"perturbation test) and run on fewer than F={plan.frames} frames: HoT prunes their frame tokens")


def _frame_sized_tensors(module: nn.Module, frames: int) -> list[tuple[str, tuple[int, ...]]]:
    """The module's parameters and buffers (qualified names, shapes) with a dim of ``frames``."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [(name, tuple(t.shape)) for name, t in tensors if frames in t.shape]


def _one_frame_fewer(node: fx.Node, args: tuple, kwargs: dict, plan: Any) -> tuple[tuple, dict] | None:
    """The block's arguments with one frame less (frame counts passed as ints too), or None
    where the frame axis is merged with another axis or not the only axis of size F (then this
    test cannot be made)."""
    changed = False

    def shorten(arg: Any, value: Any) -> Any:
        nonlocal changed
        if not isinstance(arg, fx.Node) or arg.name not in plan.facts:
            return value
        f = plan.facts[arg.name]
        if f.kind == "int" and f.count is not None and isinstance(value, int):
            return value - 1  # at B=1 both F and B·F lose one
        if not f.carries_frames or not plan.data_dependent.get(arg.name, True):
            return value
        axes = [i for i, a in enumerate(f.axes) if a == ("F",)]
        if len(axes) != 1 or len(f.frame_axes) != 1:  # merged, or F equal to another size
            raise _Merged
        changed = True
        for i in axes:
            value = value.narrow(i, 0, value.shape[i] - 1)
        return value

    try:
        new_args = tuple(shorten(a, v) for a, v in zip(node.args, args))
        new_kwargs = {k: shorten(node.kwargs.get(k), v) for k, v in kwargs.items()}
    except _Merged:
        return None
    return (new_args, new_kwargs) if changed else None


class _Merged(Exception):
    pass
