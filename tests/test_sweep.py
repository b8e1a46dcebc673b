"""``hotpatch.sweep``, its Pareto front and plot, and ``hotpatch show``."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import tinypose
from hotpatch.cli import main
from hotpatch.errors import ConfigError
from hotpatch.sweep import pareto_front, sweep

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


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


def test_cli_sweep_writes_json_csv_and_png(capsys, tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="the plot needs the plot extra")
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    rc = main(["--quiet", "sweep", *TINY, "--n", "1,2", "--f", "3,5", "--prune", "tpc,uniform", "--data", str(data),
               "--cameras", "1", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "s.json"),
               "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads((tmp_path / "s.json").read_text())
    assert len(data["rows"]) == 1 + 2 * 2 * 2 and data["error"] == "mpjpe" and data["frontier"]
    row = data["rows"][1]
    assert {"n", "f", "prune", "recover", "params", "flops", "latency_ms", "original_ms", "speedup", "mpjpe",
            "pareto"} <= set(row)
    for r in data["rows"]:  # each row's speed-up is the ratio of its own paired latencies
        assert r["speedup"] == pytest.approx(r["original_ms"] / r["latency_ms"], rel=1e-9)
    with open(tmp_path / "s.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 9
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.size == (960, 600)
    assert "hotpatch sweep" in out and "Pareto" in out and "original ms" in out
    rows = [[c.strip() for c in line.split("│") if c.strip()] for line in out.splitlines()]
    rows = [cells for cells in rows if len(cells) >= 6 and cells[5].endswith("x")]
    assert len(rows) == 9  # the original and 8 settings
    for cells in rows:  # the printed speed-up matches the printed latency columns
        assert float(cells[5][:-1]) == pytest.approx(float(cells[4]) / float(cells[3]), abs=0.006), cells


def test_cli_sweep_without_latency_has_no_latency_columns_or_front(capsys):
    rc = main(["--quiet", "sweep", *TINY, "--n", "1", "--f", "3", "--no-latency"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "latency ms" not in out and "original ms" not in out and "speed-up" not in out
    assert "no Pareto front: neither latency (--no-latency) nor accuracy (--data) was measured" in out


@pytest.mark.parametrize("flag, value, message", [
    ("--f", "0", "positive integers"), ("--n", "3,1", "increasing order"), ("--f", "3,x", "integers"),
])
def test_cli_sweep_bad_lists(capsys, flag, value, message):
    argv = {"--n": "1", "--f": "3"}
    argv[flag] = value
    with pytest.raises(SystemExit) as exc:
        main(["sweep", *TINY, "--n", argv["--n"], "--f", argv["--f"]])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_cli_sweep_setting_out_of_range_is_one_line(capsys):
    rc = main(["--quiet", "sweep", *TINY, "--n", "1", "--f", "3,12", "--no-latency"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "f=[12]" in err and "F=9" in err


def test_cli_show_marks_kept_frames(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    out_png = tmp_path / "show.png"
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "dataset-1_walk_normal_000",
               "--n", "1", "--f", "3", "--prune", "tpc,uniform,motion", "-o", str(out_png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.count("kept 3 frames") == 3
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "nope", "--n", "1", "--f", "3",
               "-o", str(out_png)])
    assert rc == 2 and "no clip named 'nope'" in capsys.readouterr().err


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


def test_cli_sweep_stages_to_json_and_csv(capsys, tmp_path):
    rc = main(["--quiet", "sweep", *TINY, "--n", "1", "--f", "5", "--stages", "1,2:5,3", "--no-latency",
               "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv")])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [(r["n"], r["f"]) for r in rows] == [(None, None), (1, 5), ([1, 2], [5, 3])]
    with open(tmp_path / "s.csv") as fh:
        assert [(r["n"], r["f"]) for r in csv.DictReader(fh)][2] == ("1,2", "5,3")


@pytest.mark.parametrize("value, message", [
    ("2,1:5,3", "n must increase"), ("1,2:3,5", "n must increase and f must not"), ("1,2:5", "one f per cut"),
    ("1,2", "N,N:F,F"), ("1,x:5,3", "N,N:F,F"),
])
def test_cli_sweep_bad_stages(capsys, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", *TINY, "--stages", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_cli_sweep_needs_settings(capsys):
    assert main(["--quiet", "sweep", *TINY, "--n", "1"]) == 2
    assert "--stages" in capsys.readouterr().err


def test_cli_show_marks_each_stage(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    out_png = tmp_path / "stages.png"
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "dataset-1_walk_normal_000",
               "--n", "1,2", "--f", "6,3", "--prune", "tpc,uniform", "-o", str(out_png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.count("kept 3 frames") == 2  # the last stage's


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
