"""``benchmarks/deploy.py``, ``benchmarks/stream.py`` and ``benchmarks/gpu.sh`` run end to end on tiny
models and write tables whose numbers agree with each other."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from checks import onnx_missing  # noqa: E402
from tinypose import write_clips  # noqa: E402


def _rows(text: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first}")]


@onnx_missing
def test_deploy_quick_run_writes_speed_goals_and_accuracy(tmp_path):
    from benchmarks import deploy

    data = write_clips(tmp_path / "clips.npz", lengths=(40, 36, 44, 38, 42, 35))
    out = tmp_path / "deploy.md"
    assert deploy.main(["--quick", "--models", "mixste", "--batches", "1", "--variants", "eager,fp32,int8",
                        "--repeats", "1", "--warmup", "0", "--data", str(data), "--acc-work", str(tmp_path / "acc"),
                        "--work", str(tmp_path / "w"), "--out", str(out), "--json", str(tmp_path / "d.json")]) == 0
    text = out.read_text()
    speed = _rows(text, "mixste")
    assert [r[3] for r in speed] == ["fp32", "fp32", "int8 dynamic, per-tensor (generic)"]
    for r in speed:  # speed-up and ratios follow from the printed latencies (to their rounding)
        o, p = float(r[4]), float(r[5])
        rounding = o / p * (0.05 / o + 0.05 / p) + 0.005  # latencies printed to 0.1 ms, the ratio to 0.01
        assert float(r[6].rstrip("×")) == pytest.approx(o / p, abs=rounding + 1e-9)
    assert float(speed[1][9].rstrip("×")) == 1.0  # the original in onnxruntime fp32 is the unit
    rows = json.loads((tmp_path / "d.json").read_text())["speed"]
    for row, printed in zip(rows, speed):  # each ratio is to the fp32 original timed in the row's own group
        assert row["patched_x"] == pytest.approx(row["base_ms"] / row["patched_ms"])
        assert float(printed[10].rstrip("×")) == pytest.approx(row["patched_x"], abs=0.006)
    assert rows[1]["variant"] == "fp32" and rows[1]["base_ms"] == rows[1]["original_ms"]
    assert "patched + int8 in onnxruntime at batch 1" in text and "FLOPs ratio" in text
    acc = [r for r in _rows(text, "") if len(r) == 7 and r[1] in ("PyTorch eager", "ONNX Runtime")]
    assert len(acc) == 3 * 3  # original, one cut, two stages × three variants
    for r in acc:
        if r[2] == "fp32":  # eager is the reference; the fp32 ONNX file computes the same
            assert abs(float(r[4])) <= 0.01 and abs(float(r[6])) <= 0.01
    assert any(float(r[4]) != 0.0 for r in acc if r[2].startswith("int8"))
    assert json.loads((tmp_path / "d.json").read_text())["speed"][0]["model"] == "mixste"


def test_stream_quick_run_agrees_with_itself(tmp_path):
    from benchmarks import stream

    out = tmp_path / "stream.md"
    assert stream.main(["--quick", "--models", "mhformer,mixste", "--delays", "0,max", "--forwards", "1",
                        "--rounds", "1", "--out", str(out)]) == 0
    text = out.read_text()
    rows = _rows(text, "mixste") + _rows(text, "mhformer")
    assert [(r[0], r[3], r[4]) for r in rows] == [("mixste", "0", "1"), ("mixste", "26", "27"), ("mhformer", "13", "1")]
    for r in rows:
        o, p = float(r[5]), float(r[6])
        assert float(r[7].rstrip("×")) == pytest.approx(p / o, rel=0.015, abs=0.01)
        if min(abs(o - 25), abs(p - 25)) > 0.5:  # the verdict is on the unrounded frames/s
            assert r[10] == " / ".join("yes" if v >= 25 else "no" for v in (o, p))
    assert "smallest delay for 25 fps" in text


def test_gpu_script_dry_run_and_cpu_mode(tmp_path):
    dry = subprocess.run(["bash", str(_ROOT / "benchmarks" / "gpu.sh"), "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "mixste batch 64 cudagraph" in dry.stdout
    out = tmp_path / "gpu.md"
    run = subprocess.run(["bash", str(_ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--quick", "--models",
                          "mixste", "--batches", "1", "--modes", "eager,cudagraph", "--repeats", "1", "--warmup", "0",
                          "--out", str(out), "--work", str(tmp_path / "w")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    row = _rows(text, "mixste")
    assert len(row) == 1 and row[0][2] == "eager"
    assert float(row[0][5].rstrip("×")) == pytest.approx(float(row[0][3]) / float(row[0][4]), abs=0.01)
    assert "cudagraph: not run (CUDA graphs need a CUDA device)" in text
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["mode"] == "eager"


def test_gpu_script_skips_what_the_budget_cannot_hold(tmp_path):
    from benchmarks import gpu

    out = tmp_path / "gpu.md"
    assert gpu.main(["--device", "cpu", "--quick", "--models", "mixste", "--batches", "1", "--modes", "eager",
                     "--budget", "0", "--out", str(out)]) == 0
    text = out.read_text()
    assert _rows(text, "mixste") == [] and re.search(r"mixste batch 1 eager: skipped \(about 0 s needed, 0 s left\)",
                                                       text)
