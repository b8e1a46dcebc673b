"""``benchmarks/accuracy.py --quick`` runs end to end on a tiny clips file and writes its table."""

import json
import sys
from pathlib import Path

import torch

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import accuracy  # noqa: E402
from tinypose import write_clips  # noqa: E402


def test_quick_run_writes_every_row(tmp_path):
    data = write_clips(tmp_path / "clips.npz", lengths=(40, 36, 44, 38, 42, 35))
    out = tmp_path / "acc.md"
    threads = torch.get_num_threads()
    assert accuracy.main(["--quick", "--data", str(data), "--out", str(out), "--work", str(tmp_path / "w"),
                          "--test-clips", "2"]) == 0
    assert torch.get_num_threads() == threads  # restored
    text = out.read_text()
    for name in ("TPC (n=2, f=9)", "TPC + nearest", "uniform sampling + linear", "HoT (TPC + TRA)", "TPC + linear-TRA",
                 "fine-tuned +5 steps", "Table 2", "Table 4", "Table 5", "Fair control", "starts as interpolation",
                 "Command", "TPC, two stages (n=1,3, f=18,9)", "TPC + linear, two stages", "Two pruning stages vs one cut"):
        assert name in text, name
    main, merging = text.split("## Token merging")
    rows = [line for line in main.splitlines() if line.startswith("| ") and line[2].isdigit()
            and line.count("|") == 12]  # the results table's rows (not the learning curve's)
    assert len(rows) == 15
    merge_rows = [line.split(" | ")[1] for line in merging.split("## Setup")[0].splitlines()
                  if line.startswith("| ") and line[2].isdigit()]
    variants = [f"{w} + {r}" for w in ("merge-density", "merge-mean") for r in ("unmerge-pure", "unmerge-linear", "linear")]
    assert variants == merge_rows[5:11]  # every weighting with every recovery at the single cut
    assert sum("(n=1)" in r for r in merge_rows) == 5 and sum("two stages" not in r and "n=1,3" in r for r in merge_rows) == 4
    assert [merge_rows[i] for i in (-5, -2, -1)] == ["TPC + linear", "uniform sampling + linear", "MixSTE (original)"]
    for claim in ("Variants (single cut)", "single cut (n=2, f=9)", "cut at n=1", "two stages (n=1,3, f=18,9)",
                  "after the same fine-tune"):
        assert claim in merging, claim


def test_test_data_scores_another_file(tmp_path):
    data = write_clips(tmp_path / "clips.npz", lengths=(40, 36, 44, 38, 42, 35))
    other = write_clips(tmp_path / "other.npz", lengths=(50, 31, 33, 45), seed=7)  # clips 0 and 3 are 'normal'
    out = tmp_path / "acc.md"
    assert accuracy.main(["--quick", "--data", str(data), "--test-data", str(other), "--out", str(out),
                          "--work", str(tmp_path / "w"), "--test-clips", "2", "--json", str(tmp_path / "a.json")]) == 0
    text = out.read_text()
    assert f"every row also scored on the test clips of `{other}`" in text
    assert f"## The same rows on `--test-data` (`{other}`)" in text
    result = json.loads((tmp_path / "a.json").read_text())
    rows, others = result["rows"], result["test_data_rows"]
    assert others[0]["frames"] == 50 + 45  # the other file's two test clips, every frame scored once
    assert rows[0]["frames"] == 40 + 38  # the training file's test clips (0 and 3) as without --test-data
    assert [r["row"] for r in rows] == [r["row"] for r in others]
    for r in rows:
        assert {"row", "pipeline", "prune", "recover", "training", "mpjpe", "p_mpjpe", "flops"} <= set(r)
    curve = result["learning_curve"]  # 8 evenly spaced points, the last one after the last step
    steps = result["pretrain"][0]["steps"]  # fewer than --quick's 20 on this tiny file
    assert [c["step"] for c in curve][-1] == steps and len(curve) == min(8, steps)
    assert all(c["mpjpe"] > 0 and c["train_loss"] > 0 for c in curve)
    assert "| step | train loss | test MPJPE (subset) |" in text
