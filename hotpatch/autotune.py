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
allocation of Hyperband's successive halving), so the last choice is made on about W / eta. Every candidate of a round sees the
same windows; ties go to the earlier candidate; nothing is random. With ``first_windows``
equal to the number of calibration windows the search is the exhaustive grid.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from hotpatch.errors import ConfigError, HotpatchError

log = logging.getLogger(__name__)

__all__ = ["Candidate", "DEFAULT_PRUNERS", "DEFAULT_RECOVERIES", "Round", "TuneResult", "spread_order", "tune"]

#: Tried when ``prune`` / ``recover`` are not given, those present in PRUNERS / RECOVERERS.
DEFAULT_PRUNERS = ("tpc", "uniform", "merge")
DEFAULT_RECOVERIES = ("linear", "unmerge")

Progress = Callable[[str, int, int, str], None]
"""``progress(task, done, total, detail)``: ``task`` is "costs" or "round R (W windows)"."""


@dataclass
class Candidate:
    """One setting and what the search measured for it (``errors[r]``: MPJPE in round ``r``)."""

    n: int | list[int]
    f: int | list[int]
    prune: str
    recover: str | None
    pipeline: str
    flops: int | None = None
    latency_ms: float | None = None
    original_ms: float | None = None  # the original timed interleaved with this setting
    errors: list[float] = field(default_factory=list)
    dropped: int | None = None  # the round after which it was dropped; None for the winner

    @property
    def label(self) -> str:
        from hotpatch.patch import stage_text

        return (f"n={stage_text(self.n)} f={stage_text(self.f)} {self.prune}"
                + (f"+{self.recover}" if self.recover else ""))

    @property
    def error(self) -> float | None:
        """The MPJPE of the last round it was scored in."""
        return self.errors[-1] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **asdict(self)}


@dataclass
class Round:
    """Round ``index`` scored ``candidates`` settings on ``windows`` windows and kept ``kept``."""

    index: int
    windows: int
    candidates: int
    kept: int


@dataclass
class TuneResult:
    """The chosen setting, its patched model and everything the search tried."""

    chosen: Candidate
    model: nn.Module
    candidates: list[Candidate]
    rounds: list[Round]
    original: dict[str, Any]  # flops, latency_ms, errors (MPJPE on each round's windows), mpjpe (the last)
    budget: float | None
    latency_limit_ms: float | None
    limit: float  # the cost limit: FLOPs or ms
    calibration: dict[str, Any]  # sequences, windows (all), last_round_windows
    seconds: float  # wall time of the whole search
    eval_seconds: float  # of it, predicting and scoring calibration windows
    skipped: list[str] = field(default_factory=list)

    @property
    def setting(self) -> dict[str, Any]:
        """``apply`` keywords of the chosen setting."""
        c = self.chosen
        return {"n": c.n, "f": c.f, "prune": c.prune, "recover": c.recover, "pipeline": c.pipeline}

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.to_dict(), "setting": self.setting, "budget": self.budget,
                "latency_limit_ms": self.latency_limit_ms, "limit": self.limit, "original": self.original,
                "calibration": self.calibration, "rounds": [asdict(r) for r in self.rounds],
                "candidates": [c.to_dict() for c in self.candidates], "seconds": self.seconds,
                "eval_seconds": self.eval_seconds, "skipped": list(self.skipped)}

    def markdown(self) -> str:
        """A report: the choice, the rounds and every candidate (best first by how far it got)."""
        o, c = self.original, self.chosen
        limit = (f"budget {self.budget:g} of the original's paper FLOPs" if self.budget is not None
                 else f"latency limit {self.latency_limit_ms:g} ms")
        lines = [f"# hotpatch tune: {c.label}", "",
                 f"Chosen for a {limit}: `{c.label}` ({c.pipeline}), paper FLOPs {_pct(c.flops, o.get('flops'))}"
                 + (f", latency {c.latency_ms:.2f} ms (original {c.original_ms:.2f} ms)" if c.latency_ms else "")
                 + f", calibration MPJPE {c.error:.2f} mm (original {_num(o.get('mpjpe'))} mm).", "",
                 f"Calibration: {self.calibration['windows']} windows of {self.calibration['sequences']} sequences "
                 f"({self.calibration['last_round_windows']} in the last round); "
                 f"search {self.seconds:.1f} s ({self.eval_seconds:.1f} s predicting and scoring).", "",
                 "| round | windows | candidates | kept |", "|---|---|---|---|"]
        lines += [f"| {r.index} | {r.windows} | {r.candidates} | {r.kept} |" for r in self.rounds]
        rounds = len(self.rounds)
        lines += ["", "| setting | paper FLOPs | latency ms | " + " | ".join(f"MPJPE r{i}" for i in range(rounds))
                  + " | dropped after |", "|---|---|---|" + "---|" * rounds + "---|"]
        errs = [f"{e:.2f}" for e in o.get("errors", [])]
        lines.append(f"| original | {_pct(o.get('flops'), o.get('flops'))} | {_num(o.get('latency_ms'))} | "
                     + " | ".join(errs) + " | – |")
        for cand in ranked(self.candidates):
            errs = [f"{e:.2f}" for e in cand.errors] + ["–"] * (rounds - len(cand.errors))
            mark = "**chosen**" if cand is c else f"round {cand.dropped}"
            lines.append(f"| {cand.label} | {_pct(cand.flops, o.get('flops'))} | {_num(cand.latency_ms)} | "
                         + " | ".join(errs) + f" | {mark} |")
        if self.skipped:
            lines += ["", "Skipped: " + "; ".join(self.skipped)]
        return "\n".join(lines) + "\n"


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Furthest round first, then lowest error in it (the winner first)."""
    return sorted(candidates, key=lambda c: (-len(c.errors), c.error if c.error is not None else math.inf))


def _pct(flops: int | None, base: int | None) -> str:
    if flops is None:
        return "–"
    return f"{flops / 1e9:.3f} G" + (f" ({100 * flops / base:.1f}%)" if base else "")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def spread_order(count: int, limit: int | None = None) -> np.ndarray:
    """At most ``limit`` of ``range(count)``, evenly spread, ordered so that every prefix is
    spread too (bit-reversed positions in the evenly spaced subset)."""
    keep = count if limit is None else min(limit, count)
    chosen = np.unique(np.linspace(0, count - 1, keep).round().astype(np.int64))
    bits = max(1, int(math.ceil(math.log2(max(2, len(chosen))))))
    rev = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)]
    order = [r for r in rev if r < len(chosen)]
    return chosen[order]


def window_counts(candidates: int, total: int, eta: int, first: int | None) -> list[int]:
    """Windows of each round when every round keeps ``ceil(n / eta)``. By default as in
    Hyperband's successive halving: R halvings leave one candidate and round 0 gets
    ``ceil(total / eta**R)`` windows, so the last round (the final ``eta`` or fewer) gets about
    ``total / eta``. With ``first``: ``first``, ``first * eta``, ... up to ``total``."""
    halvings, left = 0, candidates
    while left > 1:
        left, halvings = math.ceil(left / eta), halvings + 1
    if first is None:
        if halvings == 0:  # one candidate: nothing to choose, its error on every window
            return [total]
        w0 = max(1, math.ceil(total / eta ** halvings))
        return sorted({min(total, w0 * eta ** i) for i in range(halvings)})
    counts, w = [], min(total, max(1, first))
    while True:
        counts.append(w)
        if w >= total:
            return counts
        w = min(total, w * eta)


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
    R the halvings that leave one, see :func:`window_counts`). Returns a :class:`TuneResult`
    with the chosen model patched.
    """
    check_limits(budget, latency_ms)
    if pipeline not in ("seq2seq", "seq2frame"):
        raise ConfigError(f"pipeline={pipeline!r}; tune uses 'seq2seq' or 'seq2frame'")
    if not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"eta={eta!r}: keep 1/eta of each round; an int of 2 or more (default 3)")
    if not isinstance(pairs, int) or pairs < 1:
        raise ConfigError(f"pairs={pairs!r}: (f1, f2) pairs per two-stage schedule, 1 or more")
    if not sequences:
        raise ConfigError("no calibration sequences; pass the training split of your data")
    for name, value in (("max_windows", max_windows), ("first_windows", first_windows)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r}: a number of calibration windows, 1 or more (or None)")
    from hotpatch.prune import PRUNERS
    from hotpatch.recover import RECOVERERS

    prunes = _names(prune, DEFAULT_PRUNERS, tuple(PRUNERS), "prune")
    recovers: list[str | None] = [None]
    if pipeline == "seq2seq":
        recovers = list(_names(recover, DEFAULT_RECOVERIES, tuple(RECOVERERS), "recover"))
    t0 = time.perf_counter()
    search = Search(model, sequences, pipeline=pipeline, example_input=example_input, frames=frames, k=k,
                    batch_size=batch_size, timing=dict(repeats=repeats, warmup=warmup, threads=threads),
                    latency=latency_ms is not None, progress=progress)
    limit = search.limit(budget, latency_ms)
    candidates = search.candidates(prunes, recovers, limit, two_stage=two_stage, pairs=pairs)
    rounds, winner, model_out = search.halve(candidates, eta=eta, max_windows=max_windows, first=first_windows)
    return TuneResult(chosen=winner, model=model_out, candidates=candidates, rounds=rounds,
                      original=search.original, budget=budget, latency_limit_ms=latency_ms, limit=limit,
                      calibration={"sequences": len(sequences), "windows": search.windows_total,
                                   "last_round_windows": search.windows_used},
                      seconds=time.perf_counter() - t0, eval_seconds=search.eval_seconds, skipped=search.skipped)


class Search:
    """The state of one search: the prepared model, the calibration windows, the costs."""

    def __init__(self, model: nn.Module, sequences: Sequence[Any], *, pipeline: str, example_input: Any,
                 frames: int | None, k: int, batch_size: int, timing: dict[str, Any], latency: bool,
                 progress: Progress | None) -> None:
        from hotpatch.data import WindowDataset
        from hotpatch.patch import prepare

        self.model, self.pipeline, self.k, self.batch_size = model, pipeline, k, batch_size
        self.timing, self.latency, self.progress = timing, latency, progress
        self.prepared = prepare(model, frames=frames, example_input=example_input)
        if len(self.prepared.inputs) > 1:
            raise ConfigError("the model takes several inputs; tune feeds (B, F, J, C) clips alone")
        self.example = self.prepared.example
        self.frames, self.levels = int(self.example.shape[1]), self.prepared.plan.levels
        if self.levels < 2:
            raise ConfigError(f"the model has {self.levels} level(s) of temporal blocks; a cut needs 2 or more")
        self.dataset = WindowDataset(list(sequences), self.frames, mode=pipeline,
                                     confidence=self.example.shape[-1] == 3)
        self.original: dict[str, Any] = {"flops": None, "latency_ms": None, "mpjpe": None}
        self.skipped: list[str] = []
        self.eval_seconds, self.windows_used, self.windows_total = 0.0, 0, 0
        size = sum(p.numel() * p.element_size() for p in model.parameters()) or 1
        self.models: dict[tuple, nn.Module] = {}
        self.room = max(1, (1 << 30) // size)

    # ------------------------------------------------------------------ costs

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

    @staticmethod
    def key(c: Candidate) -> tuple:
        return (str(c.n), str(c.f), c.prune, c.recover)

    def patch(self, c: Candidate) -> nn.Module:
        """``c`` patched; kept for later rounds while their copies fit in about 1 GiB."""
        key = self.key(c)
        if key in self.models:
            return self.models[key]
        patched = self.prepared.patch(c.n, c.f, pipeline=self.pipeline, prune=c.prune, recover=c.recover, k=self.k)
        if len(self.models) < self.room:
            self.models[key] = patched
        return patched

    def forget(self, keep: Sequence[Candidate]) -> None:
        """Drop the patched models of every setting but ``keep``."""
        wanted = {self.key(c) for c in keep}
        self.models = {k: m for k, m in self.models.items() if k in wanted}

    def measure(self, c: Candidate) -> float:
        """Patch ``c``, record its FLOPs (and latency, timed interleaved with the original); its cost."""
        from hotpatch.profile import compare, profile

        patched = self.patch(c)
        learned = [name for name, _ in patched.named_parameters() if name.startswith("hotpatch_")]
        if learned:
            raise ConfigError(f"recover={c.recover!r} (with prune={c.prune!r}) has learnable parameters "
                              f"({learned[0]}, ...); tune ranks by zero-retraining error: use a parameter-free "
                              "recovery such as linear")
        options = dict(counters=("paper",), memory=False, pipeline=self.pipeline)
        if not self.latency:
            c.flops = profile(patched, self.example, fps=False, **options).flops["paper"].value
            return float(c.flops)
        cmp = compare(self.model, patched, self.example, fps=True, **options, **self.timing)
        c.flops, c.latency_ms = cmp.after.flops["paper"].value, cmp.after.latency.median_ms
        c.original_ms = cmp.before.latency.median_ms
        return c.latency_ms

    def fit(self, prune: str, recover: str | None, limit: float) -> tuple[float, dict[int, float], float, float]:
        """Paper FLOPs with every frame kept and per frame kept after each cut position (exact:
        only Linear/Conv count), the FLOPs that match ``limit`` and the cost of one FLOP (1, or
        with latency the slope of a line fitted through the measured (FLOPs, ms) points)."""
        F, mid = self.frames, max(1, self.frames // 2)
        points = [Candidate(1, F, prune, recover, self.pipeline)]
        points += [Candidate(n, mid, prune, recover, self.pipeline) for n in range(1, self.levels)]
        costs = [self.measure(c) for c in points]
        full = float(points[0].flops)
        slopes = {n: (full - points[n].flops) / max(1, F - mid) for n in range(1, self.levels)}
        if not self.latency:
            return full, slopes, limit, 1.0
        per_flop, offset = np.polyfit([float(c.flops) for c in points], costs, 1)
        if not per_flop > 0:
            raise ConfigError("its latency does not grow with its FLOPs on this device (timing noise?); "
                              "use a FLOPs budget, or more repeats")
        return full, slopes, (limit - offset) / per_flop, float(per_flop)

    def schedules(self, full: float, slopes: dict[int, float], limit: float, two_stage: bool,
                  pairs: int) -> list[tuple[Any, Any]]:
        """(n, f) of every single cut and (f1, f2) pairs of two cuts predicted to fit ``limit``."""
        F = self.frames

        def largest(n: int) -> int | None:  # the largest f at one cut after n that fits
            if slopes[n] <= 0:
                return F if full <= limit else None
            f = min(F, math.floor(F - (full - limit) / slopes[n] + 1e-9))
            return f if f >= 1 else None

        single = {n: largest(n) for n in range(1, self.levels)}
        out: list[tuple[Any, Any]] = [(n, f) for n, f in single.items() if f is not None]
        if not two_stage:
            return out
        for n1 in range(1, self.levels):
            for n2 in range(n1 + 1, self.levels):
                g1, s1, s2 = single[n1], slopes[n1], slopes[n2]
                if g1 is None or s2 <= 0:
                    continue
                for j in range(1, pairs + 1):
                    f1 = g1 + round((F - g1) * j / (pairs + 1))
                    if not g1 < f1 < F:
                        continue
                    f2 = min(f1 - 1, math.floor(F - (full - limit - (s1 - s2) * (F - f1)) / s2 + 1e-9))
                    if f2 >= 1 and ([n1, n2], [f1, f2]) not in out:
                        out.append(([n1, n2], [f1, f2]))
        return out

    def candidates(self, prunes: Sequence[str], recovers: Sequence[str | None], limit: float, *,
                   two_stage: bool, pairs: int) -> list[Candidate]:
        """Every schedule × pruner × recovery that fits ``limit`` (measured), the last f lowered until it does."""
        out: list[Candidate] = []
        combos = [(p, r) for p in prunes for r in recovers]
        for i, (prune, recover) in enumerate(combos):
            name = prune + (f"+{recover}" if recover else "")
            try:
                full, slopes, flops_limit, per_flop = self.fit(prune, recover, limit)
            except HotpatchError as err:  # a pairing the engine refuses (a recovery needing another pruner)
                if isinstance(err, ConfigError) and "learnable" in str(err):
                    raise
                self.skipped.append(f"{name}: {err}")
                log.info("tune: %s skipped: %s", name, err)
                continue
            for n, f in self.schedules(full, slopes, flops_limit, two_stage, pairs):
                c = Candidate(n, f, prune, recover, self.pipeline)
                if self._fit_last(c, limit, per_flop * slopes[n[-1] if isinstance(n, list) else n]):
                    out.append(c)
            if self.progress is not None:
                self.progress("costs", i + 1, len(combos), name)
        if not out:
            self._unreachable(prunes, recovers, limit)
        self.forget(out)
        return out

    def _fit_last(self, c: Candidate, limit: float, slope: float) -> bool:
        """Measure ``c``; lower its last f until it fits (at most 4 tries). False if it never does."""
        for _ in range(4):
            cost = self.measure(c)
            if cost <= limit:
                return True
            step = max(1, math.ceil((cost - limit) / slope)) if slope > 0 else 1
            if isinstance(c.f, list):
                if c.f[-1] - step < 1:
                    break
                c.f = [*c.f[:-1], c.f[-1] - step]
            elif c.f - step >= 1:
                c.f -= step
            else:
                break
        self.skipped.append(f"{c.label}: still over the limit after 4 measurements")
        return False

    def _unreachable(self, prunes: Sequence[str], recovers: Sequence[str | None], limit: float) -> None:
        tried = [Candidate(1, 1, p, r, self.pipeline) for p in prunes for r in recovers]
        costs = []
        for c in tried:
            try:
                costs.append(self.measure(c))
            except HotpatchError:  # a pairing the engine refuses
                costs.append(math.inf)
        cost, c = min(zip(costs, tried), key=lambda pair: pair[0])
        if self.latency:
            raise ConfigError(f"latency_ms={limit:g} is below anything reachable: the fastest setting ({c.label}) "
                              f"takes {cost:.2f} ms; give a limit of at least that")
        cheapest = cost / self.original["flops"]
        raise ConfigError(f"budget={limit / self.original['flops']:g} is below anything reachable: the cheapest "
                          f"setting ({c.label}) costs {cheapest:.3f} of the original's paper FLOPs; give a budget "
                          f"of at least {math.ceil(cheapest * 1000) / 1000:g}")

    # ------------------------------------------------------------------ successive halving

    def score(self, model: nn.Module, chunks: list[Any], windows: np.ndarray) -> float:
        """MPJPE on ``windows`` (a prefix grown from the one of ``chunks``: only new windows are predicted)."""
        from hotpatch.evaluate import Predictions, predict, score

        t0 = time.perf_counter()
        seen = sum(len(ch.windows) for ch in chunks)
        if len(windows) > seen:
            chunks.append(predict(model, self.dataset, batch_size=self.batch_size, windows=windows[seen:]))
        sel = [ch.selected for ch in chunks]
        merged = Predictions(poses=np.concatenate([ch.poses for ch in chunks]),
                             selected=None if any(s is None for s in sel) else np.concatenate(sel),
                             windows=np.concatenate([ch.windows for ch in chunks]), mode=self.dataset.mode)
        err = float(score(self.dataset, merged)["mpjpe"])
        self.eval_seconds += time.perf_counter() - t0
        return err if math.isfinite(err) else math.inf

    def halve(self, candidates: list[Candidate], *, eta: int, max_windows: int | None,
              first: int | None) -> tuple[list[Round], Candidate, nn.Module]:
        """Successive halving; returns the rounds, the winner and its patched model."""
        order = spread_order(len(self.dataset), max_windows)
        counts = window_counts(len(candidates), len(order), eta, first)
        self.windows_total = len(order)
        alive, chunks = list(range(len(candidates))), {i: [] for i in range(len(candidates))}
        rounds: list[Round] = []
        own: list[Any] = []  # the original's predictions, for its error on each round's windows
        self.original["errors"] = []
        for r, w in enumerate(counts):
            task = f"round {r} ({w} windows)"
            self.original["errors"].append(self.score(self.model, own, order[:w]))
            for j, i in enumerate(alive):
                candidates[i].errors.append(self.score(self.patch(candidates[i]), chunks[i], order[:w]))
                if self.progress is not None:
                    self.progress(task, j + 1, len(alive), candidates[i].label)
            best = sorted(alive, key=lambda i: (candidates[i].errors[-1], i))
            last = r == len(counts) - 1 or math.ceil(len(alive) / eta) == 1
            keep = 1 if last else math.ceil(len(alive) / eta)
            rounds.append(Round(r, w, len(alive), keep))
            for i in best[keep:]:
                candidates[i].dropped = r
                chunks.pop(i)
            alive = best[:keep]
            self.forget([candidates[i] for i in alive])
            if last:
                break
        self.windows_used = rounds[-1].windows
        self.original["mpjpe"] = self.original["errors"][-1]
        winner = candidates[alive[0]]
        if self.original.get("latency_ms") is None and winner.original_ms is not None:
            times = [c.original_ms for c in candidates if c.original_ms is not None]
            self.original["latency_ms"] = float(np.median(times))
        return rounds, winner, self.patch(winner)
