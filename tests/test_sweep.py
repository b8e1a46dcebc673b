"""``hotpatch.sweep`` and its Pareto front (the commands: tests/cli/test_cli_sweep.py, test_cli_show.py)."""

from __future__ import annotations

import pytest
import torch

import tinypose
from hotpatch.errors import ConfigError
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


def test_pareto_plot_of_close_rows_has_no_offset_notation(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    from hotpatch import viz
    from hotpatch.sweep import SweepResult, SweepRow

    def row(label, flops, ms):
        return SweepRow(label, 1, 3, "tpc", "linear", "seq2seq", 1000, flops, ms, 1.0, ms)

    original = row("original", 159_300_000_000, 159.28)
    rows = [row("a", 159_200_000_000, 159.24), row("b", 159_250_000_000, 159.26)]
    for r, on in zip([original, *rows], pareto_front([(r.flops, r.latency_ms) for r in [original, *rows]])):
        r.pareto = on
    seen = {}

    def keep(plt, fig, path, *a, **k):
        fig.canvas.draw()
        ax = fig.axes[0]
        seen["offsets"] = (ax.xaxis.get_major_formatter().get_offset(), ax.yaxis.get_major_formatter().get_offset())
        seen["ticks"] = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        plt.close(fig)
        return path

    monkeypatch.setattr(viz, "save_figure", keep)
    viz.pareto_plot(SweepResult(original, rows, "latency_ms"), tmp_path / "p.png")
    assert seen["offsets"] == ("", "")
    assert all(t.startswith("159.2") or t.startswith("159.3") for t in seen["ticks"]), seen["ticks"]
    empty = SweepResult(row("original", 1, None), [row("a", 1, None)], "latency_ms")
    with pytest.raises(ConfigError, match="nothing to plot"):
        viz.pareto_plot(empty, tmp_path / "q.png")
