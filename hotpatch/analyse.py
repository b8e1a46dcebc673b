"""Stage 2: run the traced graph on probe inputs and label what carries frames.

Two probes are run: one clip (B=1) and the same clip twice (B=2). From how each size
scales, every tensor axis gets a layout (:mod:`hotpatch.layout`): batch, frames,
batch×frames (and in which order, read off the duplicated sample), joints or a fixed size;
every int node whose value is the frame count (F) or batch×frames (B·F) is marked. Blocks
are classified by perturbing one frame of their input: a block whose output at other frames
changes attends across frames (temporal). The result is a printable :class:`Plan`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_aggregate

from hotpatch.errors import (
    InputShapeError,
)
from hotpatch.layout import Axis, Layout
from hotpatch.rewrite_stages import Reduction, find_reductions

log = logging.getLogger(__name__)

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_SHAPE_ATTRS = {"shape"}
_SHAPE_METHODS = {"size", "dim"}


@dataclass
class NodeFacts:
    """What the probes showed about one graph node."""

    kind: str  # "tensor", "int" or "other"
    shape: tuple[int, ...] | None = None  # at B=1
    axes: tuple[Axis | None, ...] | None = None
    count: str | None = None  # "F" or "BF" for int nodes carrying the frame count
    data_dependent: bool = False
    reduced: dict[int, int] = field(default_factory=dict)  # axis -> length, after a strided stage
    value: int | None = None  # an int node's value at B=1 (frame splits compare it with F)

    @property
    def frame_axes(self) -> list[int]:
        return [i for i, a in enumerate(self.axes or ()) if a is not None and "F" in a]

    @property
    def time_axes(self) -> list[int]:
        """Frame axes and reduced-length axes (after strided stages, see rewrite_stages)."""
        return self.frame_axes + sorted(self.reduced)

    @property
    def carries_frames(self) -> bool:
        return self.kind == "tensor" and bool(self.frame_axes)

    def layout(self, joints: int | None) -> Layout:
        assert self.axes is not None and all(a is not None for a in self.axes)
        return Layout(tuple(self.axes), joints)  # type: ignore[arg-type]


@dataclass
class BlockInfo:
    """One transformer block: its module name, graph node, kind and temporal depth."""

    name: str
    node: str
    kind: str  # "temporal", "spatial", "frame-channel" (frames are its features) or "static"
    level: int = 0  # number of temporal blocks on the longest path up to and including it


@dataclass
class Plan:
    """Everything the rewrite needs, in a printable form."""

    input_shape: tuple[int, ...]
    frames: int
    joints: int | None
    blocks: list[BlockInfo]
    levels: int
    output_layouts: list[str] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    facts: dict[str, NodeFacts] = field(default_factory=dict, repr=False)
    data_dependent: dict[str, bool] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)  # every decision taken, one line each
    reductions: list[Reduction] = field(default_factory=list)  # strided stages F -> F/s ...

    def note(self, text: str) -> None:
        """Record a decision (what was kept opaque, gathered, sliced, clamped ...)."""
        self.notes.append(text)

    @property
    def temporal_blocks(self) -> list[BlockInfo]:
        return [b for b in self.blocks if b.kind == "temporal"]

    def __str__(self) -> str:
        lines = [
            f"input (B, F, ...) = {self.input_shape}, F = {self.frames}, J = {self.joints}",
            f"{len(self.blocks)} blocks, {len(self.temporal_blocks)} temporal in {self.levels} levels:",
        ]
        for b in self.blocks:
            level = f" level {b.level}" if b.kind == "temporal" else ""
            lines.append(f"  {b.name:<28} {b.kind}{level}")
        lines.append(f"output: {', '.join(self.output_layouts) or 'no frame axis'}")
        if self.notes:
            lines.append("decisions:")
            lines += [f"  - {text}" for text in self.notes]
        return "\n".join(lines)


class _Recorder(fx.Interpreter):
    """Runs the graph and hands every node's value to ``record``."""

    def __init__(self, gm: fx.GraphModule, record) -> None:
        super().__init__(gm)
        self.record = record

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        result = super().run_node(n)
        self.record(n, result, args, kwargs)
        return result


def _axis_atoms(s1: int, s2: int, order: str | None, frames: int, joints: int | None) -> Axis | None:
    """Layout atoms of an axis of size ``s1`` at B=1 and ``s2`` at B=2."""
    if s2 == s1:
        if s1 == frames:
            return ("F",)
        if joints is not None and s1 == joints:
            return ("J",)
        return (s1,)
    if s2 != 2 * s1:
        return None
    if s1 == 1:
        return ("B",)
    inner: Any = "F" if s1 == frames else "J" if joints is not None and s1 == joints else s1
    return (inner, "B") if order == "minor" else ("B", inner)


def _batch_order(t: torch.Tensor, axis: int, half: int) -> str | None:
    """With two identical samples: is the batch the outer ("major") or inner ("minor")
    factor of this axis of size 2·half? (Compares a strided sample of the two halves.)"""

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        a, b = a.reshape(-1), b.reshape(-1)
        step = max(1, a.numel() // 4096)
        return torch.allclose(a[::step], b[::step], rtol=1e-4, atol=1e-5)

    if not t.is_floating_point():
        t = t.float()
    if same(*t.unflatten(axis, (2, half)).unbind(axis)):
        return "major"
    if same(*t.unflatten(axis, (half, 2)).unbind(axis + 1)):
        return "minor"
    return None


def _data_dependence(graph: fx.Graph) -> dict[str, bool]:
    """Which nodes depend on the input's values (not only on its shape)."""
    dep: dict[str, bool] = {}
    for n in graph.nodes:
        if n.op == "placeholder":
            dep[n.name] = True
        elif n.op == "get_attr":
            dep[n.name] = False
        elif n.op == "call_function" and n.target is getattr and n.args[1] in _SHAPE_ATTRS:
            dep[n.name] = False
        elif n.op == "call_method" and n.target in _SHAPE_METHODS:
            dep[n.name] = False
        elif n.op == "call_function" and n.target is len:
            dep[n.name] = False
        else:
            dep[n.name] = any(dep.get(a.name, False) for a in n.all_input_nodes)
    return dep


def probe(
    gm: fx.GraphModule, example: torch.Tensor, blocks: list[str], joints: int | None
) -> tuple[dict[str, NodeFacts], dict[str, tuple], list[tuple[int, ...]]]:
    """Run the two probes; return node facts, the B=1 arguments and outputs of every block
    call, and the B=1 output shapes of the model."""
    frames = example.shape[1]
    sizes1: dict[str, Any] = {}
    block_args: dict[str, tuple] = {}
    block_set = set(blocks)
    output_shapes: list[tuple[int, ...]] = []

    def summarise(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return ("tensor", tuple(v.shape))
        if isinstance(v, int) and not isinstance(v, bool):
            return ("int", v)
        return ("other", None)

    def record1(n, result, args, kwargs):
        sizes1[n.name] = summarise(result)
        if n.op == "call_module" and n.target in block_set:  # outputs cloned: later in-place ops
            block_args[n.name] = (args, kwargs, _flat_tensors(map_aggregate(result, _clone)))
        if n.op == "output":
            output_shapes.extend(tuple(t.shape) for t in _flat_tensors(result))

    facts: dict[str, NodeFacts] = {}
    dep = _data_dependence(gm.graph)

    def record2(n, result, args, kwargs):
        kind, v1 = sizes1[n.name]
        kind2, v2 = summarise(result)
        if kind != kind2:
            facts[n.name] = NodeFacts("other")
            return
        if kind == "int":
            count = "F" if v1 == v2 == frames else "BF" if (v1, v2) == (frames, 2 * frames) else None
            facts[n.name] = NodeFacts("int", count=count, value=v1)
        elif kind == "tensor":
            if len(v1) != len(v2):
                facts[n.name] = NodeFacts("other")
                return
            axes = []
            for i, (s1, s2) in enumerate(zip(v1, v2)):
                order = _batch_order(result, i, s1) if s2 == 2 * s1 and s1 > 1 else None
                axes.append(_axis_atoms(s1, s2, order, frames, joints))
            facts[n.name] = NodeFacts("tensor", v1, tuple(axes), data_dependent=dep[n.name])
        else:
            facts[n.name] = NodeFacts("other")

    with torch.no_grad():
        _Recorder(gm, record1).run(example)
        _Recorder(gm, record2).run(torch.cat([example, example]))
    return facts, block_args, output_shapes


def _clone(v: Any) -> Any:
    return v.clone() if isinstance(v, torch.Tensor) else v


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    map_aggregate(value, lambda v: out.append(v) if isinstance(v, torch.Tensor) else None)
    return out


def classify_block(
    module: nn.Module, node: fx.Node, args: tuple, kwargs: dict, ref: list[torch.Tensor],
    facts: dict[str, NodeFacts],
) -> str:
    """Classify a block by perturbing one frame of its frame-carrying inputs (at B=1).

    ``temporal``: the outputs at other frames change (it attends across frames);
    ``spatial``: they do not; ``frame-channel``: frames are only ever its feature axis
    (MHFormer's first stage); ``static``: no input carries frames.
    """
    def frame_fact(a: Any) -> NodeFacts | None:
        if isinstance(a, fx.Node) and a.name in facts and facts[a.name].kind == "tensor" and facts[a.name].time_axes:
            return facts[a.name]
        return None

    pos = {i: frame_fact(a) for i, a in enumerate(node.args) if frame_fact(a) is not None}
    kws = {k: frame_fact(a) for k, a in node.kwargs.items() if frame_fact(a) is not None}
    carried = list(pos.values()) + list(kws.values())
    if not carried:
        return "static"
    if all(ax == len(f.shape) - 1 for f in carried for ax in f.time_axes):
        return "frame-channel"
    first = carried[0]
    frames_at = first.shape[first.time_axes[0]]
    t0 = frames_at // 2

    gen = torch.Generator().manual_seed(0)

    def bump(v: torch.Tensor, f: NodeFacts) -> torch.Tensor:
        v = v.clone()
        frame = v.select(f.time_axes[0], t0)
        noise = torch.randn(frame.shape, generator=gen).to(v)
        frame.add_(noise * (1.0 + v.abs().mean()))
        return v

    new_args = tuple(bump(a, pos[i]) if i in pos else a for i, a in enumerate(args))
    new_kwargs = {k: bump(v, kws[k]) if k in kws else v for k, v in kwargs.items()}
    with torch.no_grad():
        new = _flat_tensors(module(*new_args, **new_kwargs))
    for r, p in zip(ref, new):
        for ax in (i for i, s in enumerate(r.shape) if s == frames_at):
            others = torch.tensor([i for i in range(frames_at) if i != t0], dtype=torch.long)
            if others.numel() == 0:
                continue
            diff = (r.index_select(ax, others) - p.index_select(ax, others)).abs().max()
            if diff > 1e-6 * (1.0 + r.abs().max()):
                return "temporal"
    return "spatial"


def analyse(gm: fx.GraphModule, blocks: list[str], example: torch.Tensor) -> Plan:
    """Probe ``gm`` with ``example`` (one clip, B=1) and build the :class:`Plan`."""
    frames = example.shape[1]
    joints = example.shape[2] if example.dim() == 4 else None
    try:
        facts, block_args, output_shapes = probe(gm, example, blocks, joints)
    except Exception as exc:
        raise InputShapeError(
            f"the model rejects example_input of shape {tuple(example.shape)} (or a batch of two "
            f"copies of it): {type(exc).__name__}: {exc}. Pass example_input= with one clip the "
            "model accepts."
        ) from exc

    reductions = find_reductions(gm, facts, frames, joints)
    infos: list[BlockInfo] = []
    for n in gm.graph.nodes:
        if n.op != "call_module" or n.target not in blocks:
            continue
        args, kwargs, outputs = block_args[n.name]
        kind = classify_block(gm.get_submodule(n.target), n, args, kwargs, outputs, facts)
        infos.append(BlockInfo(n.target, n.name, kind))

    _assign_levels(gm.graph, infos)
    levels = max((b.level for b in infos), default=0)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    out_layouts = [
        facts[a.name].layout(joints).describe()
        for a in output.all_input_nodes
        if a.name in facts and facts[a.name].carries_frames and None not in facts[a.name].axes
    ]
    dep = _data_dependence(gm.graph)
    plan = Plan(tuple(example.shape), frames, joints, infos, levels, out_layouts, output_shapes, facts, dep)
    plan.reductions = reductions
    for r in reductions:
        plan.note(f"strided stage {r.describe()}: later axes of length {r.length_out} are reduced frame axes")
    return plan


def _assign_levels(graph: fx.Graph, infos: list[BlockInfo]) -> None:
    by_node = {b.node: b for b in infos}
    depth: dict[str, int] = {}
    for n in graph.nodes:
        d = max((depth.get(a.name, 0) for a in n.all_input_nodes), default=0)
        b = by_node.get(n.name)
        if b is not None and b.kind == "temporal":
            d += 1
            b.level = d
        depth[n.name] = d
