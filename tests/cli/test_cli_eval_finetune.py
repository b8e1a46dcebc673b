"""``hotpatch eval`` and ``hotpatch finetune`` end to end on a tiny model and tiny data files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import hotpatch
from hotpatch.cli import main
from hotpatch.models import get as get_recipe
from tinypose import write_clips

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]


@pytest.fixture()
def clips(tmp_path):
    return str(write_clips(tmp_path / "clips.npz"))


@pytest.fixture()
def checkpoint(tmp_path):
    """Weights of the tiny MixSTE in the official layout ({'model_pos': ..., 'module.' prefix})."""
    torch.manual_seed(1)
    model = get_recipe("mixste").build(9, dim=16, depth=2, num_heads=2)
    path = tmp_path / "ck.bin"
    torch.save({"model_pos": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return str(path), model


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_eval_prints_original_and_patched_side_by_side(capsys, clips, checkpoint, tmp_path):
    path, model = checkpoint
    rc, out, _ = run(capsys, "eval", *TINY, "--checkpoint", path, "--data", clips, "--n", "1", "--f", "3",
                     "--recover", "linear", "--cameras", "2", "--json", str(tmp_path / "e.json"))
    assert rc == 0
    assert "MPJPE (mm)" in out and "P-MPJPE (mm)" in out and "MPJVE (mm)" in out and "paper FLOPs" in out
    assert "selected / pruned" in out
    data = json.loads((tmp_path / "e.json").read_text())
    a, b = data["original"], data["patched"]
    assert a["frames"] == b["frames"] == 2 * (30 + 25)  # the two 'normal' clips, two cameras each
    assert b["flops"] < a["flops"] and data["delta"]["flops_pct"] < 0
    assert b["frames_selected"] + b["frames_pruned"] == b["frames"]
    assert data["config"]["recover"] == "linear" and data["config"]["pipeline"] == "seq2seq"
    # the checkpoint's weights were used: the original's error is that of the saved model
    from hotpatch.data import WindowDataset, load_clips
    from hotpatch.evaluate import evaluate_model

    test = load_clips(clips, cameras_per_clip=2)["test"]
    direct = evaluate_model(model, WindowDataset(test, 9), flops=False)
    assert a["mpjpe"] == pytest.approx(direct["mpjpe"], rel=1e-6)


def test_eval_seq2frame_json_to_stdout(capsys, clips):
    rc, out, _ = run(capsys, "eval", *TINY, "--random-weights", "--data", clips, "--n", "1", "--f", "3",
                     "--pipeline", "seq2frame",
                     "--max-clips", "1", "--cameras", "1", "--json", "-")
    assert rc == 0
    data = json.loads(out)  # only JSON on stdout, and strict JSON (no NaN)
    assert data["config"]["pipeline"] == "seq2frame"
    assert data["original"]["frames"] == data["patched"]["frames"] == 30 == data["config"]["windows"]


def test_eval_refuses_random_weights_and_recovers_an_untrained_tra_linearly(capsys, clips, caplog):
    rc, _, err = run(capsys, "eval", *TINY, "--data", clips, "--n", "1", "--f", "3", "--max-clips", "1")
    assert rc == 2 and "no trained weights (no --checkpoint)" in err and "--random-weights" in err
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        rc, out, _ = run(capsys, "eval", *TINY, "--random-weights", "--data", clips, "--n", "1", "--f", "3",
                         "--max-clips", "1", "--cameras", "1", "--json", "-")
    assert rc == 0
    data = json.loads(out)
    assert data["config"]["recover"] == "linear" and "linear interpolation instead" in data["config"]["recovery_note"]
    assert "on random weights (--random-weights)" in caplog.text
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        rc, out, _ = run(capsys, "eval", *TINY, "--random-weights", "--data", clips, "--n", "1", "--f", "3",
                         "--recover", "tra", "--max-clips", "1", "--cameras", "1", "--json", "-")
    assert rc == 0 and json.loads(out)["config"]["recover"] == "tra"
    assert "kept as asked" in caplog.text and "fine-tuned (hotpatch finetune)" in caplog.text


def test_eval_reads_human36m_files(capsys, tmp_path):
    rng = np.random.default_rng(0)
    poses = {s: {"Walk": (np.array([0.2, -0.1, 0.9]) + 0.3 * rng.normal(size=(14, 32, 3))).astype(np.float32)}
             for s in ("S1", "S5", "S6", "S7", "S8", "S9", "S11")}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=poses)
    rc, out, _ = run(capsys, "eval", *TINY, "--random-weights", "--data", str(tmp_path / "data_3d_h36m.npz"),
                     "--n", "1", "--f", "3",
                     "--recover", "nearest", "--max-clips", "3", "--json", "-")
    assert rc == 0
    data = json.loads(out)
    assert data["data"]["sequences"] == 3 and data["original"]["frames"] == 3 * 14


def test_eval_bad_data_is_one_line_error(capsys, tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    rc, _, err = run(capsys, "eval", *TINY, "--data", str(tmp_path / "other.npz"), "--n", "1", "--f", "3")
    assert rc == 2 and "expected a clips file" in err


def test_finetune_trains_saves_and_resumes(capsys, clips, checkpoint, tmp_path):
    path, _ = checkpoint
    out_pt = tmp_path / "hot.pt"
    args = ["finetune", *TINY, "--checkpoint", path, "--data", clips, "--n", "1", "--f", "3",
            "-o", str(out_pt), "--lr", "1e-3", "--batch", "8", "--cameras", "1", "--val-clips", "1",
            "--schedule", "step"]  # a step schedule does not depend on the epoch count: the run can be extended
    rc, out, _ = run(capsys, *args, "--epochs", "2", "--json", str(tmp_path / "h.json"))
    assert rc == 0 and out_pt.is_file() and (tmp_path / "hot.state.pt").is_file()
    history = json.loads((tmp_path / "h.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and "val_mpjpe" in history[-1]
    assert history[1]["loss"] < history[0]["loss"]
    trained = hotpatch.load(out_pt)
    # finetune's default recovery: linear-tra, its zero-initialised correction trained
    assert trained.hotpatch_config["recover"] == "linear-tra" and trained.hotpatch_config["f"] == 3
    assert trained.hotpatch_recover.recoverer.proj.weight.abs().sum() > 0
    # resume with more epochs: continues after epoch 2 instead of starting over
    rc, _, _ = run(capsys, *args, "--epochs", "3", "--resume", "--json", str(tmp_path / "r.json"))
    assert rc == 0
    resumed = json.loads((tmp_path / "r.json").read_text())["history"]
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[0]["loss"] == history[0]["loss"]
    # the saved model evaluates without the untrained-TRA warning path breaking anything
    rc, out, _ = run(capsys, "eval", str(out_pt), "--data", clips, "--cameras", "1", "--json", "-")
    assert rc == 0 and json.loads(out)["config"]["recover"] == "linear-tra"
