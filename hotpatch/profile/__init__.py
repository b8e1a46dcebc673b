"""Params, FLOPs (by several labelled counters), latency/FPS and peak memory of a model.

Every number is measured on a private deep copy of the model in eval mode, so the model
you pass in is never touched: its state_dict, training flag, hooks and outputs stay as
they were. ``compare`` profiles two models the same way and times them interleaved.

The FLOP counters and what each counts: :mod:`hotpatch.profile.flops`; timing:
:mod:`hotpatch.profile.timing`; peak memory: :mod:`hotpatch.profile.memory`; the result
classes and their tables: :mod:`hotpatch.profile.report`.

``hotpatch.profile`` is this package and also callable: ``hotpatch.profile(model, ...)`` is
``hotpatch.profile.profile(model, ...)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch.nn as nn

from hotpatch.profile.measure import ProfileOptions, measure
from hotpatch.profile.report import BlockFlops, Comparison, FlopCount, Latency, Memory, Profile

__all__ = ["BlockFlops", "Comparison", "FlopCount", "Latency", "Memory", "Profile", "ProfileOptions",
           "compare", "profile", "profile_many"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _takes_options(func: _F) -> _F:
    """Show the fields of ``ProfileOptions`` as ``func``'s keyword-only parameters (``help``,
    ``inspect.signature``): one definition of the shared keywords, with their defaults."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
              for f in dataclasses.fields(ProfileOptions)]
    func.__signature__ = sig.replace(parameters=own + shared)  # type: ignore[attr-defined]
    return func


@_takes_options
def profile(model: nn.Module, example_input: Any = None, **options: Any) -> Profile:
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
    is never modified: all runs use a deep copy. On a paper-size model the ``paper`` and
    ``torch`` counters run on fake tensors (shapes only; the same counts, no arithmetic).
    """
    return measure([model], example_input, ProfileOptions.of("profile", options))[0]


@_takes_options
def compare(original: nn.Module, patched: nn.Module, example_input: Any = None, **options: Any) -> Comparison:
    """Profile ``original`` and ``patched`` with the same settings (see ``profile``).

    ``example_input=None``: a zero clip of batch 1 shaped by ``patched.hotpatch_config["input_shape"]``.

    Latency is timed interleaved (ABBA order) so drift hits both alike; ``progress`` counts
    the forwards of both. Block names found on ``original`` are used for both models, plus
    any the patched model adds.
    """
    before, after = measure([original, patched], example_input, ProfileOptions.of("compare", options))
    speedup = None
    if before.latency and after.latency and after.latency.median_ms > 0:
        speedup = before.latency.median_ms / after.latency.median_ms
    return Comparison(before=before, after=after, speedup=speedup)


@_takes_options
def profile_many(models: Sequence[nn.Module], example_input: Any = None, **options: Any) -> list[Profile]:
    """Profile several models with the same settings (see ``profile``), timing them
    interleaved (ABBA order) in one run; returns one ``Profile`` per model."""
    return measure(list(models), example_input, ProfileOptions.of("profile_many", options))


class _CallableModule(types.ModuleType):
    """The type of this package: ``hotpatch`` exports the function ``profile`` under the
    package's own name, so ``hotpatch.profile`` is the package and, when called, ``profile``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Profile:
        return profile(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(profile)


sys.modules[__name__].__class__ = _CallableModule
