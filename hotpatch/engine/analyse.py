"""Stage 2: run the traced graph on probe inputs and label what carries frames.

Two probes are run: one clip (B=1) and the same clip twice (B=2). From how each size
scales, every tensor axis gets a layout (:mod:`hotpatch.layout`): batch, frames,
batch×frames (and in which order, read off the duplicated sample), joints or a fixed size;
every int node whose value is the frame count (F) or batch×frames (B·F) is marked. The B=1
probe runs on fake tensors where that is cheaper than arithmetic; the B=2 probe skips the
arithmetic of shape-keeping blocks. A block is temporal when one of its attentions attends
over tokens that come from a frame axis of its input, followed op by op inside the block
(:mod:`hotpatch.engine.mixing`); only blocks whose ops cannot be followed are classified by
perturbing one frame. The result is a printable :class:`Plan`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.node import map_aggregate
from torch.utils._pytree import tree_flatten, tree_unflatten

from hotpatch.errors import (
    InputShapeError,
)
from hotpatch.layout import Axis, Layout
from hotpatch.engine.inputs import InputInfo, Inputs, as_inputs
from hotpatch.engine.batch_factors import label_batch_factors
from hotpatch.engine.capture import data_dependence
from hotpatch.engine.mixing import Mixing, plain, trace_mixing
from hotpatch.engine.reductions import Reduction, find_reductions
from hotpatch.engine.refusals import in_words
from hotpatch.engine.subsample import find_subsample

log = logging.getLogger(__name__)

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


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
    value2: int | None = None  # ... and at B=2 (batch-like factors, engine/batch_factors.py)
    unordered: tuple[int, ...] = ()  # axes that double with the batch, their order unreadable (left None)

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
    why: str = ""  # what decided the kind (e.g. the attention that attends over frames)


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
    tokens: dict[str, int] = field(default_factory=dict)  # patched: frames each block sees
    inputs: list[InputInfo] = field(default_factory=list)  # every traced input, the clip among them
    example: Inputs | None = field(default=None, repr=False)  # the example values analysed (B=1)
    clip_frames: int | None = None  # the clip's length where the model subsamples it (frames: its tokens)

    def note(self, text: str) -> None:
        """Record a decision (what was kept opaque, gathered, sliced, clamped ...)."""
        self.notes.append(text)

    @property
    def temporal_blocks(self) -> list[BlockInfo]:
        return [b for b in self.blocks if b.kind == "temporal"]

    def __str__(self) -> str:
        lines = [f"input (B, F, ...) = {self.input_shape}, F = {self.frames}, J = {self.joints}"]
        if self.clip_frames is not None:
            lines[0] = (f"input (B, F, ...) = {self.input_shape}, {self.clip_frames} frames read as "
                        f"F = {self.frames} tokens, J = {self.joints}")
        if len(self.inputs) > 1:
            lines += [
                f"  input {i.name} {i.shape}: " + (f"frames on axis {i.frame_axis}" if i.frame_axis is not None
                                                   else "no frame axis, passed through")
                for i in self.inputs
            ]
        lines += [
            f"{len(self.blocks)} blocks, {len(self.temporal_blocks)} temporal in {self.levels} levels:",
        ]
        for b in self.blocks:
            level = f" level {b.level}" if b.kind == "temporal" else ""
            tokens = f", {self.tokens[b.name]} frames" if b.name in self.tokens else ""
            why = f"  ({b.why})" if b.why else ""
            lines.append(f"  {b.name:<28} {b.kind}{level}{tokens}{why}")
        lines.append(f"output: {', '.join(self.output_layouts) or 'no frame axis'}")
        if self.notes:
            lines.append("decisions:")
            lines += [f"  - {text}" for text in self.notes]
        return "\n".join(lines)


def axis_atoms(s1: int, s2: int, order: str | None, frames: int, joints: int | None) -> Axis | None:
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


def batch_order(t: torch.Tensor, axis: int, half: int) -> str | None:
    """With two identical samples: is the batch the outer ("major") or inner ("minor")
    factor of this axis of size 2·half? (Compares a strided sample of the two halves.)

    ``"ambiguous"`` when the halves agree under both splits (e.g. the values are constant
    along the axis, as behind a zero-initialised embedding): the values cannot tell, so the
    caller must not guess. ``None`` when neither split matches.
    """

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        a, b = a.reshape(-1), b.reshape(-1)
        step = max(1, a.numel() // 4096)
        return torch.allclose(a[::step], b[::step], rtol=1e-4, atol=1e-5)

    if not t.is_floating_point():
        t = t.float()
    major = same(*t.unflatten(axis, (2, half)).unbind(axis))
    minor = same(*t.unflatten(axis, (half, 2)).unbind(axis + 1))
    if major and minor:
        return "ambiguous"
    return "major" if major else "minor" if minor else None


def _data_dependence(graph: fx.Graph) -> dict[str, bool]:
    """Which nodes depend on the input's values (not only on its sizes, dtype and device:
    :func:`hotpatch.engine.capture.data_dependence`)."""
    return {n.name: dep for n, dep in data_dependence(graph).items()}


FAKE_ABOVE = 2e9  # parameters × tokens per clip above which shapes-only runs are the cheaper


def worth_faking(model: nn.Module, example: torch.Tensor | Inputs) -> bool:
    """Whether a run on fake tensors (a fixed cost of about half a millisecond per op) is
    cheaper than a real one (which grows with parameters × tokens). Both give the same shapes,
    so this only decides the cost: paper-size VPTs are faked, tiny test models run for real."""
    params = sum(p.numel() for p in model.parameters())
    clip = example.clip if isinstance(example, Inputs) else example
    tokens = clip[0, ..., 0].numel()  # F·J, or F
    return params * tokens > FAKE_ABOVE


@contextmanager
def fake_tensors() -> Iterator[FakeTensorMode]:
    """A FakeTensorMode (shapes only, no arithmetic) that accepts the real parameters. torch's
    log of an op that fails on fake tensors is silenced while it is active: the caller handles
    the failure (another probe shape, or the same run on real values)."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            yield mode
    finally:
        logger.disabled = disabled


@dataclass
class _BlockRun:
    """One block call of the B=1 probe: its arguments (fake tensors on the fast path), the
    graph nodes its tensor inputs come from, its outputs and what it mixed."""

    args: tuple
    kwargs: dict
    sources: list[str | None]  # per tensor input (pytree order): the node it is, if any
    output: Any
    mixing: Mixing | None


class _Probe(fx.Interpreter):
    """Runs the graph; block calls go through ``call_block``; every result goes to ``record``."""

    def __init__(self, gm: fx.GraphModule, blocks: set[str], record, call_block) -> None:
        super().__init__(gm)
        self.blocks, self.record, self.call_block = blocks, record, call_block

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_module" and n.target in self.blocks:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            result = self.call_block(n, args, kwargs)
        else:
            result = super().run_node(n)
        self.record(n, result)
        return result


def _tensor_leaves(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def _sources(node: fx.Node, args: tuple, kwargs: dict) -> list[str | None]:
    """For each tensor input of a block call (pytree order), the graph node it is."""
    names = {}
    for a, v in [*zip(node.args, args), *((node.kwargs[k], kwargs[k]) for k in kwargs)]:
        if isinstance(a, fx.Node) and isinstance(v, torch.Tensor):
            names[id(v)] = a.name
    return [names.get(id(t)) for t in _tensor_leaves((args, kwargs))]


def _axis_labels(i: int, t: torch.Tensor):
    return plain(t.shape, axis_labels={ax: (i, ax) for ax in range(t.dim())})


def _run_first(gm: fx.GraphModule, example: Inputs, blocks: set[str], fake: bool):
    """The B=1 probe: shapes and int values of every node, and one :class:`_BlockRun` per
    block (its attentions followed axis by axis). On fake tensors it does no arithmetic."""
    sizes: dict[str, Any] = {}
    runs: dict[str, _BlockRun] = {}
    output_shapes: list[tuple[int, ...]] = []

    def record(n, result):
        sizes[n.name] = _summarise(result)
        if n.op == "output":
            output_shapes.extend(tuple(t.shape) for t in _flat_tensors(result))

    def call_block(n, args, kwargs):
        module = gm.get_submodule(n.target)
        try:
            mixing, out = trace_mixing(module, args, kwargs, _axis_labels)
        except Exception:
            if fake:
                raise
            mixing, out = None, module(*args, **kwargs)
        out = map_aggregate(out, _clone)  # later in-place ops must not change what is kept
        runs[n.name] = _BlockRun(args, kwargs, _sources(n, args, kwargs), out, mixing)
        return out

    with torch.no_grad():
        if fake:
            with fake_tensors() as mode:
                _Probe(gm, blocks, record, call_block).run(*example.map(mode.from_tensor).args(gm.graph))
        else:
            _Probe(gm, blocks, record, call_block).run(*example.args(gm.graph))
    return sizes, runs, output_shapes


def _summarise(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape))
    if isinstance(v, int) and not isinstance(v, bool):
        return ("int", v)
    return ("other", None)


def _identity_output(run: _BlockRun, args: tuple, kwargs: dict) -> Any | None:
    """A stand-in for a block's output at B=2 that costs no arithmetic: its first inputs, where at
    B=1 the block returned tensors of exactly their shapes (a transformer block does; one called
    as ``blk(x, cond)`` returns x's shape). It keeps each sample's values apart, which is all the
    batch-order test reads."""
    leaves, spec = tree_flatten(run.output)
    ins_1 = _tensor_leaves((run.args, run.kwargs))
    if not leaves or len(leaves) > len(ins_1) or not all(isinstance(t, torch.Tensor) for t in leaves):
        return None
    if any(o.shape != i.shape for o, i in zip(leaves, ins_1)):
        return None
    ins_2 = _tensor_leaves((args, kwargs))
    if len(ins_2) != len(ins_1):
        return None
    return tree_unflatten([t.clone() for t in ins_2[: len(leaves)]], spec)


def probe(
    gm: fx.GraphModule, example: torch.Tensor | Inputs, blocks: list[str], joints: int | None,
    frames: int | None = None,
) -> tuple[dict[str, NodeFacts], dict[str, _BlockRun], list[tuple[int, ...]]]:
    """Run the two probes; return node facts, one :class:`_BlockRun` per block call and the
    B=1 output shapes of the model.

    ``frames``: the count that frame axes have (default: the clip's; the token count T of a model
    that subsamples its clip, :mod:`hotpatch.engine.subsample`).
    The B=1 probe runs on fake tensors (shapes only) where that is cheaper than arithmetic
    (:func:`worth_faking`), on real tensors otherwise or if the model needs values.
    The B=2 probe needs values for the batch-order test, but not inside the blocks: a block
    whose outputs have its inputs' shapes is stood in for by its inputs."""
    example = as_inputs(gm.graph, example)
    frames = frames or example.frames  # the size axes are labelled by (a subsampled clip's tokens: T)
    block_set = set(blocks)
    first = None
    if worth_faking(gm, example):
        try:
            first = _run_first(gm, example, block_set, fake=True)
        except Exception as exc:  # data-dependent or unsupported op: the same probe on real values
            log.debug("fake-tensor probe failed (%s: %s); probing with real values", type(exc).__name__, exc)
    sizes1, runs, output_shapes = first or _run_first(gm, example, block_set, fake=False)

    facts: dict[str, NodeFacts] = {}
    dep = _data_dependence(gm.graph)

    def record2(n, result):
        kind, v1 = sizes1[n.name]
        kind2, v2 = _summarise(result)
        if kind != kind2:
            facts[n.name] = NodeFacts("other")
            return
        if kind == "int":
            count = "F" if v1 == v2 == frames else "BF" if (v1, v2) == (frames, 2 * frames) else None
            facts[n.name] = NodeFacts("int", count=count, value=v1, value2=v2)
        elif kind == "tensor":
            if len(v1) != len(v2):
                facts[n.name] = NodeFacts("other")
                return
            axes, unordered = [], []
            for i, (s1, s2) in enumerate(zip(v1, v2)):
                order = batch_order(result, i, s1) if s2 == 2 * s1 and s1 > 1 else None
                # an order the values cannot tell leaves the axis unread (None) where it matters
                ambiguous = order == "ambiguous" and dep[n.name]
                axes.append(None if ambiguous else axis_atoms(s1, s2, order, frames, joints))
                unordered += [i] if ambiguous else []
            facts[n.name] = NodeFacts("tensor", v1, tuple(axes), data_dependent=dep[n.name], unordered=tuple(unordered))
        else:
            facts[n.name] = NodeFacts("other")

    def call_block2(n, args, kwargs):
        out = _identity_output(runs[n.name], args, kwargs)
        return out if out is not None else gm.get_submodule(n.target)(*args, **kwargs)

    with torch.no_grad():
        _Probe(gm, block_set, record2, call_block2).run(*example.twice().args(gm.graph))
    label_batch_factors(gm, facts, frames, joints)
    return facts, runs, output_shapes


def _clone(v: Any) -> Any:
    return v.clone() if isinstance(v, torch.Tensor) else v


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    map_aggregate(value, lambda v: out.append(v) if isinstance(v, torch.Tensor) else None)
    return out


ATTENDS_OVER_FRAMES = "attends over frames"  # in BlockInfo.why of blocks an attention made temporal
WITH_WEIGHTS = "mixes frames by contracting them with a constant"  # in BlockInfo.why (engine/opaque.py)
BY_PERTURBATION = "no attention followed"  # BlockInfo.why of blocks the perturbation test classified
_RELATIVE_EFFECT = 1e-9  # fallback test: effect on other frames / effect on the perturbed frame


def classify_block(module: nn.Module, run: _BlockRun, facts: dict[str, NodeFacts], real_args) -> tuple[str, str]:
    """Classify a block from what its computation mixes; return ``(kind, why)``.

    ``temporal``: one of its attentions (softmax, scaled_dot_product_attention, fused
    multi-head attention) has a key axis that comes from a frame axis of its input, or,
    without such an attention, another op mixes positions along a frame axis;
    ``spatial``: nothing mixes frames; ``frame-channel``: frames are only ever its feature
    axis (MHFormer's first stage); ``static``: no input carries frames. When the axes cannot
    be followed (an op without a rule), one frame of the input is perturbed instead
    (``real_args()`` gives real arguments if random ones are rejected).
    """
    frame_inputs = {
        i: facts[name] for i, name in enumerate(run.sources)
        if name is not None and name in facts and facts[name].kind == "tensor" and facts[name].time_axes
    }
    if not frame_inputs:
        return "static", "no input carries frames"
    if all(ax == len(f.shape) - 1 for f in frame_inputs.values() for ax in f.time_axes):
        return "frame-channel", "frames are only its feature axis"
    frame_axes = {(i, ax) for i, f in frame_inputs.items() for ax in f.time_axes}  # reduced stages too
    mix = run.mixing
    if mix is not None:
        for m in mix.attentions:
            if m.origins and m.origins & frame_axes:
                return "temporal", f"{m.op} in {m.module or 'the block'} {ATTENDS_OVER_FRAMES}"
        lost = [m for m in mix.attentions + mix.others if m.origins is None]
        lost += [m for m in mix.positions if m.origins & frame_axes]  # a loop over frames (a scan)
        if not lost and not mix.unknown:
            mixers = [m for m in mix.others if m.origins & frame_axes]
            if mixers:  # a contraction with a weight first: the frame-sized blocks pass reads it
                m = next((m for m in mixers if m.constant), mixers[0])
                how = WITH_WEIGHTS if m.constant else "mixes frames"
                return "temporal", f"{m.op} in {m.module or 'the block'} {how} (no attention over them)"
            if mix.attentions:
                where = sorted({m.module or "the block" for m in mix.attentions})
                return "spatial", f"attention in {', '.join(where)} attends over other tokens, not frames"
            return "spatial", "nothing in it mixes frames"
    return _perturbation_kind(module, run, frame_inputs, real_args, _unfollowed(mix, frame_axes))


def _unfollowed(mix: Mixing | None, frame_axes: set) -> str:
    """What kept the axes from being followed: the first op without a rule, or the block itself."""
    if mix is None:
        return "the block could not run under the axis tracker"
    lost = [f"{m.op} in {m.module or 'the block'}" for m in mix.attentions + mix.others if m.origins is None]
    taken = [f"{m.op} of single frames in {m.module or 'the block'}" for m in mix.positions if m.origins & frame_axes]
    return (mix.unknown + lost + taken + ["?"])[0]


def _perturbation_kind(module: nn.Module, run: _BlockRun, frame_inputs: dict[int, NodeFacts], real_args,
                       unfollowed: str = "") -> tuple[str, str]:
    """Fallback: does changing one frame of the input change the output at other frames?
    Scale-free: the effect on other frames is compared with the effect on that frame. ``why``
    starts with :data:`BY_PERTURBATION` and names what could not be followed."""
    first = next(iter(frame_inputs.values()))
    frames_at = first.shape[first.time_axes[0]]
    t0 = frames_at // 2
    gen = torch.Generator().manual_seed(0)

    def randomised(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        if v.is_floating_point():
            return torch.randn(v.shape, generator=gen, dtype=v.dtype)
        return torch.zeros(v.shape, dtype=v.dtype)

    def effect(args: tuple, kwargs: dict) -> tuple[float, float]:
        leaves, spec = tree_flatten((args, kwargs))
        tensors = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
        bumped = list(leaves)
        for k, f in frame_inputs.items():
            j = tensors[k]
            v = leaves[j].clone()
            frame = v.select(f.time_axes[0], t0)
            frame.add_(torch.randn(frame.shape, generator=gen).to(v) * (1.0 + v.abs().mean()))
            bumped[j] = v
        new_args, new_kwargs = tree_unflatten(bumped, spec)
        with torch.no_grad():
            ref = _flat_tensors(module(*args, **kwargs))
            new = _flat_tensors(module(*new_args, **new_kwargs))
        other = own = 0.0
        for r, p in zip(ref, new):
            for ax in (i for i, s in enumerate(r.shape) if s == frames_at):
                d = (r - p).abs().movedim(ax, 0).reshape(frames_at, -1).amax(dim=1)
                own = max(own, float(d[t0]))
                other = max(other, float(torch.cat([d[:t0], d[t0 + 1 :]]).max(), ) if frames_at > 1 else 0.0)
        return other, own

    try:
        other, own = effect(*map_aggregate((run.args, run.kwargs), randomised))
    except Exception:
        other, own = effect(*real_args())
    head = f"{BY_PERTURBATION} ({unfollowed} could not be followed)" if unfollowed else BY_PERTURBATION
    if other > _RELATIVE_EFFECT * max(own, 1e-30):
        return "temporal", f"{head}; changing one frame changes the others (relative effect {other / max(own, 1e-30):.1e})"
    return "spatial", f"{head}; changing one frame leaves the others unchanged"


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (torch.fx appends the node, the traceback and a tlparse link)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def analyse(gm: fx.GraphModule, blocks: list[str], example: torch.Tensor | Inputs) -> Plan:
    """Probe ``gm`` with ``example`` (one clip, B=1, or :class:`Inputs` for a model with several
    inputs) and build the :class:`Plan`."""
    example = as_inputs(gm.graph, example)
    clip = example.clip
    frames = example.frames
    joints = clip.shape[2] if clip.dim() == 4 else None
    try:
        facts, runs, output_shapes = probe(gm, example, blocks, joints)
        block_nodes = {n.name for n in gm.graph.nodes if n.op == "call_module" and n.target in blocks}
        subsample = find_subsample(gm.graph, facts, block_nodes, frames)
        if subsample is not None:  # the tokens are every k-th frame: label axes by their count
            frames = subsample.tokens
            facts, runs, output_shapes = probe(gm, example, blocks, joints, frames=frames)
    except Exception as exc:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in example.values.items())
        what = f"of shape {tuple(clip.shape)}" if len(example) == 1 else f"({shapes})"
        raise InputShapeError(
            f"the model rejects example_input {what} (or a batch of two "
            f"copies of it): {in_words(exc)}. Pass example_input= with one clip the "
            "model accepts."
        ) from exc

    real: dict[str, tuple] = {}

    def real_args(name: str):
        def get() -> tuple:  # the blocks' real B=1 arguments, computed once and only if needed
            if not real:
                _, real_runs, _ = _run_first(gm, example, set(blocks), fake=False)
                real.update({k: (r.args, r.kwargs) for k, r in real_runs.items()})
            return real[name]
        return get

    reductions = find_reductions(gm, facts, frames, joints)
    infos: list[BlockInfo] = []
    notes: list[str] = []
    for n in gm.graph.nodes:
        if n.op != "call_module" or n.target not in blocks:
            continue
        kind, why = classify_block(gm.get_submodule(n.target), runs[n.name], facts, real_args(n.name))
        infos.append(BlockInfo(n.target, n.name, kind, why=why))
        if why.startswith(BY_PERTURBATION):
            notes.append(f"{n.target}: {kind} by perturbation: {why}")

    assign_levels(gm.graph, infos)
    levels = max((b.level for b in infos), default=0)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    out_layouts = [
        facts[a.name].layout(joints).describe()
        for a in output.all_input_nodes
        if a.name in facts and facts[a.name].carries_frames and None not in facts[a.name].axes
    ]
    dep = _data_dependence(gm.graph)
    plan = Plan(tuple(clip.shape), frames, joints, infos, levels, out_layouts, output_shapes, facts, dep, notes)
    plan.reductions = reductions
    plan.inputs = _input_infos(gm, example, facts)
    plan.example = example
    if subsample is not None:
        plan.clip_frames = example.frames
        plan.note(subsample.describe())
    for r in reductions:
        plan.note(f"strided stage {r.describe()}: later axes of length {r.length_out} are reduced frame axes")
    return plan


def _input_infos(gm: fx.GraphModule, example: Inputs, facts: dict[str, NodeFacts]) -> list[InputInfo]:
    """Each traced input with the axis the probes labelled as frames (None if there is none)."""
    infos = []
    for n in gm.graph.nodes:
        if n.op == "placeholder" and n.target in example.values:
            value = example.values[n.target]
            f = facts.get(n.name)
            axes = f.frame_axes if f is not None and f.kind == "tensor" else []
            infos.append(InputInfo(n.target, tuple(value.shape), value.dtype, axes[0] if axes else None))
    return infos


def assign_levels(graph: fx.Graph, infos: list[BlockInfo]) -> None:
    by_node = {b.node: b for b in infos}
    depth: dict[str, int] = {}
    for n in graph.nodes:
        d = max((depth.get(a.name, 0) for a in n.all_input_nodes), default=0)
        b = by_node.get(n.name)
        if b is not None and b.kind == "temporal":
            d += 1
            b.level = d
        depth[n.name] = d
