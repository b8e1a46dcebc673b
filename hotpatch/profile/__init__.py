"""Params, FLOPs (by several labelled counters), latency/FPS and peak memory of a model.

Every number is measured on a private deep copy of the model in eval mode, so the model
you pass in is never touched: its state_dict, training flag, hooks and outputs stay as
they were. ``compare`` profiles two models the same way and times them interleaved.

FLOP counters (each states what it counts; they do not agree, by design):

* ``paper``  — FLOPs = 2 × MACs of ``nn.Linear`` / ``nn.Conv1d/2d/3d`` layers (and the
  projections of ``nn.MultiheadAttention``), via forward hooks. Attention matmuls, norms,
  activations and token clustering are not counted. This is how the HoT paper counted.
* ``fvcore`` — fvcore's ``FlopCountAnalysis`` total, which is MACs (one per multiply-add)
  of linear/conv/matmul/einsum/bmm plus norms and upsampling. Ops it does not know count
  as zero and are listed in ``FlopCount.unsupported``.
* ``torch``  — ``torch.utils.flop_counter.FlopCounterMode`` total: 2 FLOPs per MAC of
  mm/bmm/conv/attention. ``scaled_dot_product_attention``'s CPU kernel and the
  ``nn.MultiheadAttention`` fast path are given formulas here (torch counts them as 0).
* ``thop``   — 2 × ``thop.profile`` MACs (per-module rules), run last on the private copy
  (some thop versions leave ``total_ops`` buffers behind).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import io
import logging
import math
import statistics
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from hotpatch.engine.inputs import clip_of, positional
from hotpatch.errors import ConfigError, InputShapeError

log = logging.getLogger(__name__)

__all__ = ["BlockFlops", "Comparison", "FlopCount", "Latency", "Memory", "Profile", "compare", "profile"]

COUNTERS: dict[str, tuple[str, str]] = {
    "paper": ("FLOPs", "2 × MACs of Linear/Conv layers only (HoT paper convention)"),
    "fvcore": ("MACs", "fvcore FlopCountAnalysis: 1 per multiply-add, incl. matmuls and norms"),
    "torch": ("FLOPs", "torch FlopCounterMode: 2 per MAC, incl. attention matmuls"),
    "thop": ("FLOPs", "2 × thop.profile MACs (per-module rules)"),
}
PIPELINES = ("seq2seq", "seq2frame")
ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------- results


@dataclass
class FlopCount:
    """One counter's total. ``value`` is in ``unit`` (``"FLOPs"`` or ``"MACs"``); None if it failed."""

    counter: str
    value: int | None
    unit: str
    counts: str
    unsupported: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Latency:
    """Wall-clock seconds of one forward, in milliseconds, over ``repeats`` runs after ``warmup``."""

    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    threads: int
    samples_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class Memory:
    """Peak bytes of one forward (and of one training step) above ``baseline_bytes``.

    ``method`` says how it was measured: on CUDA, ``torch.cuda.max_memory_allocated`` after a
    reset, minus what was allocated before the call; on CPU, the peak of live tensor storages
    newly created by ATen ops during the call (activations, outputs, gradients), tracked with
    a dispatch mode. CPU numbers exclude parameters, buffers and the input (those are
    ``baseline_bytes``) and scratch memory a kernel allocates internally.
    """

    baseline_bytes: int
    forward_peak_bytes: int
    train_peak_bytes: int | None
    method: str


@dataclass
class BlockFlops:
    """Paper-convention FLOPs of one transformer block (``is_block``) or of another top-level part."""

    name: str
    flops: int
    is_block: bool
    frames: int | None = None  # frames the block sees, for a model patched by hotpatch


@dataclass
class Profile:
    """What ``profile`` measured. ``fps`` is the FPS of ``pipeline``; both kinds are kept."""

    params: int
    trainable_params: int
    flops: dict[str, FlopCount]
    batch: int
    frames: int
    pipeline: str
    device: str
    latency: Latency | None = None
    fps_seq2seq: float | None = None
    fps_seq2frame: float | None = None
    memory: Memory | None = None
    blocks: list[BlockFlops] | None = None
    compile: str | None = None  # torch.compile mode the latency was timed with (None: eager)
    compile_seconds: float | None = None  # the first (compiling) call, not part of the latency

    @property
    def fps(self) -> float | None:
        return self.fps_seq2seq if self.pipeline == "seq2seq" else self.fps_seq2frame

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["fps"] = self.fps
        return d

    def table(self) -> Any:
        """A rich renderable (tables of the numbers and, if measured, of the blocks)."""
        from rich.console import Group

        parts = [_profile_table(self)]
        if self.blocks is not None:
            parts.append(_blocks_table([self.blocks]))
        return Group(*parts)

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        return _render_text(self.table())


@dataclass
class Comparison:
    """Two profiles measured the same way; latency timed interleaved. ``speedup`` = before/after median."""

    before: Profile
    after: Profile
    speedup: float | None

    def change_pct(self) -> dict[str, float | None]:
        """% change (after vs before) of every number both profiles have."""
        a, b = _flat_numbers(self.before), _flat_numbers(self.after)
        return {k: _pct(a[k], b.get(k)) for k in a}

    def block_rows(self) -> list[tuple[str, int | None, int | None]]:
        """(name, before FLOPs, after FLOPs) for the union of both block lists, in forward order."""
        before = {b.name: b.flops for b in self.before.blocks or []}
        after = {b.name: b.flops for b in self.after.blocks or []}
        names = _merge_order([b.name for b in self.before.blocks or []],
                             [b.name for b in self.after.blocks or []])
        return [(n, before.get(n), after.get(n)) for n in names]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        d: dict[str, Any] = {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "speedup": self.speedup,
            "change_pct": self.change_pct(),
        }
        if self.before.blocks is not None or self.after.blocks is not None:
            d["blocks"] = [
                {"name": n, "before": x, "after": y, "change_pct": _pct(x, y)}
                for n, x, y in self.block_rows()
            ]
        return d

    def table(self) -> Any:
        """A rich renderable: before, after and % change of each number, then the blocks."""
        from rich.console import Group

        parts = [_comparison_table(self)]
        if self.before.blocks is not None:
            parts.append(_blocks_table([self.before.blocks, self.after.blocks or []], self.block_rows()))
        return Group(*parts)

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        return _render_text(self.table())


# ----------------------------------------------------------------------------- public API


def profile(
    model: nn.Module,
    example_input: Any = None,
    *,
    counters: Sequence[str] | str = ("fvcore", "paper"),
    fps: bool = True,
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    by_block: bool = False,
    blocks: Sequence[str] | None = None,
    train: bool = False,
    pipeline: str = "seq2seq",
    memory: bool = True,
    frames: int | None = None,
    compile: str | None = None,
    progress: ProgressFn | None = None,
) -> Profile:
    """Measure ``model`` on ``example_input`` (a tensor, a tuple of positional arguments or, for a
    model with several inputs, a dict of them by name). Every number is per call (one forward).

    ``example_input=None`` works for a model patched by ``hotpatch.apply``: a zero clip of
    batch 1 and the patch's ``hotpatch_config["input_shape"]``.

    ``counters`` picks FLOP counters from ``"paper"``, ``"fvcore"``, ``"torch"``, ``"thop"``.
    ``fps`` times ``repeats`` forwards after ``warmup`` with ``threads`` CPU threads (default:
    the current count; restored afterwards). ``frames`` (default ``example_input.shape[1]``)
    gives seq2seq FPS = batch·frames / median latency; seq2frame FPS = batch / median latency.
    ``memory`` measures peak memory of one forward, and of one training step (forward and
    backward of the output's sum) if ``train``. ``by_block`` adds paper FLOPs per block
    (``blocks`` or ``hotpatch.engine.trace.find_blocks(model)``). ``progress(done, total)`` is
    called after each timed forward. ``compile`` (``"default"``, ``"reduce-overhead"``,
    ``"max-autotune"``) times ``torch.compile(model, mode=compile, fullgraph=True)`` instead of
    the eager model; its first, compiling call is timed apart (``compile_seconds``). The model
    is never modified: all runs use a deep copy.
    """
    return _run([model], example_input, counters=counters, fps=fps, device=device, repeats=repeats,
                warmup=warmup, threads=threads, by_block=by_block, blocks=blocks, train=train,
                pipeline=pipeline, memory=memory, frames=frames, compile=compile, progress=progress)[0]


def compare(
    original: nn.Module,
    patched: nn.Module,
    example_input: Any = None,
    *,
    counters: Sequence[str] | str = ("fvcore", "paper"),
    fps: bool = True,
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    by_block: bool = False,
    blocks: Sequence[str] | None = None,
    train: bool = False,
    pipeline: str = "seq2seq",
    memory: bool = True,
    frames: int | None = None,
    compile: str | None = None,
    progress: ProgressFn | None = None,
) -> Comparison:
    """Profile ``original`` and ``patched`` with the same settings (see ``profile``).

    ``example_input=None``: a zero clip of batch 1 shaped by ``patched.hotpatch_config["input_shape"]``.

    Latency is timed interleaved (ABBA order) so drift hits both alike; ``progress`` counts
    the forwards of both. Block names found on ``original`` are used for both models, plus
    any the patched model adds.
    """
    kwargs = dict(counters=counters, fps=fps, device=device, repeats=repeats, warmup=warmup,
                  threads=threads, by_block=by_block, blocks=blocks, train=train, pipeline=pipeline,
                  memory=memory, frames=frames, compile=compile, progress=progress)
    before, after = _run([original, patched], example_input, **kwargs)
    speedup = None
    if before.latency and after.latency and after.latency.median_ms > 0:
        speedup = before.latency.median_ms / after.latency.median_ms
    return Comparison(before=before, after=after, speedup=speedup)


def profile_many(models: Sequence[nn.Module], example_input: Any = None, **kwargs: Any) -> list[Profile]:
    """Profile several models with the same settings (see ``profile``), timing them
    interleaved (ABBA order) in one run; returns one ``Profile`` per model."""
    return _run(list(models), example_input, **kwargs)


# ----------------------------------------------------------------------------- driver


def _run(
    models: list[nn.Module],
    example_input: Any,
    *,
    counters: Sequence[str] | str = ("fvcore", "paper"),
    fps: bool = True,
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    by_block: bool = False,
    blocks: Sequence[str] | None = None,
    train: bool = False,
    pipeline: str = "seq2seq",
    memory: bool = True,
    frames: int | None = None,
    compile: str | None = None,
    progress: ProgressFn | None = None,
) -> list[Profile]:
    names = _check_counters(counters)
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline={pipeline!r} is unknown; expected one of {', '.join(PIPELINES)}")
    if not isinstance(repeats, int) or repeats < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"repeats={repeats!r}, warmup={warmup!r}: need repeats >= 1 and warmup >= 0")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r}: pass a positive int, or None to keep the current count")
    if compile is not None and compile not in COMPILE_MODES:
        raise ConfigError(f"compile={compile!r} is unknown; use one of {', '.join(COMPILE_MODES)} (or None: eager)")
    for m in models:
        if not isinstance(m, nn.Module):
            raise ConfigError(f"expected an nn.Module to profile, got {type(m).__name__}")
    dev = _check_device(device)
    if example_input is None:
        example_input = _default_input(models)
    if isinstance(example_input, dict):  # keyword inputs of a model with several: forward's order
        example_input = _positional(models[-1], example_input)
    args = _as_args(example_input, dev)
    first = clip_of([t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)])
    batch = int(first.shape[0]) if first.dim() else 1
    if frames is None:
        frames = int(first.shape[1]) if first.dim() >= 2 else 1
    block_names: list[list[str]] = [[] for _ in models]
    if by_block:
        base = _block_names(models[0], blocks)
        block_names = [base] + [
            base if blocks is not None else base + [b for b in _block_names(m, None) if b not in base]
            for m in models[1:]
        ]

    works = [_work_copy(m, dev) for m in models]
    results = []
    old_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            for model, work, per_model in zip(models, works, block_names):
                macs = _probe(work, args)
                res = Profile(
                    params=sum(p.numel() for p in model.parameters()),
                    trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                    flops={},
                    batch=batch,
                    frames=frames,
                    pipeline=pipeline,
                    device=str(dev),
                )
                results.append(res)
                for name in names:
                    if name == "paper":
                        res.flops[name] = FlopCount(name, 2 * sum(macs.values()), *COUNTERS[name])
                    elif name != "thop":
                        res.flops[name] = _count(name, work, args)
                if by_block:
                    tokens = getattr(getattr(model, "hotpatch_plan", None), "tokens", None)
                    res.blocks = _paper_blocks(macs, per_model, tokens)
            if fps:
                timed = works
                if compile is not None:
                    timed, seconds = _compiled(works, args, dev, compile)
                    for res, sec in zip(results, seconds):
                        res.compile, res.compile_seconds = compile, sec
                samples = _time(timed, args, dev, repeats, warmup, progress)
                for res, s in zip(results, samples):
                    res.latency = _latency(s, repeats, warmup, torch.get_num_threads())
                    sec = res.latency.median_ms / 1e3
                    res.fps_seq2seq = batch * frames / sec if sec > 0 else None
                    res.fps_seq2frame = batch / sec if sec > 0 else None
            for res, work in zip(results, works):
                if memory:
                    res.memory = _memory(work, args, dev, train)
                if "thop" in names:  # last: it may leave buffers behind on the copy
                    res.flops["thop"] = _count("thop", work, args)
                res.flops = {n: res.flops[n] for n in names}
    finally:
        torch.set_num_threads(old_threads)
    return results


def _check_counters(counters: Sequence[str] | str) -> list[str]:
    names = [c.strip() for c in counters.split(",")] if isinstance(counters, str) else list(counters)
    bad = [c for c in names if c not in COUNTERS]
    if bad:
        raise ConfigError(f"unknown FLOP counter(s) {bad}; valid counters are {', '.join(COUNTERS)}")
    return list(dict.fromkeys(names))


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but CUDA is not available; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r} is not supported; use 'cpu' or 'cuda'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _default_input(models: list[nn.Module]) -> Any:
    """A zero clip (1, F, J, C) from the ``hotpatch_config`` of a patched model among ``models``;
    for a model patched with several inputs, all of them (positional, in ``forward``'s order)."""
    from hotpatch.patch import example_from_config

    for m in reversed(models):
        config = getattr(m, "hotpatch_config", None) or {}
        if "inputs" in config:
            return _positional(m, example_from_config(config, getattr(m, "hotpatch_example", None), zeros=True))
        if config.get("input_shape"):
            return torch.zeros(1, *config["input_shape"])
    raise InputShapeError(
        f"example_input=None, but {type(models[-1]).__name__} was not patched by hotpatch.apply, so "
        "its input shape is unknown; pass example_input=torch.randn(1, F, J, C)")


def _positional(model: nn.Module, example: dict) -> tuple[Any, ...]:
    args, rest = positional(model, example)
    if rest:
        raise ConfigError(f"example_input gives {sorted(rest)} but not every parameter of forward before them; "
                          "pass the inputs as a tuple in forward's order")
    return args


def _as_args(example_input: Any, dev: torch.device) -> tuple[Any, ...]:
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not any(isinstance(t, torch.Tensor) for t in tree_flatten(args)[0]):
        raise ConfigError(
            f"example_input must be a tensor, a tuple of positional arguments or a dict of keyword inputs; "
            f"got {type(example_input).__name__}")
    return tree_map(lambda t: t.to(dev) if isinstance(t, torch.Tensor) else t, args)


def _work_copy(model: nn.Module, dev: torch.device) -> nn.Module:
    try:
        work = copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - anything deepcopy raises means the same thing
        raise ConfigError(
            f"{type(model).__name__} cannot be deep-copied ({e}); profiling runs on a copy so that "
            f"the model is never changed. Make the model copyable (e.g. drop open files/locks).") from e
    return work.eval().to(dev)


def _probe(work: nn.Module, args: tuple[Any, ...]) -> dict[str, int]:
    """First forward: checks the input is accepted and returns paper MACs per module."""
    shapes = [tuple(t.shape) for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
    try:
        return _paper_macs_by_module(work, args)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise InputShapeError(
            f"{type(work).__name__} failed on the example input of shape(s) {shapes}: "
            f"{type(e).__name__}: {e}. Pass an input the model accepts, e.g. (batch, frames, "
            f"joints, channels).") from e


# ----------------------------------------------------------------------------- counters


_LINEAR_CONV = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layer_macs(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    """MACs of one call of a Linear / Conv / MultiheadAttention (projections only)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    # nn.MultiheadAttention: q/k/v in-projections and out_proj (its out_proj is not called as a module)
    q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")[len(args):]])[:3]
    e = module.embed_dim
    return e * (2 * q.numel() + k.numel() + v.numel())


def _paper_macs_by_module(work: nn.Module, args: tuple[Any, ...]) -> dict[str, int]:
    """Paper-convention MACs per qualified module name, in the order the modules first ran."""
    macs: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
            macs[name] = macs.get(name, 0) + _layer_macs(module, a, kw, out)
        return hook

    try:
        for name, m in work.named_modules():
            if isinstance(m, (*_LINEAR_CONV, nn.MultiheadAttention)):
                handles.append(m.register_forward_hook(hook_for(name), with_kwargs=True))
        with torch.no_grad():
            work(*args)
    finally:
        for h in handles:
            h.remove()
    return macs


def _count(name: str, work: nn.Module, args: tuple[Any, ...]) -> FlopCount:
    unit, counts = COUNTERS[name]
    try:
        if name == "torch":
            return FlopCount(name, _torch_flops(work, args), unit, counts)
        if name == "fvcore":
            value, unsupported = _fvcore_macs(work, args)
            return FlopCount(name, value, unit, counts, unsupported)
        if name == "thop":
            return FlopCount(name, _thop_flops(work, args), unit, counts)
    except Exception as e:  # noqa: BLE001 - a counter that cannot handle a model is reported, not fatal
        log.warning("FLOP counter %r failed on %s: %s: %s", name, type(work).__name__, type(e).__name__, e)
        return FlopCount(name, None, unit, counts, error=f"{type(e).__name__}: {e}")
    raise AssertionError(name)


def _fvcore_macs(work: nn.Module, args: tuple[Any, ...]) -> tuple[int, dict[str, int]]:
    with warnings.catch_warnings():  # import-time deprecation noise
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    analysis = (FlopCountAnalysis(work, args)
                .unsupported_ops_warnings(False)
                .uncalled_modules_warnings(False)
                .tracer_warnings("all"))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        total = int(analysis.total())
    summary: dict[str, int] = dict(analysis.unsupported_ops())
    modules = dict(work.named_modules())
    uncalled = [n for n in analysis.uncalled_modules()  # containers without forward are not news
                if n in modules and type(modules[n]).forward is not nn.Module.forward]
    if uncalled:
        summary["uncalled modules"] = len(uncalled)
        log.debug("fvcore: modules never called while tracing: %s", sorted(uncalled))
    for w in Counter(w.category.__name__ for w in caught).items():
        summary[w[0]] = w[1]
    if summary:
        log.debug("fvcore counted 0 for: %s", summary)
    return total, summary


def _sdpa_cpu_flop(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                   *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """SDPA forward: Q·Kᵀ and P·V, 2 FLOPs per MAC: 2·B·H·Lq·Lk·(D + Dv)."""
    *batch, lq, d = query_shape
    lk, dv = value_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * lq * lk * (d + dv)


def _sdpa_cpu_backward_flop(grad_out_shape: Sequence[int], query_shape: Sequence[int],
                            key_shape: Sequence[int], value_shape: Sequence[int],
                            *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """SDPA backward: recompute scores, then grads of P, V, Q, K: 2·B·H·Lq·Lk·(3D + 2Dv)."""
    *batch, lq, d = query_shape
    lk, dv = value_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * lq * lk * (3 * d + 2 * dv)


def _native_mha_flop(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                     embed_dim: int, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """nn.MultiheadAttention fast path: 4 projections plus the two attention matmuls."""
    e = embed_dim
    q, k, v = math.prod(query_shape), math.prod(key_shape), math.prod(value_shape)
    return 2 * e * (2 * q + k + v) + 4 * q * key_shape[-2]


def _torch_custom_mapping() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {}
    for op, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
                   ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop),
                   ("_native_multi_head_attention", _native_mha_flop)):
        if hasattr(aten, op):
            mapping[getattr(aten, op)] = fn
    return mapping


def _torch_flops(work: nn.Module, args: tuple[Any, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_torch_custom_mapping())
    # FlopCounterMode's module tracker asserts on views of grad-requiring parameters made under
    # no_grad (e.g. ``queries.expand(...)``); the copy's parameters need no grad for counting.
    flags = [(p, p.requires_grad) for p in work.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with counter, torch.no_grad():
            work(*args)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return int(counter.get_total_flops())


def _thop_flops(work: nn.Module, args: tuple[Any, ...]) -> int:
    with warnings.catch_warnings():  # import-time deprecation noise (distutils, jit.script)
        warnings.simplefilter("ignore")
        import thop

    # ``work`` is profile's private copy and this is its last use: thop may register
    # ``total_ops``/``total_params`` buffers on every module it visits and leave them there.
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(work, inputs=args, verbose=False)
    if out.getvalue().strip():
        log.debug("thop: %s", out.getvalue().strip())
    return int(round(2 * float(macs)))


# ----------------------------------------------------------------------------- blocks


def _block_names(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    if blocks is not None:
        missing = [b for b in blocks if b not in modules]
        if missing:
            sample = [n for n in modules if n][:8]
            raise ConfigError(f"blocks {missing} are not submodules of {type(model).__name__}; "
                              f"pass qualified names such as {sample}")
        return list(blocks)
    from hotpatch.engine.trace import owns_block_parts, find_blocks

    found = find_blocks(model)
    if not found:
        # A GraphModule keeps qualified names but turns ModuleLists into plain Modules:
        # look for numbered children that own attention and an MLP, innermost first.
        cands = [n for n, m in modules.items()
                 if n and n.rsplit(".", 1)[-1].isdigit() and owns_block_parts(m)]
        found = [n for n in cands if not any(o != n and o.startswith(n + ".") for o in cands)]
    if not found:
        log.info("no transformer blocks found in %s; pass blocks=[...] for a per-block breakdown",
                 type(model).__name__)
    return found


def _paper_blocks(macs_by_module: dict[str, int], block_names: Sequence[str],
                  frames: dict[str, int] | None = None) -> list[BlockFlops]:
    """Paper FLOPs grouped by block; layers outside every block are grouped by top-level module.
    ``frames``: the frames each block sees (a patched model's ``hotpatch_plan.tokens``)."""
    by_len = sorted(block_names, key=len, reverse=True)
    groups: dict[str, int] = {}
    for name, macs in macs_by_module.items():
        key = next((b for b in by_len if b == "" or name == b or name.startswith(b + ".")),
                   None)
        if key is None:
            key = name.split(".", 1)[0] or "(model)"
        groups[key] = groups.get(key, 0) + 2 * macs
    for b in block_names:
        groups.setdefault(b, 0)
    names = set(block_names)
    frames = frames or {}
    return [BlockFlops(n, f, n in names, frames.get(n)) for n, f in groups.items()]


def _merge_order(first: list[str], second: list[str]) -> list[str]:
    """``first``, with the names only in ``second`` inserted after their predecessor there."""
    merged = list(first)
    prev = None
    for n in second:
        if n not in merged:
            merged.insert(merged.index(prev) + 1 if prev is not None else 0, n)
        prev = n
    return merged


# ----------------------------------------------------------------------------- speed


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(works: list[nn.Module], args: tuple[Any, ...], dev: torch.device, repeats: int,
          warmup: int, progress: ProgressFn | None) -> list[list[float]]:
    """Seconds per forward for each model; models alternate (ABBA) so drift hits all alike."""
    total = len(works) * (warmup + repeats)
    done = 0
    samples: list[list[float]] = [[] for _ in works]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                order = range(len(works)) if i % 2 == 0 else reversed(range(len(works)))
                for j in order:
                    _sync(dev)
                    t0 = time.perf_counter()
                    works[j](*args)
                    _sync(dev)
                    dt = time.perf_counter() - t0
                    if i >= warmup:
                        samples[j].append(dt)
                    done += 1
                    if progress is not None:
                        progress(done, total)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def _compiled(works: list[nn.Module], args: tuple[Any, ...], dev: torch.device, mode: str
              ) -> tuple[list[Any], list[float]]:
    """``torch.compile`` each model (whole graph) and run it once; return them and the seconds of that call."""
    out, seconds = [], []
    for work in works:
        compiled = torch.compile(work, mode=mode, fullgraph=True)
        _sync(dev)
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # inductor's deprecation chatter
                compiled(*args)
        except Exception as exc:  # dynamo / inductor raise many types
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ConfigError(f"torch.compile(mode={mode!r}, fullgraph=True) failed for {type(work).__name__}: "
                              f"{first[:300]}; profile without --compile") from exc
        _sync(dev)
        seconds.append(time.perf_counter() - t0)
        out.append(compiled)
    return out, seconds


def _latency(seconds: list[float], repeats: int, warmup: int, threads: int) -> Latency:
    ms = [s * 1e3 for s in seconds]
    if len(ms) >= 2:
        q25, _, q75 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q25 = q75 = ms[0]
    return Latency(median_ms=statistics.median(ms), q25_ms=q25, q75_ms=q75, min_ms=min(ms),
                   max_ms=max(ms), repeats=repeats, warmup=warmup, threads=threads, samples_ms=ms)


# ----------------------------------------------------------------------------- memory


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        s = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested, ...
        return None
    return (s.data_ptr(), s.nbytes()) if s.nbytes() else None


class _LiveStorage(TorchDispatchMode):
    """Tracks bytes of tensor storages created by ATen ops while active, and their peak.

    A storage counts from the op that creates it (an output storage none of the op's inputs
    has) until the last tensor that was seen holding it is freed. Views and in-place results
    add no bytes. Storages that existed before (parameters, inputs) are never counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._holders: dict[tuple[int, int], int] = {}
        self._seen: set[int] = set()
        self._finalizers: list[weakref.finalize] = []

    def _release(self, key: tuple[int, int], tid: int) -> None:
        self._seen.discard(tid)
        self._holders[key] -= 1
        if self._holders[key] == 0:
            del self._holders[key]
            self.live -= key[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or id(t) in self._seen:
                continue
            key = _storage_key(t)
            if key is None or (key in inputs and key not in self._holders):
                continue
            if key not in self._holders:
                self._holders[key] = 0
                self.live += key[1]
                self.peak = max(self.peak, self.live)
            self._holders[key] += 1
            self._seen.add(id(t))
            self._finalizers.append(weakref.finalize(t, self._release, key, id(t)))
        return out

    def __exit__(self, *exc: Any) -> Any:
        result = super().__exit__(*exc)
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()
        return result


def _state_bytes(work: nn.Module, args: tuple[Any, ...]) -> int:
    storages = {}
    tensors = [*work.parameters(), *work.buffers(),
               *(t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor))]
    for t in tensors:
        key = _storage_key(t)
        if key is not None:
            storages[key] = key[1]
    return sum(storages.values())


def _train_step(work: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward in train mode and backward of the sum of the outputs (``work`` is a private copy)."""
    work.train()
    try:
        with torch.enable_grad():
            out = work(*args)
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
            if tensors:
                sum(t.float().sum() for t in tensors).backward()
            del out, tensors
    finally:
        work.eval()
        work.zero_grad(set_to_none=True)


def _memory(work: nn.Module, args: tuple[Any, ...], dev: torch.device, train: bool) -> Memory:
    """Peak memory of one forward and, if ``train``, of one training step of ``work`` (a copy)."""
    def forward() -> None:
        with torch.no_grad():
            work(*args)

    steps: list[Callable[[], None]] = [forward]
    if train:
        steps.append(lambda: _train_step(work, args))
    peaks: list[int] = []
    base = None
    for step in steps:
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            base = before if base is None else base
            step()
            torch.cuda.synchronize(dev)
            peaks.append(torch.cuda.max_memory_allocated(dev) - before)
        else:
            with _LiveStorage() as tracker:
                step()
            peaks.append(tracker.peak)
    if dev.type == "cuda":
        method = "torch.cuda.max_memory_allocated after a reset, minus memory allocated before the call"
    else:
        method = ("peak of live tensor storages created by ATen ops during the call "
                  "(excludes parameters, buffers, input and kernel-internal scratch)")
        base = _state_bytes(work, args)
    return Memory(baseline_bytes=int(base or 0), forward_peak_bytes=int(peaks[0]),
                  train_peak_bytes=int(peaks[1]) if train else None, method=method)


# ----------------------------------------------------------------------------- rendering


def _flat_numbers(p: Profile) -> dict[str, float | None]:
    d: dict[str, float | None] = {"params": p.params, "trainable_params": p.trainable_params}
    for name, f in p.flops.items():
        d[f"flops.{name}"] = f.value
    if p.latency is not None:
        d["latency_ms"] = p.latency.median_ms
        d["fps_seq2seq"] = p.fps_seq2seq
        d["fps_seq2frame"] = p.fps_seq2frame
    if p.memory is not None:
        d["memory_forward_bytes"] = p.memory.forward_peak_bytes
        if p.memory.train_peak_bytes is not None:
            d["memory_train_bytes"] = p.memory.train_peak_bytes
    return d


def _pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return 100.0 * (after - before) / before


def _si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.4g} {unit}".rstrip()


def _ms(x: float) -> str:
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _bytes(x: float | None) -> str:
    if x is None:
        return "—"
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {suffix}"
    return f"{int(x)} B"


def _rows(p: Profile) -> list[tuple[str, str, float | None]]:
    """(label, formatted value, raw value) for each number of a profile."""
    rows: list[tuple[str, str, float | None]] = [
        ("Params", _si(p.params), p.params),
        ("Params (trainable)", _si(p.trainable_params), p.trainable_params),
    ]
    for name, f in p.flops.items():
        rows.append((f"{f.unit} ({name})",
                     _si(f.value) if f.error is None else "failed", f.value))
    if p.latency is not None:
        lat = p.latency
        rows.append((f"Latency ms, median (IQR) of {lat.repeats}",
                     f"{_ms(lat.median_ms)} ({_ms(lat.q25_ms)}–{_ms(lat.q75_ms)})", lat.median_ms))
        rows.append((f"FPS seq2seq (batch {p.batch} × {p.frames} frames / s)",
                     _si(p.fps_seq2seq), p.fps_seq2seq))
        rows.append((f"FPS seq2frame (batch {p.batch} clips / s)", _si(p.fps_seq2frame), p.fps_seq2frame))
    if p.compile_seconds is not None:
        rows.append((f"Compile seconds (first call, {p.compile})", f"{p.compile_seconds:.1f}", p.compile_seconds))
    if p.memory is not None:
        rows.append(("Peak memory, one forward (above weights+input)",
                     _bytes(p.memory.forward_peak_bytes), p.memory.forward_peak_bytes))
        if p.memory.train_peak_bytes is not None:
            rows.append(("Peak memory, one training step", _bytes(p.memory.train_peak_bytes),
                         p.memory.train_peak_bytes))
    return rows


def _legend(p: Profile) -> list[str]:
    lines = [f"{f.unit} ({name}): {f.counts}" for name, f in p.flops.items()]
    lines.insert(0, "Numbers are per call (one forward of the batch)")
    if p.latency is not None:  # here, not in the row label: a long label would wrap in a narrow table
        mode = f", compiled ({p.compile})" if p.compile else ", eager"
        lines.insert(0, f"Latency: {p.latency.threads} thread(s) on {p.device}{mode}")
    return lines


def _notes(p: Profile) -> list[str]:
    notes = []
    for name, f in p.flops.items():
        if f.error:
            notes.append(f"{name} failed: {f.error}")
        elif f.unsupported:
            ops = ", ".join(f"{k} ×{v}" for k, v in sorted(f.unsupported.items(), key=lambda kv: -kv[1])[:6])
            notes.append(f"{name}, counted as 0 or warned: {ops}")
    return notes


def _profile_table(p: Profile) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="hotpatch profile", caption=escape("\n".join(_legend(p) + _notes(p))) or None,
              caption_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for label, text, _ in _rows(p):
        t.add_row(escape(label), text)
    return t


def _comparison_table(c: Comparison) -> Any:
    from rich.markup import escape
    from rich.table import Table

    caption = _legend(c.before) + [f"before: {n}" for n in _notes(c.before)] + \
        [f"after: {n}" for n in _notes(c.after)]
    if c.speedup is not None:
        caption.insert(0, f"latency speed-up (before / after median, interleaved): {c.speedup:.2f}×")
    t = Table(title="hotpatch compare", caption=escape("\n".join(caption)) or None, caption_justify="left")
    for name, justify in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(name, justify=justify)
    after = {label: (text, raw) for label, text, raw in _rows(c.after)}
    for label, text, raw in _rows(c.before):
        a_text, a_raw = after.get(label, ("—", None))
        pct = _pct(raw, a_raw)
        t.add_row(escape(label), text, a_text, "—" if pct is None else f"{pct:+.1f}%")
    return t


def _blocks_table(lists: list[list[BlockFlops]],
                  rows: list[tuple[str, int | None, int | None]] | None = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="paper FLOPs by block")
    t.add_column("block / part")
    if rows is None:
        total = sum(b.flops for b in lists[0]) or 1
        tokens = any(b.frames is not None for b in lists[0])
        if tokens:
            t.add_column("frames", justify="right")
        t.add_column("FLOPs", justify="right")
        t.add_column("share", justify="right")
        for b in lists[0]:
            label = b.name + ("" if b.is_block else " (other)")
            seen = ["" if b.frames is None else str(b.frames)] if tokens else []
            t.add_row(escape(label), *seen, _si(b.flops), f"{100 * b.flops / total:.1f}%")
        return t
    is_block = {b.name: b.is_block for lst in lists for b in lst}
    for name, justify in (("before", "right"), ("after", "right"), ("change", "right")):
        t.add_column(name, justify=justify)
    for name, x, y in rows:
        pct = _pct(x, y)
        t.add_row(escape(name + ("" if is_block.get(name) else " (other)")), _si(x), _si(y),
                  "—" if pct is None else f"{pct:+.1f}%")
    return t


def _render_text(renderable: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=110, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n")
