"""Latency of one forward, timed interleaved (ABBA order) across models, eager or ``torch.compile``d."""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from hotpatch.errors import ConfigError
from hotpatch.profile.report import Latency

ProgressFn = Callable[[int, int], None]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_interleaved(works: list[nn.Module], args: tuple[Any, ...], dev: torch.device, repeats: int,
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


def compile_all(works: list[nn.Module], args: tuple[Any, ...], dev: torch.device, mode: str
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


def latency(seconds: list[float], repeats: int, warmup: int, threads: int) -> Latency:
    ms = [s * 1e3 for s in seconds]
    if len(ms) >= 2:
        q25, _, q75 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q25 = q75 = ms[0]
    return Latency(median_ms=statistics.median(ms), q25_ms=q25, q75_ms=q75, min_ms=min(ms),
                   max_ms=max(ms), repeats=repeats, warmup=warmup, threads=threads, samples_ms=ms)

