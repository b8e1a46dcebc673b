"""``hotpatch.tune``: candidates at the budget, successive-halving bookkeeping, determinism, errors
(the command: tests/cli/test_tune_cli.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hotpatch
import tinypose
from hotpatch.autotune import DEFAULT_PRUNERS, DEFAULT_RECOVERIES, MIN_WINDOWS, spread_order, tune, window_counts
from hotpatch.errors import ConfigError
from hotpatch.evaluate import paper_flops
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS

CLIP = torch.zeros(1, 9, 17, 2)
SEQS = tinypose.sequences((40, 33, 27, 50, 31, 44), seed=1)


def _model():
    return tinypose.mixste(frames=9, depth=3).eval()


@pytest.fixture(scope="module")
def result():
    return tune(_model(), SEQS, budget=0.7, example_input=CLIP)


def test_every_candidate_fits_the_budget_and_spends_about_it(result):
    original = paper_flops(_model(), 9)
    assert result.original["flops"] == original and result.limit == pytest.approx(0.7 * original)
    assert result.candidates and all(c.flops <= 0.7 * original for c in result.candidates)
    prepared = hotpatch.prepare(_model(), example_input=CLIP)
    for c in result.candidates:  # one more frame in the last stage would break the budget
        f = [*c.f[:-1], c.f[-1] + 1] if isinstance(c.f, tuple) else c.f + 1
        if isinstance(c.f, tuple) and f[-1] >= f[0]:
            continue  # f2 < f1 bounds this pair, not the budget
        more = prepared.patch(c.n, f, pipeline="seq2seq", prune=c.prune, recover=c.recover)
        assert paper_flops(more, 9) > 0.7 * original, c.label
    singles = sorted({c.n for c in result.candidates if isinstance(c.n, int)})
    doubles = [c for c in result.candidates if isinstance(c.n, tuple)]
    assert singles and doubles and all(c.f[0] > c.f[1] and c.n[0] < c.n[1] for c in doubles)


def test_default_candidates_are_the_registered_parameter_free_ones(result):
    assert hotpatch.tune is tune
    assert {c.prune for c in result.candidates} == {p for p in DEFAULT_PRUNERS if p in PRUNERS}
    assert {c.recover for c in result.candidates} == {r for r in DEFAULT_RECOVERIES if r in RECOVERERS}
    assert {c.prune for c in result.candidates} == {"tpc", "uniform", "merge"}  # every default is registered
    assert {c.recover for c in result.candidates} == {"linear", "unmerge"}
    assert not [k for k, _ in result.model.named_parameters() if k.startswith("hotpatch_")]


def test_successive_halving_bookkeeping(result):
    rounds, cands = result.rounds, result.candidates
    assert rounds[0].candidates == len(cands) and len(rounds) >= 2
    for a, b in zip(rounds, rounds[1:]):
        assert b.candidates == a.kept == math.ceil(a.candidates / 3)
    assert rounds[-1].kept == 1
    assert result.calibration["windows"] == 27  # every non-overlapping window of SEQS
    assert rounds[-1].windows == result.calibration["last_round_windows"]
    assert [r.windows for r in rounds] == window_counts(len(cands), 27, 3, None, MIN_WINDOWS)
    assert rounds[0].windows >= MIN_WINDOWS
    for r in rounds:  # who went on from round r was at least as good as everyone dropped there
        kept = [c.errors[r.index] for c in cands if len(c.errors) > r.index + 1 or c is result.chosen]
        dropped = [c.errors[r.index] for c in cands if c.dropped == r.index]
        assert len(kept) == r.kept and len(kept) + len(dropped) == r.candidates
        assert max(kept) <= min(dropped)
        assert all(len(c.errors) == r.index + 1 for c in cands if c.dropped == r.index)
    assert [c for c in cands if c.dropped is None] == [result.chosen]
    finalists = [c for c in cands if len(c.errors) == len(rounds)]
    assert result.chosen.error == min(c.error for c in finalists)


def test_chosen_model_matches_the_setting_and_its_error(result):
    from hotpatch.data import WindowDataset
    from hotpatch.evaluate import evaluate_model

    cfg, c = result.model.hotpatch_config, result.chosen
    assert (cfg["prune"], cfg["recover"], cfg["pipeline"]) == (c.prune, c.recover, "seq2seq")
    assert (cfg["n"], cfg["f"]) == (c.setting["n"], c.setting["f"])
    assert paper_flops(result.model, 9) == c.flops
    data = WindowDataset(SEQS, 9)
    windows = spread_order(len(data), 243)[:result.calibration["last_round_windows"]]  # the last round's
    res = evaluate_model(result.model, data, windows=windows, flops=False)
    assert res["mpjpe"] == pytest.approx(c.error, rel=1e-6)
    assert result.to_dict()["setting"] == result.setting
    assert c.label in result.markdown() and "**chosen**" in result.markdown()


def test_a_calibration_set_too_small_for_the_search_is_warned_about_with_the_number_needed(result, caplog):
    from hotpatch.autotune.halving import halvings, windows_needed

    needed = windows_needed(len(result.candidates), 3, MIN_WINDOWS)
    assert halvings(len(result.candidates), 3) >= 2 and needed > 27  # 27 windows: too few for these rounds
    assert len(result.warnings) == 1 and f"that needs {needed} windows" in result.warnings[0]
    assert "the calibration set has 27 windows" in result.warnings[0] and result.to_dict()["warnings"] == result.warnings
    assert f"Warning: {result.warnings[0]}" in result.markdown()
    roomy = tune(_model(), SEQS, budget=0.7, example_input=CLIP, prune=["uniform"], two_stage=False, min_windows=1)
    assert roomy.warnings == []  # three candidates, one window each: room enough


def test_tune_is_deterministic(result):
    again = tune(_model(), SEQS, budget=0.7, example_input=CLIP).to_dict()
    first = result.to_dict()
    for d in (again, first):
        d.pop("seconds"), d.pop("eval_seconds")
    assert again == first


def test_first_windows_equal_to_all_is_the_grid():
    grid = tune(_model(), SEQS, budget=0.7, example_input=CLIP, prune=["uniform"], two_stage=False,
                first_windows=10_000)
    assert len(grid.rounds) == 1 and grid.rounds[0].windows == grid.calibration["windows"] == 27
    assert all(len(c.errors) == 1 for c in grid.candidates)
    assert grid.chosen.error == min(c.error for c in grid.candidates)


def test_seq2frame_has_no_recovery():
    res = tune(_model(), SEQS, budget=0.7, example_input=CLIP, pipeline="seq2frame", prune=["uniform"],
               two_stage=False)
    assert {c.recover for c in res.candidates} == {None}
    assert res.model.hotpatch_config["pipeline"] == "seq2frame"


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of budget"),
    (dict(budget=0.5, latency_ms=3.0), "exactly one of budget"),
    (dict(budget=1.0), "0 < budget < 1"),
    (dict(budget=0.0), "0 < budget < 1"),
    (dict(budget=0.5, pipeline="auto"), "'seq2seq' or 'seq2frame'"),
    (dict(budget=0.5, eta=1), "eta=1"),
    (dict(budget=0.5, prune=["nope"]), "choose from"),
    (dict(budget=0.5, first_windows=0), "first_windows=0: a number of calibration windows"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tune(_model(), SEQS, example_input=CLIP, **kwargs)


def test_budget_below_anything_reachable_names_the_cheapest():
    with pytest.raises(ConfigError, match=r"below anything reachable.*cheapest setting \(n=1 f=1 tpc\+linear\) "
                                          r"costs 0\.\d+ of the original's paper FLOPs") as err:
        tune(_model(), SEQS, budget=0.01, example_input=CLIP, prune=["tpc"])
    cheapest = float(str(err.value).split("costs ")[1].split(" ")[0])
    prepared = hotpatch.prepare(_model(), example_input=CLIP)
    one = paper_flops(prepared.patch(1, 1, prune="tpc", recover="linear"), 9) / paper_flops(_model(), 9)
    assert cheapest == pytest.approx(one, abs=5e-4)


def test_learnable_recovery_is_refused():
    with pytest.raises(ConfigError, match="learnable parameters.*parameter-free"):
        tune(_model(), SEQS, budget=0.7, example_input=CLIP, prune=["uniform"], recover=["tra"])


def test_spread_order_and_window_counts():
    order = spread_order(100, 16)
    assert sorted(order.tolist()) == np.unique(np.linspace(0, 99, 16).round().astype(int)).tolist()
    assert order[0] == 0 and abs(order[1] - 50) <= 4  # the second window halves the range
    assert max(np.diff(np.sort(order[:4]))) <= 40  # any prefix is spread out
    assert spread_order(5).tolist() == [0, 4, 2, 1, 3]
    assert window_counts(18, 243, 3, None) == [9, 27, 81]  # 18 -> 6 -> 2 -> 1: three rounds
    assert window_counts(54, 243, 3, None) == [3, 9, 27, 81]
    assert window_counts(6, 243, 3, None) == [27, 81]
    assert window_counts(5, 20, 3, None) == [3, 9]
    assert window_counts(1, 20, 3, None) == [20]
    assert window_counts(5, 20, 3, 20) == [20]
    assert window_counts(5, 20, 3, 2) == [2, 6, 18, 20]
    # no round below min_windows; rounds that would need more than all windows get all of them
    assert window_counts(45, 72, 3, None, 8) == [8, 24, 72]
    assert window_counts(5, 20, 3, 2, 4) == [4, 12, 20]
    assert window_counts(18, 5, 3, None, 8) == [5]


def test_latency_limits_outside_what_is_reachable_are_refused():
    with pytest.raises(ConfigError, match=r"the original already runs in [\d.]+ ms, within latency_ms=1e\+06"):
        tune(_model(), SEQS, latency_ms=1e6, example_input=CLIP, repeats=1, warmup=0)
    with pytest.raises(ConfigError, match=r"latency_ms=1e-06 is below anything reachable: the fastest setting "
                                          r"\(n=1 f=1 uniform\+linear\) takes [\d.]+ ms"):
        tune(_model(), SEQS, latency_ms=1e-6, example_input=CLIP, prune=["uniform"], two_stage=False, repeats=1,
             warmup=0)
