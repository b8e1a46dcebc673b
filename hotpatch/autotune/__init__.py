"""Pick the HoT schedule for a cost budget: ``hotpatch.tune(model, sequences, budget=0.5)``.

The candidates are every single cut (``n`` = 1 .. L-1) and every two-stage schedule
(``n1 < n2``, ``f1 > f2``) with every pruner and parameter-free recovery (zero retraining:
they are ranked by the error of the weights as they are). Each schedule gets the ``f`` that
makes it spend about the budget: one cut keeps the largest ``f`` whose cost fits; two cuts
try ``pairs`` values of ``f1`` spread between the single cut at ``n1`` and all F frames, each
with the largest ``f2 < f1`` that fits. The cost is paper FLOPs (a fraction ``budget`` of the
original's, :func:`hotpatch.profile.profile`, counter ``paper``) or latency on this device
(``latency_ms``, each setting timed interleaved with the original as
:func:`hotpatch.profile.compare` does). Costs are affine in the kept frames per block, so two
patches per cut position give a model of the cost; every candidate is then patched and
measured, and the ``f`` of its last stage lowered until it fits.

The search is successive halving on calibration windows: ``sequences`` (give the training
split; the CLI does) are cut into non-overlapping F-frame windows, at most ``max_windows`` of
them, evenly spread and ordered so that every prefix is spread over the whole data too. Round
0 scores every candidate (zero-retraining MPJPE, mm) on the first few windows, the best
``1/eta`` go on, the window count grows ``eta``-fold (a candidate's earlier predictions are
kept, so a finalist is evaluated once per window), until one candidate is left or every
calibration window was used; then the lowest error wins. By default round 0 gets
``ceil(W / eta**R)`` of the W windows, R being the halvings that leave one candidate (the
allocation of Hyperband's successive halving), so the last choice is made on about W / eta;
but no round ranks a candidate on fewer than ``min_windows`` windows (8), and a calibration set
too small for R rounds that grow ``eta``-fold from there gets a warning with the number of
windows it would need. Every candidate of a round sees the same windows; ties go to the
earlier candidate; nothing is random. With ``first_windows`` equal to the number of
calibration windows the search is the exhaustive grid; ``check_grid`` scores every candidate
on every window after the search and reports the chosen setting's rank there.

The parts, each pure and tested alone: :mod:`.costs` (the cost model, the schedules within a
limit), :mod:`.halving` (window counts, successive halving over a scoring function),
:mod:`.cache` (patched models kept while they fit), :mod:`.calibration` (windows, predictions
kept per model), :mod:`.result` (immutable candidates, the report).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from hotpatch.autotune.cache import ModelCache
from hotpatch.autotune.calibration import Calibration
from hotpatch.autotune.costs import CostModel, lowered, schedules
from hotpatch.autotune.halving import (
    MIN_WINDOWS, halvings, spread_order, successive_halving, window_counts, windows_needed,
)
from hotpatch.autotune.result import Candidate, GridCheck, Round, TuneResult, ranked
from hotpatch.errors import ConfigError, HotpatchError

log = logging.getLogger(__name__)

__all__ = ["Candidate", "DEFAULT_PRUNERS", "DEFAULT_RECOVERIES", "GridCheck", "MIN_WINDOWS", "Round", "TuneResult",
           "check_limits", "ranked", "spread_order", "tune", "window_counts"]

#: Tried when ``prune`` / ``recover`` are not given, those present in PRUNERS / RECOVERERS.
DEFAULT_PRUNERS = ("tpc", "uniform", "merge")
DEFAULT_RECOVERIES = ("linear", "unmerge")

Progress = Callable[[str, int, int, str], None]
"""``progress(task, done, total, detail)``: ``task`` is "costs", "round R (W windows)" or "grid check"."""


def _names(given: Sequence[str] | None, defaults: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    if given is None:
        return [v for v in defaults if v in known]
    names = list(dict.fromkeys(given))
    bad = [v for v in names if v not in known]
    if not names or bad:
        raise ConfigError(f"{what}={list(given)!r}: choose from {', '.join(known)}")
    return names


def check_limits(budget: float | None, latency_ms: float | None) -> None:
    """Exactly one of ``budget`` (0 < b < 1) and ``latency_ms`` (> 0)."""
    if (budget is None) == (latency_ms is None):
        raise ConfigError("give exactly one of budget (a fraction of the original's paper FLOPs, e.g. 0.5) and "
                          "latency_ms (a latency limit on this device)")
    if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget < 1):
        raise ConfigError(f"budget={budget!r}: a fraction of the original's paper FLOPs, 0 < budget < 1 (e.g. 0.5)")
    if latency_ms is not None and not (isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms)
                                       and latency_ms > 0):
        raise ConfigError(f"latency_ms={latency_ms!r}: a positive number of milliseconds")


def _check_search(pipeline: str, eta: Any, pairs: Any, sequences: Sequence[Any], **windows: Any) -> None:
    if pipeline not in ("seq2seq", "seq2frame"):
        raise ConfigError(f"pipeline={pipeline!r}; tune uses 'seq2seq' or 'seq2frame'")
    if not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"eta={eta!r}: keep 1/eta of each round; an int of 2 or more (default 3)")
    if not isinstance(pairs, int) or pairs < 1:
        raise ConfigError(f"pairs={pairs!r}: (f1, f2) pairs per two-stage schedule, 1 or more")
    if not sequences:
        raise ConfigError("no calibration sequences; pass the training split of your data")
    for name, value in windows.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r}: a number of calibration windows, 1 or more (or None)")


def tune(
    model: nn.Module,
    sequences: Sequence[Any],
    *,
    budget: float | None = None,
    latency_ms: float | None = None,
    prune: Sequence[str] | None = None,
    recover: Sequence[str] | None = None,
    pipeline: str = "seq2seq",
    example_input: torch.Tensor | None = None,
    frames: int | None = None,
    two_stage: bool = True,
    pairs: int = 2,
    eta: int = 3,
    max_windows: int | None = 243,
    first_windows: int | None = None,
    min_windows: int = MIN_WINDOWS,
    check_grid: bool = False,
    batch_size: int = 64,
    k: int = 2,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    progress: Progress | None = None,
) -> TuneResult:
    """Choose n, f, pruner and recovery for a budget (see the module docstring).

    ``sequences``: calibration :class:`~hotpatch.data.PoseSequence` s (the training split, not
    the test one). ``budget``: a fraction of the original's paper FLOPs; ``latency_ms``: a
    limit on this device (batch of ``example_input``, ``repeats`` timed forwards after
    ``warmup``, ``threads`` torch threads); exactly one of them. ``prune`` / ``recover``
    default to those of ``DEFAULT_PRUNERS`` / ``DEFAULT_RECOVERIES`` that exist; recoveries
    must be parameter-free (``tra`` needs training). ``pipeline`` ``"seq2frame"`` has no
    recovery. ``two_stage=False`` tries single cuts only; ``pairs``: (f1, f2) pairs per two
    cuts. ``eta``: 1/eta of a round go on, with eta times its windows; ``max_windows``:
    calibration windows (None: all); ``first_windows``: round 0's (default: ``ceil(W / eta**R)``,
    R the halvings that leave one, see :func:`window_counts`); ``min_windows``: the fewest
    windows a round ranks candidates on. ``check_grid``: afterwards, score every candidate on
    every window and report the chosen setting's rank (``TuneResult.grid``). Returns a
    :class:`TuneResult` with the chosen model patched.
    """
    check_limits(budget, latency_ms)
    _check_search(pipeline, eta, pairs, sequences, max_windows=max_windows, first_windows=first_windows,
                  min_windows=min_windows)
    from hotpatch.patch import prepare
    from hotpatch.prune import PRUNERS
    from hotpatch.recover import RECOVERERS

    prunes = _names(prune, DEFAULT_PRUNERS, tuple(PRUNERS), "prune")
    recovers: list[str | None] = [None]
    if pipeline == "seq2seq":
        recovers = list(_names(recover, DEFAULT_RECOVERIES, tuple(RECOVERERS), "recover"))
    t0 = time.perf_counter()
    prepared = prepare(model, frames=frames, example_input=example_input)
    if len(prepared.inputs) > 1:
        raise ConfigError("the model takes several inputs; tune feeds (B, F, J, C) clips alone")
    levels, example = prepared.plan.levels, prepared.example
    if levels < 2:
        raise ConfigError(f"the model has {levels} level(s) of temporal blocks; a cut needs 2 or more")
    cache = ModelCache.for_model(lambda key: prepared.patch(key[0], key[1], pipeline=pipeline, prune=key[2],
                                                            recover=key[3], k=k), model)
    costs = _Costs(model, example, pipeline, dict(repeats=repeats, warmup=warmup, threads=threads),
                   latency_ms is not None, cache)
    limit = costs.limit(budget, latency_ms)
    candidates, skipped = _candidates(costs, prunes, recovers, pipeline, limit, levels, two_stage, pairs, progress)
    calib = Calibration(sequences, int(example.shape[1]), pipeline=pipeline, confidence=example.shape[-1] == 3,
                        batch_size=batch_size, max_windows=max_windows)
    counts = window_counts(len(candidates), len(calib), eta, first_windows, min_windows)
    warnings = _window_warnings(len(candidates), len(calib), eta, first_windows, min_windows)
    for w in warnings:
        log.warning("tune: %s", w)
    halving, original = _halve(candidates, calib, cache, model, counts, eta, check_grid, progress)
    final = [dataclasses.replace(c, errors=tuple(halving.errors[i]), dropped=halving.dropped[i])
             for i, c in enumerate(candidates)]
    winner = final[halving.winner]
    grid = _grid_check(final, winner, calib, cache, progress) if check_grid else None
    original.update(costs.original)
    if original.get("latency_ms") is None and winner.original_ms is not None:
        original["latency_ms"] = float(np.median([c.original_ms for c in final if c.original_ms is not None]))
    return TuneResult(chosen=winner, model=cache.get(winner.key), candidates=final, rounds=halving.rounds,
                      original=original, budget=budget, latency_limit_ms=latency_ms, limit=limit,
                      calibration={"sequences": len(sequences), "windows": len(calib),
                                   "last_round_windows": halving.rounds[-1].windows, "min_windows": min_windows},
                      seconds=time.perf_counter() - t0, eval_seconds=calib.eval_seconds, skipped=skipped,
                      warnings=warnings, grid=grid)


def _window_warnings(candidates: int, total: int, eta: int, first: int | None, min_windows: int) -> list[str]:
    """A warning when the calibration set is too small for rounds that grow ``eta``-fold from ``min_windows``."""
    needed = windows_needed(candidates, eta, min_windows)
    if first is not None or total >= needed or halvings(candidates, eta) < 2:
        return []
    return [f"the calibration set has {total} windows, too few for successive halving over {candidates} "
            f"candidates ({halvings(candidates, eta)} rounds, eta {eta}) with at least {min_windows} windows per "
            f"candidate: that needs {needed} windows. The later rounds share windows (each ranks on at most "
            f"{total}); give more calibration data (--windows, more sequences) or fewer candidates "
            "(--single, --prune, --recover)"]


class _Costs:
    """Measures what a setting costs: paper FLOPs of its patched model (and its latency, timed
    interleaved with the original's) and the original's, once."""

    def __init__(self, model: nn.Module, example: torch.Tensor, pipeline: str, timing: dict[str, Any],
                 latency: bool, cache: ModelCache) -> None:
        self.model, self.example, self.pipeline, self.timing = model, example, pipeline, timing
        self.latency, self.cache = latency, cache
        self.original: dict[str, Any] = {"flops": None, "latency_ms": None}

    def limit(self, budget: float | None, latency_ms: float | None) -> float:
        """The cost limit (FLOPs or ms); measures the original."""
        from hotpatch.profile import profile

        base = profile(self.model, self.example, counters=("paper",), fps=latency_ms is not None, memory=False,
                       pipeline=self.pipeline, **self.timing)
        self.original["flops"] = base.flops["paper"].value
        if latency_ms is None:
            return float(budget) * self.original["flops"]
        self.original["latency_ms"] = base.latency.median_ms
        if base.latency.median_ms <= latency_ms:
            raise ConfigError(f"the original already runs in {base.latency.median_ms:.2f} ms, within "
                              f"latency_ms={latency_ms:g}; nothing to prune. Give a lower limit")
        return float(latency_ms)

    def measured(self, c: Candidate) -> Candidate:
        """``c`` with its paper FLOPs (and latency) measured on its patched model."""
        from hotpatch.profile import compare
        from hotpatch.profile.flops import probe

        patched = self.cache.get(c.key)
        learned = [name for name, _ in patched.named_parameters() if name.startswith("hotpatch_")]
        if learned:
            raise ConfigError(f"recover={c.recover!r} (with prune={c.prune!r}) has learnable parameters "
                              f"({learned[0]}, ...); tune ranks by zero-retraining error: use a parameter-free "
                              "recovery such as linear")
        if not self.latency:  # the patched model is the search's own: counted in place, no copy
            was = patched.training
            flops = 2 * sum(probe(patched.eval(), (self.example,)).values())
            patched.train(was)
            return dataclasses.replace(c, flops=flops)
        cmp = compare(self.model, patched, self.example, fps=True, counters=("paper",), memory=False,
                      pipeline=self.pipeline, **self.timing)
        return dataclasses.replace(c, flops=cmp.after.flops["paper"].value, latency_ms=cmp.after.latency.median_ms,
                                   original_ms=cmp.before.latency.median_ms)

    def cost(self, c: Candidate) -> float:
        return float(c.latency_ms if self.latency else c.flops)

    def model_of(self, prune: str, recover: str | None, pipeline: str, levels: int) -> CostModel:
        """The cost model of one pruner and recovery: measured with every frame kept and with one cut
        after each block level keeping half the frames (exact for paper FLOPs: only Linear/Conv
        count), with latency a line fitted through the measured points."""
        frames = int(self.example.shape[1])
        mid = max(1, frames // 2)
        full = self.measured(Candidate(1, frames, prune, recover, pipeline))
        cuts = [self.measured(Candidate(n, mid, prune, recover, pipeline)) for n in range(1, levels)]
        measured = [self.cost(c) for c in (full, *cuts)] if self.latency else None
        return CostModel.fit(frames, float(full.flops), mid, {c.n: float(c.flops) for c in cuts}, measured)


def _candidates(costs: _Costs, prunes: Sequence[str], recovers: Sequence[str | None], pipeline: str, limit: float,
                levels: int, two_stage: bool, pairs: int,
                progress: Progress | None) -> tuple[list[Candidate], list[str]]:
    """Every schedule × pruner × recovery within ``limit`` (measured), the last f lowered until it
    is; and the pairings skipped (refused by the engine) or still over the limit."""
    out: list[Candidate] = []
    skipped: list[str] = []
    combos = [(p, r) for p in prunes for r in recovers]
    for i, (prune, recover) in enumerate(combos):
        name = prune + (f"+{recover}" if recover else "")
        try:
            model = costs.model_of(prune, recover, pipeline, levels)
        except HotpatchError as err:  # a pairing the engine refuses (a recovery needing another pruner)
            if isinstance(err, ConfigError) and "learnable" in str(err):
                raise
            skipped.append(f"{name}: {err}")
            log.info("tune: %s skipped: %s", name, err)
            continue
        for n, f in schedules(model, levels, limit, two_stage=two_stage, pairs=pairs):
            fitted = _within(costs, Candidate(n, f, prune, recover, pipeline), limit, model.cost_per_frame(n))
            if fitted is None:
                skipped.append(f"{Candidate(n, f, prune, recover, pipeline).label}: still over the limit after "
                               "4 measurements")
            else:
                out.append(fitted)
        if progress is not None:
            progress("costs", i + 1, len(combos), name)
    if not out:
        _unreachable(costs, prunes, recovers, pipeline, limit)
    costs.cache.keep_only(c.key for c in out)
    return out, skipped


def _within(costs: _Costs, c: Candidate, limit: float, per_frame: float) -> Candidate | None:
    """``c`` measured, its last f lowered until it fits (at most 4 measurements); None if it never does."""
    for _ in range(4):
        c = costs.measured(c)
        cost = costs.cost(c)
        if cost <= limit:
            return c
        f = lowered(c.n, c.f, max(1, math.ceil((cost - limit) / per_frame)) if per_frame > 0 else 1)
        if f is None:
            return None
        c = Candidate(c.n, f, c.prune, c.recover, c.pipeline)
    return None


def _unreachable(costs: _Costs, prunes: Sequence[str], recovers: Sequence[str | None], pipeline: str,
                 limit: float) -> None:
    tried = [Candidate(1, 1, p, r, pipeline) for p in prunes for r in recovers]
    found = []
    for c in tried:
        try:
            found.append((costs.cost(costs.measured(c)), c))
        except HotpatchError:  # a pairing the engine refuses
            found.append((math.inf, c))
    cost, c = min(found, key=lambda pair: pair[0])
    if costs.latency:
        raise ConfigError(f"latency_ms={limit:g} is below anything reachable: the fastest setting ({c.label}) "
                          f"takes {cost:.2f} ms; give a limit of at least that")
    base = costs.original["flops"]
    cheapest = cost / base
    raise ConfigError(f"budget={limit / base:g} is below anything reachable: the cheapest "
                      f"setting ({c.label}) costs {cheapest:.3f} of the original's paper FLOPs; give a budget "
                      f"of at least {math.ceil(cheapest * 1000) / 1000:g}")


def _halve(candidates: list[Candidate], calib: Calibration, cache: ModelCache, model: nn.Module, counts: list[int],
           eta: int, keep_predictions: bool, progress: Progress | None) -> tuple[Any, dict[str, Any]]:
    """Successive halving of ``candidates`` on ``calib``; the original scored on each round's windows."""
    original: dict[str, Any] = {"errors": []}

    def score(i: int, w: int) -> float:
        if len(original["errors"]) < counts.index(w) + 1:  # the round's first score: the original's too
            original["errors"].append(calib.error("original", model, w))
        return calib.error(candidates[i].key, cache.get(candidates[i].key), w)

    def scored(r: int, done: int, total: int, i: int) -> None:
        if progress is not None:
            progress(f"round {r} ({counts[r]} windows)", done, total, candidates[i].label)

    def kept(alive: list[int]) -> None:
        keys = [candidates[i].key for i in alive]
        cache.keep_only(keys)
        if not keep_predictions:
            calib.keep_only([*keys, "original"])

    halving = successive_halving(len(candidates), score, counts, eta, on_scored=scored, on_kept=kept)
    original["mpjpe"] = original["errors"][-1]
    return halving, original


def _grid_check(final: list[Candidate], winner: Candidate, calib: Calibration, cache: ModelCache,
                progress: Progress | None) -> GridCheck:
    """Every candidate on every calibration window; the winner's rank and gap, and the noise of the gap."""
    t0 = calib.eval_seconds
    errors = {}
    for i, c in enumerate(final):
        errors[c.label] = calib.error(c.key, cache.get(c.key), len(calib))
        if progress is not None:
            progress("grid check", i + 1, len(final), c.label)
    best = min(final, key=lambda c: (errors[c.label], final.index(c)))
    gap = errors[winner.label] - errors[best.label]
    noise = 0.0
    if best is not winner:
        diff = (calib.window_errors(winner.key, cache.get(winner.key))
                - calib.window_errors(best.key, cache.get(best.key)))
        noise = float(2 * diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    rank = 1 + sum(e < errors[winner.label] for e in errors.values())
    return GridCheck(errors=errors, best=best.label, rank=rank, gap_mm=gap, noise_mm=noise,
                     eval_seconds=calib.eval_seconds - t0)
