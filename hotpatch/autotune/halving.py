"""Successive halving over a scoring function, and how many calibration windows each round gets.

Pure: :func:`successive_halving` knows nothing of models or data; it asks ``score(i, w)`` for the
error of candidate ``i`` on the first ``w`` windows (of an order in which every prefix is spread
over the whole calibration set, :func:`spread_order`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hotpatch.autotune.result import Round

#: The fewest calibration windows any candidate is ranked on in a round (``tune(min_windows=)``).
#: On the test suite's small trained model (72 windows, benchmarks/tune_small.py) round 0 on 3
#: windows picked ranks 6 and 3 of the grid (+0.15, +0.22 mm); on 8, ranks 3 and 2 (+0.07, +0.09 mm,
#: within the 0.28 and 0.44 mm noise of those gaps) at about half the grid's evaluation time.
MIN_WINDOWS = 8


def spread_order(count: int, limit: int | None = None) -> np.ndarray:
    """At most ``limit`` of ``range(count)``, evenly spread, ordered so that every prefix is
    spread too (bit-reversed positions in the evenly spaced subset)."""
    keep = count if limit is None else min(limit, count)
    chosen = np.unique(np.linspace(0, count - 1, keep).round().astype(np.int64))
    bits = max(1, int(math.ceil(math.log2(max(2, len(chosen))))))
    rev = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)]
    order = [r for r in rev if r < len(chosen)]
    return chosen[order]


def halvings(candidates: int, eta: int) -> int:
    """Rounds that keep ``ceil(n / eta)`` each until one candidate is left."""
    count, left = 0, candidates
    while left > 1:
        left, count = math.ceil(left / eta), count + 1
    return count


def window_counts(candidates: int, total: int, eta: int, first: int | None, min_windows: int = 1) -> list[int]:
    """Windows of each round when every round keeps ``ceil(n / eta)``. By default as in
    Hyperband's successive halving: R halvings leave one candidate and round 0 gets
    ``ceil(total / eta**R)`` windows, so the last round (the final ``eta`` or fewer) gets about
    ``total / eta``. With ``first``: ``first``, ``first * eta``, ... up to ``total``. No round gets
    fewer than ``min_windows`` (or ``total`` if smaller); rounds that would need more than
    ``total`` get ``total`` (the last round then decides among all who are left)."""
    least = max(1, min(min_windows, total))
    rounds = halvings(candidates, eta)
    if first is None:
        if rounds == 0:  # one candidate: nothing to choose, its error on every window
            return [total]
        w0 = max(least, math.ceil(total / eta ** rounds))
        return sorted({min(total, w0 * eta ** i) for i in range(rounds)})
    counts, w = [], min(total, max(least, first))
    while True:
        counts.append(w)
        if w >= total:
            return counts
        w = min(total, w * eta)


def windows_needed(candidates: int, eta: int, min_windows: int) -> int:
    """Calibration windows a search over ``candidates`` needs so that every round has ``eta`` times
    the windows of the one before, starting at ``min_windows``: ``min_windows · eta**(R-1)``."""
    return min_windows * eta ** max(0, halvings(candidates, eta) - 1)


@dataclass(frozen=True)
class Halving:
    """What :func:`successive_halving` did: the rounds, each candidate's error per round it was
    scored in, the round after which each was dropped (None: the winner) and the winner."""

    rounds: list[Round]
    errors: list[list[float]]
    dropped: list[int | None]
    winner: int


def successive_halving(count: int, score: Callable[[int, int], float], counts: Sequence[int], eta: int, *,
                       on_scored: Callable[[int, int, int, int], None] | None = None,
                       on_kept: Callable[[list[int]], None] | None = None) -> Halving:
    """Successive halving of candidates ``0 .. count-1``: round ``r`` scores every candidate left on
    the first ``counts[r]`` windows (``score(i, w)``, lower is better), keeps the best
    ``ceil(n / eta)`` (ties: the earlier candidate), and the last round keeps one.
    ``on_scored(round, j, left, i)`` follows each score; ``on_kept(alive)`` each round."""
    alive = list(range(count))
    errors: list[list[float]] = [[] for _ in range(count)]
    dropped: list[int | None] = [None] * count
    rounds: list[Round] = []
    for r, w in enumerate(counts):
        for j, i in enumerate(alive):
            errors[i].append(score(i, w))
            if on_scored is not None:
                on_scored(r, j + 1, len(alive), i)
        best = sorted(alive, key=lambda i: (errors[i][-1], i))
        last = r == len(counts) - 1 or math.ceil(len(alive) / eta) == 1
        keep = 1 if last else math.ceil(len(alive) / eta)
        rounds.append(Round(r, w, len(alive), keep))
        for i in best[keep:]:
            dropped[i] = r
        alive = best[:keep]
        if on_kept is not None:
            on_kept(alive)
        if last:
            break
    return Halving(rounds, errors, dropped, alive[0])
