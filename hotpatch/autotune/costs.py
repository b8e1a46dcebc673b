"""The cost model of a HoT schedule and the schedules that fit a limit (pure arithmetic).

Paper FLOPs are affine in the frames each block keeps: with every frame kept a forward costs
``full``; each frame dropped after cut position ``n`` saves ``slopes[n]`` (the per-frame FLOPs of
every block after it, up to the recovery). A schedule ``n=[n1, n2], f=[f1, f2]`` saves
``(s[n1] - s[n2]) · (F - f1) + s[n2] · (F - f2)``. A cost is ``per_flop · FLOPs + offset``: for
a FLOPs budget (1, 0); for a latency limit a line fitted through measured (FLOPs, ms) points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hotpatch.errors import ConfigError

Schedule = tuple[int | tuple[int, ...], int | tuple[int, ...]]
"""``(n, f)``: one cut (two ints) or several stages (two tuples)."""


def stages(n: int | Sequence[int], f: int | Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A schedule's cuts and kept frames as two tuples."""
    return (tuple(n), tuple(f)) if isinstance(n, (list, tuple)) else ((int(n),), (int(f),))


@dataclass(frozen=True)
class CostModel:
    """Paper FLOPs and cost of any schedule of one model (see the module docstring)."""

    frames: int
    full: float
    slopes: Mapping[int, float]
    per_flop: float = 1.0
    offset: float = 0.0

    @classmethod
    def fit(cls, frames: int, full: float, mid: int, at_mid: Mapping[int, float],
            costs: Sequence[float] | None = None) -> CostModel:
        """From measured FLOPs: ``full`` with every frame kept, ``at_mid[n]`` with one cut after ``n``
        keeping ``mid`` frames. ``costs`` (latency of the same points, ``full`` first): fit a line."""
        slopes = {n: (full - flops) / max(1, frames - mid) for n, flops in at_mid.items()}
        if costs is None:
            return cls(frames, float(full), slopes)
        points = [float(full), *(float(v) for v in at_mid.values())]
        per_flop, offset = np.polyfit(points, [float(c) for c in costs], 1)
        if not per_flop > 0:
            raise ConfigError("its latency does not grow with its FLOPs on this device (timing noise?); "
                              "use a FLOPs budget, or more repeats")
        return cls(frames, float(full), slopes, float(per_flop), float(offset))

    def flops(self, n: int | Sequence[int], f: int | Sequence[int]) -> float:
        """Predicted paper FLOPs of the schedule."""
        ns, fs = stages(n, f)
        saved, after = 0.0, [*ns[1:], None]
        for cut, keep, nxt in zip(ns, fs, after):
            saved += (self.slopes[cut] - (self.slopes[nxt] if nxt is not None else 0.0)) * (self.frames - keep)
        return self.full - saved

    def cost(self, n: int | Sequence[int], f: int | Sequence[int]) -> float:
        return self.per_flop * self.flops(n, f) + self.offset

    def flops_within(self, limit: float) -> float:
        """The FLOPs that cost ``limit``."""
        return (limit - self.offset) / self.per_flop

    def cost_per_frame(self, n: int | Sequence[int]) -> float:
        """What one more frame kept in the last stage of a schedule cut at ``n`` costs."""
        last = n[-1] if isinstance(n, (list, tuple)) else n
        return self.per_flop * self.slopes[last]


def largest_f(model: CostModel, n: int, flops: float) -> int | None:
    """The largest f of one cut after ``n`` within ``flops`` (None if even f = 1 is over)."""
    frames, slope = model.frames, model.slopes[n]
    if slope <= 0:
        return frames if model.full <= flops else None
    f = min(frames, math.floor(frames - (model.full - flops) / slope + 1e-9))
    return f if f >= 1 else None


def schedules(model: CostModel, levels: int, limit: float, *, two_stage: bool = True, pairs: int = 2) -> list[Schedule]:
    """Every single cut ``n = 1 .. levels-1`` with the largest f within ``limit`` (a cost), and with
    ``two_stage`` every two-stage schedule ``n1 < n2``: ``pairs`` values of f1 spread between the
    single cut's f at n1 and F, each with the largest f2 < f1 within the limit."""
    frames, flops = model.frames, model.flops_within(limit)
    single = {n: largest_f(model, n, flops) for n in range(1, levels)}
    out: list[Schedule] = [(n, f) for n, f in single.items() if f is not None]
    if not two_stage:
        return out
    for n1 in range(1, levels):
        for n2 in range(n1 + 1, levels):
            g1, s1, s2 = single[n1], model.slopes[n1], model.slopes[n2]
            if g1 is None or s2 <= 0:
                continue
            for j in range(1, pairs + 1):
                f1 = g1 + round((frames - g1) * j / (pairs + 1))
                if not g1 < f1 < frames:
                    continue
                f2 = min(f1 - 1, math.floor(frames - (model.full - flops - (s1 - s2) * (frames - f1)) / s2 + 1e-9))
                if f2 >= 1 and ((n1, n2), (f1, f2)) not in out:
                    out.append(((n1, n2), (f1, f2)))
    return out


def lowered(n: int | tuple[int, ...], f: int | tuple[int, ...], step: int) -> int | tuple[int, ...] | None:
    """``f`` with its last stage ``step`` frames lower (None if that leaves no frame)."""
    if isinstance(f, tuple):
        return (*f[:-1], f[-1] - step) if f[-1] - step >= 1 else None
    return f - step if f - step >= 1 else None
