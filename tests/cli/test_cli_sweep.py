"""``hotpatch sweep``: JSON, CSV and plot outputs, stage lists, and one-line argument errors."""

from __future__ import annotations

import csv
import json

import pytest

import tinypose
from hotpatch.cli import main

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


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
    for cells in rows:  # the printed speed-up matches the printed latency columns, to their rounding
        after, before = float(cells[3]), float(cells[4])
        ratio = before / after
        rounding = 0.005 + ratio * 0.005 * (1 / before + 1 / after)  # ±0.005 on each printed value
        assert float(cells[5][:-1]) == pytest.approx(ratio, abs=rounding + 1e-9), cells


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


def test_cli_sweep_without_latency_has_no_latency_columns_or_front(capsys):
    rc = main(["--quiet", "sweep", *TINY, "--n", "1", "--f", "3", "--no-latency"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "latency ms" not in out and "original ms" not in out and "speed-up" not in out
    assert "no Pareto front: neither latency (--no-latency) nor accuracy (--data) was measured" in out
