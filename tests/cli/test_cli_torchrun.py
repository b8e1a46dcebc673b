"""``eval`` and ``lift`` under ``torchrun`` on CPU (gloo): the windows or files split across two
processes, one table and the numbers of one process; torchrun's own options ended by ``--``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hotpatch
from hotpatch.cli import main
from tinypose import write_clips

ROOT = Path(hotpatch.__file__).resolve().parent.parent
DATA = Path(__file__).parent.parent / "data" / "detectors"
TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2", "--random-weights"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hotpatch"]

def torchrun(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "COLUMNS": "60"}
    return subprocess.run([*TORCHRUN, "--", *argv], env=env, capture_output=True, text=True, timeout=300)


def test_eval_under_torchrun_prints_one_table_with_the_numbers_of_one_process(tmp_path, capsys):
    clips = str(write_clips(tmp_path / "clips.npz"))
    args = ["eval", *TINY, "--data", clips, "--n", "1", "--f", "3"]  # --n: an abbreviation of torchrun's own
    done = torchrun(*args, "--json", str(tmp_path / "two.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("zero-retraining accuracy") == 1 and "on 2 processes" in done.stdout
    assert done.stderr.count("patched: cut before") == 1  # only rank 0 logs
    assert main(["--quiet", *args, "--json", str(tmp_path / "one.json")]) == 0
    two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
    for model in ("original", "patched"):
        assert two[model]["frames"] == one[model]["frames"] and two[model]["windows"] == one[model]["windows"]
        for key in ("mpjpe", "p_mpjpe", "mpjve", "mpjpe_selected"):
            if key in one[model]:
                assert two[model][key] == pytest.approx(one[model][key], rel=1e-6), (model, key)


def test_lift_under_torchrun_splits_the_files_and_each_rank_writes_its_own(tmp_path):
    inputs = [str(DATA / "alphapose_halpe26_multi.json"), str(DATA / "openpose_body25b_pose2sim_cam04")]
    done = torchrun("lift", *TINY, "--n", "1", "--f", "3", "--min-score", "0.05", *inputs, "-o", f"{tmp_path}/out/",
                    "--json", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alphapose_halpe26_multi.npz",
                                                                   "openpose_body25b_pose2sim_cam04.npz"]
    assert done.stdout.count("lifted") == 1  # one table, by rank 0, of both files
    files = json.loads((tmp_path / "s.json").read_text())["files"]
    assert sorted(Path(f["keypoints"]).name for f in files) == ["alphapose_halpe26_multi.json",
                                                               "openpose_body25b_pose2sim_cam04"]
    assert np.load(tmp_path / "out" / "openpose_body25b_pose2sim_cam04.npz")["poses_3d"].shape == (9, 17, 3)
