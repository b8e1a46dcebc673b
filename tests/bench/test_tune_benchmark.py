"""``benchmarks/tune.py --quick`` runs end to end on a tiny clips file and writes its table."""

import json
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import tune as bench  # noqa: E402
from tinypose import write_clips  # noqa: E402


def test_quick_run_compares_grid_and_tune(tmp_path):
    data = write_clips(tmp_path / "clips.npz", lengths=(80, 76, 94, 88, 92, 75, 83, 99, 70))
    out, js = tmp_path / "tune.md", tmp_path / "tune.json"
    assert bench.main(["--quick", "--data", str(data), "--out", str(out), "--json", str(js), "--work",
                       str(tmp_path / "w"), "--test-clips", "2", "--budgets", "0.6", "--prune", "uniform"]) == 0
    row = json.loads(js.read_text())["rows"][0]
    grid = {c["label"]: c["errors"] for c in row["grid"]["candidates"]}
    assert all(len(e) == 1 for e in grid.values()) and len(row["grid"]["rounds"]) == 1  # the grid: one round
    assert row["gap_mm"] == grid[row["tune_pick"]][0] - min(e[0] for e in grid.values())
    assert row["rounds"][0][1] == row["candidates"] == len(grid)
    lines = [line for line in out.read_text().splitlines() if line.startswith("| 0.6 |")]
    assert len(lines) == 2 and row["tune_pick"] in lines[0] and row["longer_pick"] in lines[1]  # both tables
    assert row["longer_gap_mm"] == grid[row["longer_pick"]][0] - min(e[0] for e in grid.values())
    assert "- Budget 0.6: tune's pick is" in out.read_text()
