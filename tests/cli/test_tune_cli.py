"""``hotpatch tune``: the chosen model, JSON / Markdown / PNG outputs, progress lines, refusals."""

from __future__ import annotations

import json

import pytest
import torch

import hotpatch
import tinypose
from hotpatch.cli import main
from hotpatch.evaluate import paper_flops

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


def test_cli_tune_writes_every_output_and_the_model_reloads(capsys, tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="the plot needs the plot extra")
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    out = {name: tmp_path / name for name in ("tuned.pt", "tune.json", "tune.md", "pareto.png")}
    torch.set_num_threads(2)  # --threads 1 holds for the search only
    rc = main(["tune", *TINY, "--data", str(data), "--cameras", "1", "--budget", "0.7", "--threads", "1",
               "-o", str(out["tuned.pt"]), "--json", str(out["tune.json"]), "--markdown", str(out["tune.md"]),
               "--plot", str(out["pareto.png"])])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert threads == 2
    report = json.loads(out["tune.json"].read_text())
    chosen, setting = report["chosen"], report["setting"]
    assert report["budget"] == 0.7 and report["rounds"][0]["candidates"] == len(report["candidates"])
    assert [c["label"] for c in report["candidates"] if c["dropped"] is None] == [chosen["label"]]
    assert all(c["flops"] <= 0.7 * report["original"]["flops"] for c in report["candidates"])
    model = hotpatch.load(out["tuned.pt"])
    cfg = model.hotpatch_config
    assert {k: cfg[k] for k in ("n", "f", "prune", "recover", "pipeline")} == setting
    assert paper_flops(model, 9) == chosen["flops"]
    md = out["tune.md"].read_text()
    assert md.startswith(f"# hotpatch tune: {chosen['label']}") and "| round | windows |" in md
    assert md.count("| n=") == len(report["candidates"]) and "| original |" in md
    with Image.open(out["pareto.png"]) as im:
        assert im.format == "PNG" and im.size == (1200, 600)
    assert "chosen for a budget 0.7 of" in stdout and chosen["label"] in stdout
    assert all(f"wrote {p}" in stdout for p in out.values())
    lines = [line for line in stderr.splitlines() if line.startswith("hotpatch tune: ")]
    assert any("round 0 (" in line for line in lines) and any(line.startswith("hotpatch tune: costs") for line in lines)


def test_cli_tune_refuses_to_overwrite_its_input(capsys, tmp_path):
    data = tinypose.write_clips(tmp_path / "clips.npz")
    before = data.read_bytes()
    rc = main(["--quiet", "tune", *TINY, "--data", str(data), "--budget", "0.5", "-o", str(data)])
    err = capsys.readouterr().err
    assert rc == 2 and "would overwrite its own input" in err and len(err.strip().splitlines()) == 1
    assert data.read_bytes() == before


def test_cli_tune_checks_outputs_before_the_search(capsys, tmp_path):
    data = tinypose.write_clips(tmp_path / "clips.npz")
    rc = main(["--quiet", "tune", *TINY, "--data", str(data), "--budget", "0.5", "-o", str(tmp_path / "t.pt"),
               "--markdown", str(tmp_path / "missing" / "t.md")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and not (tmp_path / "t.pt").exists()
    rc = main(["--quiet", "tune", *TINY, "--data", str(data), "--budget", "0.5", "-o", str(tmp_path / "t.pt"),
               "--plot", str(tmp_path / "p.jpg")])
    assert rc == 2 and "ending in .png" in capsys.readouterr().err


@pytest.mark.parametrize("limits, message", [
    (["--budget", "0.5", "--latency-ms", "3"], "not allowed with argument"),
    ([], "one of the arguments --budget --latency-ms is required"),
    (["--budget", "1.5"], "0 < budget < 1"),
    (["--latency-ms", "-2"], "greater than 0"),
])
def test_cli_tune_limit_errors_are_one_line(capsys, tmp_path, limits, message):
    with pytest.raises(SystemExit) as exc:
        main(["tune", *TINY, "--data", "x.npz", "-o", str(tmp_path / "t.pt"), *limits])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_cli_tune_refuses_to_overwrite_its_target_file(capsys, tmp_path):
    data = tinypose.write_clips(tmp_path / "clips.npz")
    model_file = tmp_path / "base.pt"
    torch.save(tinypose.mixste(frames=9, depth=3), model_file)
    before = model_file.read_bytes()
    rc = main(["--quiet", "tune", str(model_file), "--trust", "--data", str(data), "--budget", "0.5",
               "-o", str(model_file)])
    err = capsys.readouterr().err
    assert rc == 2 and "-o" in err and "is also TARGET" in err and "would overwrite its own input" in err
    assert model_file.read_bytes() == before


def test_cli_tune_check_grid_reports_the_rank_in_the_full_grid(capsys, tmp_path):
    data = tinypose.write_clips(tmp_path / "clips.npz")
    rc = main(["tune", *TINY, "--data", str(data), "--cameras", "1", "--budget", "0.7", "--single",
               "--prune", "uniform,tpc", "--recover", "linear", "--check-grid", "-o", str(tmp_path / "t.pt"),
               "--json", str(tmp_path / "t.json")])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    report = json.loads((tmp_path / "t.json").read_text())
    grid = report["grid"]
    assert set(grid["errors"]) == {c["label"] for c in report["candidates"]}
    assert grid["best"] == min(grid["errors"], key=grid["errors"].get)
    assert grid["rank"] == 1 + sum(e < grid["errors"][report["chosen"]["label"]] for e in grid["errors"].values())
    assert "grid check: " in stdout and report["chosen"]["label"] in stdout.split("grid check: ")[1]
