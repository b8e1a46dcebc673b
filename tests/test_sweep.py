"""``hotpatch.sweep`` and its Pareto front (the commands: tests/cli/test_cli_sweep.py, test_cli_show.py)."""

from __future__ import annotations

import torch

import tinypose
from hotpatch.sweep import pareto_front, sweep


def test_pareto_front_by_hand():
    points = [(10, 5.0), (6, 5.0), (6, 6.0), (3, 9.0), (8, 4.0), (3, 9.0)]
    # (10,5) is beaten by (6,5); (6,6) by (6,5); the two (3,9) tie and both stay
    assert pareto_front(points) == [False, True, False, True, True, True]


def test_sweep_rows_front_and_exact_f_equals_F():
    model = tinypose.mixste(frames=9, depth=3).eval()
    seqs = tinypose.sequences((20, 13))
    result = sweep(model, n=[1, 2], f=[3, 9], recover=["linear"], example_input=torch.zeros(1, 9, 17, 2),
                   sequences=seqs, latency=False, batch_size=8)
    assert [(r.n, r.f) for r in result.rows] == [(1, 3), (1, 9), (2, 3), (2, 9)]
    assert result.error_name == "mpjpe"
    by = {(r.n, r.f): r for r in result.rows}
    assert by[1, 3].flops < by[2, 3].flops < by[2, 9].flops <= result.original.flops
    for n in (1, 2):  # keeping every frame with linear recovery is the original model
        assert by[n, 9].metrics["mpjpe"] == result.original.metrics["mpjpe"]
    assert "mpjpe_selected" in by[1, 3].metrics and "mpjpe_pruned" in by[1, 3].metrics
    everyone = [result.original, *result.rows]
    for r in result.frontier:  # nobody dominates a front row
        assert not any(o.flops <= r.flops and o.error <= r.error and (o.flops < r.flops or o.error < r.error)
                       for o in everyone)
    assert by[1, 3].pareto  # the cheapest setting is always on the front


def test_sweep_with_stage_lists():
    model = tinypose.mixste(frames=9, depth=3).eval()
    seqs = tinypose.sequences((20, 13))
    result = sweep(model, n=[1], f=[5], stages=[([1, 2], [5, 3]), ([1, 2], [9, 9])], recover=["linear"],
                   example_input=torch.zeros(1, 9, 17, 2), sequences=seqs, latency=False, batch_size=8)
    assert [(r.n, r.f) for r in result.rows] == [(1, 5), ([1, 2], [5, 3]), ([1, 2], [9, 9])]
    one, two, full = result.rows
    assert two.label == "n=1,2 f=5,3 tpc+linear"
    assert two.flops < one.flops  # the second stage removes more tokens
    assert full.flops == result.original.flops and full.metrics["mpjpe"] == result.original.metrics["mpjpe"]
    assert "mpjpe_selected" in two.metrics
