"""What a tune search returns: its candidates (immutable), rounds, the grid check and a report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn


@dataclass(frozen=True)
class Candidate:
    """One setting and what the search measured for it (``errors[r]``: MPJPE in round ``r``).

    Candidates are never changed: a measurement or a round makes a new one
    (``dataclasses.replace``)."""

    n: int | tuple[int, ...]
    f: int | tuple[int, ...]
    prune: str
    recover: str | None
    pipeline: str
    flops: int | None = None
    latency_ms: float | None = None
    original_ms: float | None = None  # the original timed interleaved with this setting
    errors: tuple[float, ...] = ()
    dropped: int | None = None  # the round after which it was dropped; None for the winner

    def __post_init__(self) -> None:  # lists (as the engine and JSON write them) become tuples
        for name in ("n", "f", "errors"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def key(self) -> tuple:
        """What identifies the patched model: schedule, pruner and recovery."""
        return (self.n, self.f, self.prune, self.recover)

    @property
    def label(self) -> str:
        from hotpatch.patch import stage_text

        return (f"n={stage_text(self.n)} f={stage_text(self.f)} {self.prune}"
                + (f"+{self.recover}" if self.recover else ""))

    @property
    def setting(self) -> dict[str, Any]:
        """``apply`` keywords (lists for several stages, as ``hotpatch_config`` records them)."""
        def plain(v: int | tuple[int, ...]) -> int | list[int]:
            return list(v) if isinstance(v, tuple) else v

        return {"n": plain(self.n), "f": plain(self.f), "prune": self.prune, "recover": self.recover,
                "pipeline": self.pipeline}

    @property
    def error(self) -> float | None:
        """The MPJPE of the last round it was scored in."""
        return self.errors[-1] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(n=self.setting["n"], f=self.setting["f"], errors=list(self.errors))
        return {"label": self.label, **d}


@dataclass(frozen=True)
class Round:
    """Round ``index`` scored ``candidates`` settings on ``windows`` windows and kept ``kept``."""

    index: int
    windows: int
    candidates: int
    kept: int


@dataclass(frozen=True)
class GridCheck:
    """Every candidate scored on every calibration window (``--check-grid``): where the chosen
    setting ranks, how far it is from the grid's best, and how large that gap is against the
    noise of the calibration set (two standard errors of the per-window difference)."""

    errors: dict[str, float]  # label -> MPJPE on all calibration windows
    best: str
    rank: int  # of the chosen setting, 1 = the grid's best (ties share the better rank)
    gap_mm: float  # chosen - best, on all windows
    noise_mm: float  # 2 standard errors of the per-window difference chosen - best (0 if the same)
    eval_seconds: float

    @property
    def within_noise(self) -> bool:
        return self.gap_mm <= self.noise_mm

    def summary(self, chosen: str) -> str:
        if chosen == self.best:
            return f"grid check: {chosen} is the grid's best of {len(self.errors)} on every calibration window"
        return (f"grid check: {chosen} ranks {self.rank} of {len(self.errors)} on every calibration window, "
                f"{self.gap_mm:+.2f} mm from the best ({self.best}); the noise of that gap is {self.noise_mm:.2f} mm "
                f"(2 standard errors over windows){': within it' if self.within_noise else ''}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_noise": self.within_noise}


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
    calibration: dict[str, Any]  # sequences, windows (all), last_round_windows, min_windows
    seconds: float  # wall time of the whole search
    eval_seconds: float  # of it, predicting and scoring calibration windows
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grid: GridCheck | None = None

    @property
    def setting(self) -> dict[str, Any]:
        """``apply`` keywords of the chosen setting."""
        return self.chosen.setting

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.to_dict(), "setting": self.setting, "budget": self.budget,
                "latency_limit_ms": self.latency_limit_ms, "limit": self.limit, "original": self.original,
                "calibration": self.calibration, "rounds": [asdict(r) for r in self.rounds],
                "candidates": [c.to_dict() for c in self.candidates], "seconds": self.seconds,
                "eval_seconds": self.eval_seconds, "skipped": list(self.skipped), "warnings": list(self.warnings),
                "grid": None if self.grid is None else self.grid.to_dict()}

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
                 f"search {self.seconds:.1f} s ({self.eval_seconds:.1f} s predicting and scoring).", ""]
        lines += [f"Warning: {w}" for w in self.warnings] + ([""] if self.warnings else [])
        if self.grid is not None:
            lines += [self.grid.summary(c.label) + ".", ""]
        lines += ["| round | windows | candidates | kept |", "|---|---|---|---|"]
        lines += [f"| {r.index} | {r.windows} | {r.candidates} | {r.kept} |" for r in self.rounds]
        rounds = len(self.rounds)
        grid = " | grid MPJPE" if self.grid is not None else ""
        lines += ["", "| setting | paper FLOPs | latency ms | " + " | ".join(f"MPJPE r{i}" for i in range(rounds))
                  + grid + " | dropped after |",
                  "|---|---|---|" + "---|" * rounds + ("---|" if grid else "") + "---|"]
        errs = [f"{e:.2f}" for e in o.get("errors", [])]
        lines.append(f"| original | {_pct(o.get('flops'), o.get('flops'))} | {_num(o.get('latency_ms'))} | "
                     + " | ".join(errs) + (" | –" if grid else "") + " | – |")
        for cand in ranked(self.candidates):
            errs = [f"{e:.2f}" for e in cand.errors] + ["–"] * (rounds - len(cand.errors))
            full = f" | {self.grid.errors[cand.label]:.2f}" if self.grid is not None else ""
            mark = "**chosen**" if cand is c else f"round {cand.dropped}"
            lines.append(f"| {cand.label} | {_pct(cand.flops, o.get('flops'))} | {_num(cand.latency_ms)} | "
                         + " | ".join(errs) + full + f" | {mark} |")
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
