"""The driver of ``hotpatch.profile``: checks the settings, copies the models, then counts,
times and measures each copy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_map

from hotpatch.engine.inputs import clip_of, positional
from hotpatch.errors import ConfigError, InputShapeError
from hotpatch.profile.flops import COUNTERS, block_names, check_counters, count, paper_blocks, probe
from hotpatch.profile.memory import peak_memory
from hotpatch.profile.report import FlopCount, Profile
from hotpatch.profile.timing import COMPILE_MODES, ProgressFn, compile_all, latency, time_interleaved

PIPELINES = ("seq2seq", "seq2frame")


@dataclass(frozen=True)
class ProfileOptions:
    """The settings shared by ``profile``, ``compare`` and ``profile_many`` (documented at
    ``hotpatch.profile.profile``); their keyword arguments are these fields."""

    counters: Sequence[str] | str = ("fvcore", "paper")
    fps: bool = True
    device: str | torch.device = "cpu"
    repeats: int = 20
    warmup: int = 3
    threads: int | None = None
    by_block: bool = False
    blocks: Sequence[str] | None = None
    train: bool = False
    pipeline: str = "seq2seq"
    memory: bool = True
    frames: int | None = None
    compile: str | None = None
    progress: ProgressFn | None = None

    @classmethod
    def of(cls, caller: str, keywords: dict[str, Any]) -> ProfileOptions:
        """The options given as ``caller``'s keyword arguments; an unknown one is a TypeError, as in Python."""
        known = {f.name for f in fields(cls)}
        unknown = [k for k in keywords if k not in known]
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
        return cls(**keywords)

    def check(self) -> list[str]:
        """Raise ConfigError for a bad setting; return the FLOP counters' names, without repeats."""
        names = check_counters(self.counters)
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"pipeline={self.pipeline!r} is unknown; expected one of {', '.join(PIPELINES)}")
        repeats, warmup, threads = self.repeats, self.warmup, self.threads
        if not isinstance(repeats, int) or repeats < 1 or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"repeats={repeats!r}, warmup={warmup!r}: need repeats >= 1 and warmup >= 0")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r}: pass a positive int, or None to keep the current count")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile={self.compile!r} is unknown; use one of {', '.join(COMPILE_MODES)} "
                              "(or None: eager)")
        return names


def measure(models: list[nn.Module], example_input: Any, options: ProfileOptions) -> list[Profile]:
    """Profile each of ``models`` with ``options``; latency timed interleaved across them."""
    o = options
    names = o.check()
    for m in models:
        if not isinstance(m, nn.Module):
            raise ConfigError(f"expected an nn.Module to profile, got {type(m).__name__}")
    dev = _check_device(o.device)
    if example_input is None:
        example_input = _default_input(models)
    if isinstance(example_input, dict):  # keyword inputs of a model with several: forward's order
        example_input = _positional(models[-1], example_input)
    args = _as_args(example_input, dev)
    first = clip_of([t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)])
    batch = int(first.shape[0]) if first.dim() else 1
    frames = o.frames
    if frames is None:
        frames = int(first.shape[1]) if first.dim() >= 2 else 1
    per_model_blocks: list[list[str]] = [[] for _ in models]
    if o.by_block:
        base = block_names(models[0], o.blocks)
        per_model_blocks = [base] + [
            base if o.blocks is not None else base + [b for b in block_names(m, None) if b not in base]
            for m in models[1:]
        ]

    works = [_work_copy(m, dev) for m in models]
    results = []
    old_threads = torch.get_num_threads()
    try:
        if o.threads is not None:
            torch.set_num_threads(o.threads)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            for model, work, per_model in zip(models, works, per_model_blocks):
                macs = probe(work, args)
                res = Profile(
                    params=sum(p.numel() for p in model.parameters()),
                    trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                    flops={},
                    batch=batch,
                    frames=frames,
                    pipeline=o.pipeline,
                    device=str(dev),
                )
                results.append(res)
                for name in names:
                    if name == "paper":
                        res.flops[name] = FlopCount(name, 2 * sum(macs.values()), *COUNTERS[name])
                    elif name != "thop":
                        res.flops[name] = count(name, work, args)
                if o.by_block:
                    tokens = getattr(getattr(model, "hotpatch_plan", None), "tokens", None)
                    res.blocks = paper_blocks(macs, per_model, tokens)
            if o.fps:
                timed = works
                if o.compile is not None:
                    timed, seconds = compile_all(works, args, dev, o.compile)
                    for res, sec in zip(results, seconds):
                        res.compile, res.compile_seconds = o.compile, sec
                samples = time_interleaved(timed, args, dev, o.repeats, o.warmup, o.progress)
                for res, s in zip(results, samples):
                    res.latency = latency(s, o.repeats, o.warmup, torch.get_num_threads())
                    sec = res.latency.median_ms / 1e3
                    res.fps_seq2seq = batch * frames / sec if sec > 0 else None
                    res.fps_seq2frame = batch / sec if sec > 0 else None
            for res, work in zip(results, works):
                if o.memory:
                    res.memory = peak_memory(work, args, dev, o.train)
                if "thop" in names:  # last: it may leave buffers behind on the copy
                    res.flops["thop"] = count("thop", work, args)
                res.flops = {n: res.flops[n] for n in names}
    finally:
        torch.set_num_threads(old_threads)
    return results


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


