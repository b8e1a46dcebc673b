"""The parts of ``hotpatch.tune``, each alone: the cost model and the schedules within a limit,
successive halving over a scoring function, the model cache, immutable candidates."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hotpatch
import tinypose
from hotpatch.autotune.cache import ModelCache
from hotpatch.autotune.costs import CostModel, largest_f, lowered, schedules
from hotpatch.autotune.halving import successive_halving, window_counts, windows_needed
from hotpatch.autotune.result import Candidate
from hotpatch.evaluate import paper_flops

F = 27


# ------------------------------------------------------------------ the cost model


@pytest.fixture(scope="module")
def measured():
    """A model's cost model fitted from measured FLOPs, and a way to measure any schedule."""
    model = tinypose.TemporalLifter(F, depth=4).eval()
    prepared = hotpatch.prepare(model, example_input=torch.zeros(1, F, 17, 2))

    def flops(n, f):
        return paper_flops(prepared.patch(n, f, prune="uniform", recover="linear"), F)

    mid = F // 2
    cost = CostModel.fit(F, flops(1, F), mid, {n: flops(n, mid) for n in (1, 2, 3)})
    return cost, flops


@pytest.mark.parametrize("n, f", [(1, 5), (2, 20), (3, 1), ((1, 2), (20, 9)), ((1, 3), (13, 12)),
                                  ((1, 2, 3), (25, 14, 3))])
def test_the_cost_model_predicts_the_paper_flops_of_any_schedule_exactly(measured, n, f):
    cost, flops = measured
    assert cost.flops(n, f) == pytest.approx(flops(list(n) if isinstance(n, tuple) else n,
                                                   list(f) if isinstance(f, tuple) else f), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(full=st.floats(1e3, 1e9), frames=st.integers(2, 300), budget=st.floats(0.05, 0.99),
       shares=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6), pairs=st.integers(1, 3))
def test_every_schedule_fits_the_limit_and_one_more_frame_would_not(full, frames, budget, shares, pairs):
    """Slopes fall with the cut position (later cuts save less); each schedule's cost is within the
    limit, and keeping one more frame in its last stage is over it (unless f2 < f1 bounds it)."""
    levels = len(shares) + 1
    slopes = {n: full / frames * sum(shares[n - 1:]) / (len(shares) + 1) for n in range(1, levels)}
    model = CostModel(frames, full, slopes)
    limit = budget * full
    found = schedules(model, levels, limit, pairs=pairs)
    assert len(found) == len(set(found))
    for n, f in found:
        assert model.cost(n, f) <= limit * (1 + 1e-9)
        ns, fs = (n, f) if isinstance(n, tuple) else ((n,), (f,))
        assert all(1 <= k <= frames for k in fs) and list(fs) == sorted(fs, reverse=True) and len(set(ns)) == len(ns)
        more = (*fs[:-1], fs[-1] + 1)
        if more[-1] <= frames and (len(more) == 1 or more[-1] < more[-2]):
            assert model.cost(n, more if len(more) > 1 else more[0]) > limit * (1 - 1e-9), (n, f)
    singles = [n for n, _ in found if isinstance(n, int)]
    assert singles == sorted(singles) and all(largest_f(model, n, limit) is not None for n in singles)


def test_a_latency_cost_model_is_a_line_through_the_measured_points():
    model = CostModel.fit(10, 1000.0, 5, {1: 600.0, 2: 800.0}, costs=[12.0, 8.0, 10.0])  # 2 ms + 0.01 ms per FLOP
    assert (model.per_flop, model.offset) == (pytest.approx(0.01), pytest.approx(2.0))
    assert model.cost(1, 5) == pytest.approx(8.0) and model.flops_within(8.0) == pytest.approx(600.0)
    assert model.cost_per_frame((1, 2)) == pytest.approx(0.01 * 40)
    with pytest.raises(hotpatch.ConfigError, match="does not grow with its FLOPs"):
        CostModel.fit(10, 1000.0, 5, {1: 600.0}, costs=[5.0, 9.0])


def test_lowered_takes_frames_from_the_last_stage_only():
    assert lowered(2, 9, 3) == 6 and lowered(2, 3, 3) is None
    assert lowered((1, 2), (20, 9), 4) == (20, 5) and lowered((1, 2), (20, 2), 2) is None


# ------------------------------------------------------------------ successive halving


def test_successive_halving_keeps_the_best_third_and_ends_with_the_lowest_error():
    true = [5.0, 1.0, 3.0, 2.0, 8.0, 1.5, 9.0, 4.0, 7.0, 6.0]
    calls, kept = [], []

    def score(i, w):
        calls.append((i, w))
        return true[i] + 1.0 / w  # more windows, less error: the same order each round

    h = successive_halving(len(true), score, [2, 6, 10], 3, on_kept=kept.append)
    assert [(r.windows, r.candidates, r.kept) for r in h.rounds] == [(2, 10, 4), (6, 4, 2), (10, 2, 1)]
    assert h.winner == 1 and h.dropped[1] is None
    assert kept == [[1, 5, 3, 2], [1, 5], [1]]
    assert [len(e) for e in h.errors] == [1, 3, 2, 2, 1, 3, 1, 1, 1, 1]
    assert sum(w for i, w in calls if i == 1) == 2 + 6 + 10 and len(calls) == 10 + 4 + 2
    assert all(h.dropped[i] == 0 for i in (0, 4, 6, 7, 8, 9)) and h.dropped[3] == h.dropped[2] == 1 and h.dropped[5] == 2


def test_ties_go_to_the_earlier_candidate_and_one_candidate_is_scored_once():
    h = successive_halving(4, lambda i, w: 1.0, [3, 9], 3)
    assert h.winner == 0 and [r.kept for r in h.rounds] == [2, 1]
    one = successive_halving(1, lambda i, w: 2.0, window_counts(1, 20, 3, None), 3)
    assert one.winner == 0 and [(r.windows, r.candidates) for r in one.rounds] == [(20, 1)]


@given(candidates=st.integers(1, 200), total=st.integers(1, 500), eta=st.integers(2, 5), least=st.integers(1, 20))
def test_window_counts_grow_to_at_most_all_windows_and_never_below_the_minimum(candidates, total, eta, least):
    counts = window_counts(candidates, total, eta, None, least)
    assert counts == sorted(set(counts)) and counts[-1] <= total
    assert counts[0] >= min(least, total)
    if total >= windows_needed(candidates, eta, least) and candidates > 1:  # room for every round: eta-fold
        assert all(b == a * eta or b == total for a, b in zip(counts, counts[1:]))
        assert len(counts) == math.ceil(math.log(candidates, eta) - 1e-9) or counts[-1] == total


# ------------------------------------------------------------------ the model cache and candidates


def test_the_cache_builds_each_model_once_while_it_is_kept():
    built = []
    cache = ModelCache(lambda key: built.append(key) or torch.nn.Linear(1, 1), room=2)
    a = cache.get("a")
    assert cache.get("a") is a and built == ["a"]
    cache.get("b"), cache.get("c")  # no room for c: built, not kept
    assert list(cache.models) == ["a", "b"] and cache.get("c") is not cache.get("c")
    cache.keep_only(["b"])
    assert list(cache.models) == ["b"] and cache.get("a") is not a and cache.builds == 6


def test_candidates_cannot_be_changed_after_they_are_made():
    c = Candidate([1, 2], [20, 9], "tpc", "linear", "seq2seq")
    assert c.n == (1, 2) and c.key == ((1, 2), (20, 9), "tpc", "linear")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.f = (20, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.errors = (1.0,)
    scored = dataclasses.replace(c, errors=(3.0, 2.5), dropped=1)
    assert c.errors == () and scored.error == 2.5 and scored.setting["n"] == [1, 2]
    assert scored.to_dict()["f"] == [20, 9] and scored.label == "n=1,2 f=20,9 tpc+linear"
