"""Params, FLOPs (by several labelled counters), latency/FPS and peak memory of a model.

Every number is measured on a private deep copy of the model in eval mode, so the model
you pass in is never touched: its state_dict, training flag, hooks and outputs stay as
they were. ``compare`` profiles two models the same way and times them interleaved.

The FLOP counters and what each counts: :mod:`hotpatch.profile.flops`; timing:
:mod:`hotpatch.profile.timing`; peak memory: :mod:`hotpatch.profile.memory`; the result
classes and their tables: :mod:`hotpatch.profile.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from hotpatch.profile.measure import measure
from hotpatch.profile.report import BlockFlops, Comparison, FlopCount, Latency, Memory, Profile
from hotpatch.profile.timing import ProgressFn

__all__ = ["BlockFlops", "Comparison", "FlopCount", "Latency", "Memory", "Profile", "compare", "profile"]


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
    """Measure ``model`` on ``example_input`` (a tensor, or a tuple of positional arguments).

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
    return measure([model], example_input, counters=counters, fps=fps, device=device, repeats=repeats,
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
    before, after = measure([original, patched], example_input, **kwargs)
    speedup = None
    if before.latency and after.latency and after.latency.median_ms > 0:
        speedup = before.latency.median_ms / after.latency.median_ms
    return Comparison(before=before, after=after, speedup=speedup)


def profile_many(models: Sequence[nn.Module], example_input: Any = None, **kwargs: Any) -> list[Profile]:
    """Profile several models with the same settings (see ``profile``), timing them
    interleaved (ABBA order) in one run; returns one ``Profile`` per model."""
    return measure(list(models), example_input, **kwargs)

