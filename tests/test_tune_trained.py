"""``hotpatch.tune`` on a small trained model and a small calibration set (72 windows), where
ranking candidates on one or two windows in round 0 missed the grid's best: at three budgets,
the pick is the grid's best or within the noise of the calibration set (two standard errors of
the per-window difference), as ``check_grid`` measures. ``benchmarks/tune_small.py`` prints the
same comparison as a table."""

from __future__ import annotations

import pytest
import torch

import tinypose
from hotpatch.autotune import tune

CALIBRATION = tinypose.walks((80,) * 24, seed=7)


@pytest.mark.parametrize("budget", [0.65, 0.5, 0.4])
def test_the_pick_is_the_grids_best_or_within_the_noise(trained_lifter, budget):
    result = tune(trained_lifter, CALIBRATION, budget=budget, example_input=torch.zeros(1, 27, 17, 2),
                  check_grid=True)
    grid, chosen = result.grid, result.chosen
    assert result.calibration["windows"] == 72 and len(grid.errors) == len(result.candidates)
    assert all(r.windows >= 8 for r in result.rounds)  # never ranked on fewer than min_windows
    assert grid.errors[grid.best] == min(grid.errors.values())
    assert grid.gap_mm == pytest.approx(grid.errors[chosen.label] - grid.errors[grid.best])
    assert grid.rank == 1 + sum(e < grid.errors[chosen.label] for e in grid.errors.values())
    assert chosen.label == grid.best or grid.gap_mm <= grid.noise_mm, grid.summary(chosen.label)
    spread = max(grid.errors.values()) - min(grid.errors.values())
    assert spread > 2 * grid.noise_mm  # the candidates do differ: the check is not vacuous
