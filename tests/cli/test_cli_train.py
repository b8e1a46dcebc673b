"""``hotpatch train``: the unpatched model trained and saved as a TARGET file, resumable."""

from __future__ import annotations

import json

import pytest
import torch

import hotpatch
from hotpatch.cli import main
from hotpatch.saving import MODEL_FORMAT, save_model
from tinypose import write_clips

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
TRAIN = ["--cameras", "1", "--batch", "4", "--steps-per-epoch", "3", "--val-clips", "1", "--no-flip"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def clips(tmp_path):
    return str(write_clips(tmp_path / "clips.npz"))


def test_train_then_eval_patch_and_finetune_the_file(capsys, clips, tmp_path):
    base = tmp_path / "base.pt"
    rc, out, err = run(capsys, "train", *TINY, "--data", clips, *TRAIN, "--epochs", "2", "-o", str(base),
                       "--json", str(tmp_path / "h.json"))
    assert rc == 0, err
    history = json.loads((tmp_path / "h.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["val_mpjpe"] > 0
    payload = torch.load(base, weights_only=True)
    assert payload["format"] == MODEL_FORMAT and payload["source"]["recipe"] == "mixste"
    model = hotpatch.load(base)
    assert not hasattr(model, "hotpatch_config")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in payload["state_dict"].items())
    # trained: the weights moved away from a fresh build with the same seed
    torch.manual_seed(0)
    fresh = hotpatch.models.get("mixste").build(9, dim=16, depth=2, num_heads=2)
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in payload["state_dict"].items())

    rc, out, err = run(capsys, "eval", str(base), "--data", clips, "--n", "1", "--f", "3", "--recover", "linear",
                       "--cameras", "1", "--json", "-")
    assert rc == 0, err
    result = json.loads(out)
    assert result["patched"]["flops"] < result["original"]["flops"] and result["original"]["mpjpe"] > 0
    rc, out, err = run(capsys, "patch", str(base), "--n", "1", "--f", "3", "-o", str(tmp_path / "hot.pt"))
    assert rc == 0, err
    rc, _, err = run(capsys, "finetune", str(base), "--data", clips, *TRAIN, "--n", "1", "--f", "3",
                     "--epochs", "1", "-o", str(tmp_path / "ft.pt"))
    assert rc == 0 and "random" not in err  # trained weights: no warning


def test_resumed_training_continues_where_it_stopped(capsys, clips, tmp_path):
    args = ["train", *TINY, "--data", clips, *TRAIN, "--seed", "3", "--schedule", "constant"]  # LR independent of --epochs
    assert run(capsys, *args, "--epochs", "2", "-o", str(tmp_path / "full.pt"))[0] == 0
    assert run(capsys, *args, "--epochs", "1", "-o", str(tmp_path / "part.pt"))[0] == 0
    rc, _, err = run(capsys, *args, "--epochs", "2", "-o", str(tmp_path / "part.pt"), "--resume",
                     "--json", str(tmp_path / "r.json"))
    assert rc == 0, err
    assert [h["epoch"] for h in json.loads((tmp_path / "r.json").read_text())["history"]] == [1, 2]
    full, part = torch.load(tmp_path / "full.pt", weights_only=True), torch.load(tmp_path / "part.pt", weights_only=True)
    for k, v in full["state_dict"].items():
        assert torch.equal(part["state_dict"][k], v), k


def test_train_refuses_a_patched_target_and_finetune_warns_on_random_weights(capsys, clips, tmp_path, caplog):
    hot = tmp_path / "hot.pt"
    assert run(capsys, "patch", *TINY, "--n", "1", "--f", "3", "-o", str(hot))[0] == 0
    rc, out, err = run(capsys, "train", str(hot), "--data", clips, *TRAIN, "--epochs", "1", "-o", str(tmp_path / "x.pt"))
    assert rc == 2 and "hotpatch finetune" in err and len(err.strip().splitlines()) == 1
    with caplog.at_level("WARNING"):
        rc, _, _ = run(capsys, "finetune", *TINY, "--data", clips, *TRAIN, "--n", "1", "--f", "3", "--epochs", "1",
                       "-o", str(tmp_path / "ft.pt"))
    assert rc == 0 and "random" in caplog.text and "hotpatch train" in caplog.text


def test_save_model_needs_a_source_and_an_unpatched_model(tmp_path):
    from hotpatch.errors import ConfigError

    with pytest.raises(ConfigError, match="source="):
        save_model(torch.nn.Linear(2, 3), tmp_path / "m.pt")
    model = hotpatch.models.get("mixste").build(9, dim=16, depth=2, num_heads=2)
    with pytest.raises(ConfigError, match="hotpatch.save"):
        save_model(hotpatch.apply(model, n=1, f=3, example_input=torch.zeros(1, 9, 17, 2)), tmp_path / "p.pt")
