"""Sweep HoT settings and find the Pareto front of cost against error (or latency).

``sweep(model, n=[1, 2, 3], f=[27, 41, 61], ...)`` traces and analyses the model once
(:func:`hotpatch.prepare`), then for every combination of ``n``, ``f``, ``prune`` and
``recover`` (and every multi-stage setting in ``stages``, e.g. ``[([1, 3], [121, 61])]``, with
each prune and recover) patches it and measures params, paper FLOPs and latency — each setting timed
interleaved with the original in one run (:func:`hotpatch.profile.compare`; each row keeps that
run's original time as ``original_ms`` and ``speedup = original_ms / latency_ms``, and the
original's own row shows the median of those paired times) — and, given test
sequences, the zero-retraining MPJPE / P-MPJPE on the same windows as the original (seq2seq:
also on the frames the pruner kept and on those it dropped). A row is on the Pareto front
when no other row (the original included) has lower-or-equal FLOPs and error with one of them
strictly lower; the error is MPJPE when data is given, else the latency.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from hotpatch.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["SweepResult", "SweepRow", "pareto_front", "sweep"]

METRICS = ("mpjpe", "p_mpjpe", "mpjve", "mpjpe_selected", "mpjpe_pruned", "p_mpjpe_selected", "p_mpjpe_pruned")


@dataclass
class SweepRow:
    """One setting (``n`` is None for the original model) and what was measured for it.

    ``speedup`` is ``original_ms / latency_ms``: the original's and this setting's median
    latency, timed interleaved in one run (so each row has its own original time)."""

    label: str
    n: int | list[int] | None  # a list for multi-stage pruning
    f: int | list[int] | None
    prune: str | None
    recover: str | None
    pipeline: str
    params: int
    flops: int | None
    latency_ms: float | None
    speedup: float | None = None
    original_ms: float | None = None  # the original's latency timed interleaved with this row's (speedup's pair)
    metrics: dict[str, float] = field(default_factory=dict)
    pareto: bool = False

    @property
    def error(self) -> float | None:
        """What the front is drawn against: MPJPE if measured, else latency."""
        return self.metrics.get("mpjpe", self.latency_ms)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("metrics"))
        return d


@dataclass
class SweepResult:
    original: SweepRow
    rows: list[SweepRow]
    error_name: str  # "mpjpe" or "latency_ms"

    @property
    def frontier(self) -> list[SweepRow]:
        """The rows on the Pareto front, cheapest first."""
        return sorted((r for r in self.rows if r.pareto), key=lambda r: r.flops or 0)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in [self.original, *self.rows]]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, error) points: True where no other point is <= in both and < in one."""
    out = []
    for i, (c, e) in enumerate(points):
        dominated = any(
            (c2 <= c and e2 <= e and (c2 < c or e2 < e)) for j, (c2, e2) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


Stages = Sequence[tuple[Sequence[int], Sequence[int]]]


def settings_grid(n: Iterable[int], f: Iterable[int], prune: Iterable[str], recover: Iterable[str | None],
                  stages: Stages = ()) -> list[dict[str, Any]]:
    """Every combination, in order, without duplicates; then each multi-stage setting
    (n list, f list) with every prune and recover."""
    prune, recover = list(prune), list(recover)
    grid = [dict(n=a, f=b, prune=c, recover=d) for a, b, c, d in itertools.product(n, f, prune, recover)]
    grid += [dict(n=list(ns), f=list(fs), prune=c, recover=d)
             for (ns, fs), c, d in itertools.product(stages, prune, recover)]
    seen, out = set(), []
    for g in grid:
        key = tuple(tuple(v) if isinstance(v, list) else v for v in g.values())
        if key not in seen:
            seen.add(key)
            out.append(g)
    if not out:
        raise ConfigError("the sweep is empty: give at least one value of n, f (or a stage list), prune and recover")
    return out


def _values(v: int | Sequence[int]) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _check_grid(grid: list[dict[str, Any]], levels: int, frames: int) -> None:
    """Every setting must be valid before the (slow) measurements start."""
    from hotpatch.patch import check_stages

    for g in grid:
        check_stages(g["n"], g["f"])  # order and lengths of stage lists
    bad_n = sorted({v for g in grid for v in _values(g["n"]) if not 1 <= v < levels})
    bad_f = sorted({v for g in grid for v in _values(g["f"]) if not 1 <= v <= frames})
    if bad_n:
        raise ConfigError(f"n={bad_n}: the model has {levels} levels of temporal blocks; use 1 <= n <= {levels - 1}")
    if bad_f:
        raise ConfigError(f"f={bad_f}: the clip has F={frames} frames; use 1 <= f <= {frames}")


def sweep(
    model: nn.Module,
    *,
    n: Sequence[int] = (),
    f: Sequence[int] = (),
    stages: Stages = (),
    prune: Sequence[str] = ("tpc",),
    recover: Sequence[str | None] = ("linear",),
    example_input: torch.Tensor | tuple | dict,
    pipeline: str = "seq2seq",
    prune_pos_embed: bool = False,
    sequences: list | None = None,
    batch_size: int = 64,
    latency: bool = True,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SweepResult:
    """Measure every setting of the grid (see the module docstring).

    ``example_input`` is one clip (1, F, J, C), or a tuple / dict of every input of a model with
    several (cost only: no ``sequences``); latency is timed at its batch size.
    ``sequences`` (test :class:`~hotpatch.data.PoseSequence` s) turn on the accuracy columns.
    ``progress(done, total, label)`` is called after each setting.
    """
    from hotpatch.evaluate import evaluate_model
    from hotpatch.patch import prepare, stage_text
    from hotpatch.profile import compare, profile

    if pipeline not in ("seq2seq", "seq2frame"):
        raise ConfigError(f"pipeline={pipeline!r}; a sweep uses 'seq2seq' or 'seq2frame'")
    grid = settings_grid(n, f, prune, recover if pipeline == "seq2seq" else (None,), stages)
    prepared = prepare(model, example_input=example_input)
    frames = prepared.example.shape[1]
    if sequences and len(prepared.inputs) > 1:
        raise ConfigError("the model takes several inputs; the accuracy columns feed clips alone: sweep it "
                          "without sequences (cost only)")
    _check_grid(grid, prepared.plan.levels, frames)
    dataset = None
    if sequences:
        from hotpatch.data import WindowDataset

        dataset = WindowDataset(sequences, frames, mode=pipeline, confidence=prepared.example.shape[-1] == 3)
    measure = dict(counters=("paper",), fps=latency, memory=False, repeats=repeats, warmup=warmup, threads=threads)

    def accuracy(m: nn.Module) -> dict[str, float]:
        if dataset is None:
            return {}
        res = evaluate_model(m, dataset, batch_size=batch_size, flops=False)
        return {k: float(res[k]) for k in METRICS if k in res}

    base = profile(model, example_input, pipeline=pipeline, **{**measure, "fps": latency and not grid})
    original = SweepRow("original", None, None, None, None, pipeline, base.params, base.flops["paper"].value,
                        base.latency.median_ms if base.latency else None, 1.0 if latency else None,
                        base.latency.median_ms if base.latency else None, accuracy(model))
    rows: list[SweepRow] = []
    for i, g in enumerate(grid):
        patched = prepared.patch(g["n"], g["f"], pipeline=pipeline, prune=g["prune"], recover=g["recover"],
                                 prune_pos_embed=prune_pos_embed)
        cmp = compare(model, patched, example_input, pipeline=pipeline, **measure)
        label = f"n={stage_text(g['n'])} f={stage_text(g['f'])} {g['prune']}" + (f"+{g['recover']}" if g["recover"] else "")
        rows.append(SweepRow(label, g["n"], g["f"], g["prune"], g["recover"], pipeline, cmp.after.params,
                             cmp.after.flops["paper"].value,
                             cmp.after.latency.median_ms if cmp.after.latency else None, cmp.speedup,
                             cmp.before.latency.median_ms if cmp.before.latency else None, accuracy(patched)))
        del patched
        if progress is not None:
            progress(i + 1, len(grid), label)
    paired = [r.original_ms for r in rows if r.original_ms is not None]
    if paired:  # the original's latency: the median of its runs paired with every row (one measure for all)
        original.latency_ms = original.original_ms = float(statistics.median(paired))
    error_name = "mpjpe" if dataset is not None else "latency_ms"
    everyone = [original, *rows]
    if all(r.error is not None and r.flops is not None for r in everyone):
        for r, on in zip(everyone, pareto_front([(float(r.flops), float(r.error)) for r in everyone])):
            r.pareto = on
    return SweepResult(original, rows, error_name)
