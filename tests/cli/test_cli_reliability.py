"""CLI reliability: clean errors where user input does not fit (resume state, data, checkpoints),
every command registered, and the options no other test exercises."""

from __future__ import annotations

import json
import pkgutil

import numpy as np
import pytest
import torch

import hotpatch.cli
import author_vpts
from hotpatch import cli
from hotpatch.cli import main
from hotpatch.data import H36M_LEFT, H36M_RIGHT, H36M_TEST_SUBJECTS, H36M_TRAIN_SUBJECTS, WindowDataset, load_clips
from hotpatch.evaluate import evaluate_model
from hotpatch.models import get as get_recipe
from tinypose import write_clips

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
QUICK = ["--epochs", "1", "--batch", "4", "--steps-per-epoch", "1", "--val-clips", "0"]


@pytest.fixture()
def clips(tmp_path):
    return str(write_clips(tmp_path / "clips.npz"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"hotpatch {command}: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- registry


def test_every_command_module_is_registered_and_the_registry_is_the_truth():
    modules = {m.name for m in pkgutil.iter_modules(hotpatch.cli.__path__) if not m.name.startswith("_")}
    assert set(cli.COMMANDS) == modules
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(cli.COMMANDS)


def test_a_listed_command_that_cannot_be_imported_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "nosuchcommand"))
    with pytest.raises(ImportError, match="'nosuchcommand' is listed"):
        cli.build_parser()


# ----------------------------------------------------------------------------- resume


def test_resume_with_the_state_of_another_patch_names_both_and_the_way_out(capsys, clips, tmp_path):
    out = str(tmp_path / "hot.pt")
    assert run(capsys, "finetune", *TINY, "--data", clips, "--n", "1", "--f", "3", *QUICK, "-o", out)[0] == 0
    rc, _, err = run(capsys, "finetune", *TINY, "--data", clips, "--n", "1", "--f", "5", *QUICK, "-o", out,
                     "--resume")
    line = _one_line_error(err, "finetune")
    assert rc == 2
    assert "another patch" in line and "f=3" in line and "f=5" in line and "--state" in line


def test_resume_with_an_old_state_file_of_another_model_is_a_clean_error(capsys, clips, tmp_path):
    """State files written before the patch config was recorded: the weights' shapes tell."""
    out, state = str(tmp_path / "hot.pt"), tmp_path / "hot.state.pt"
    assert run(capsys, "finetune", *TINY, "--data", clips, "--n", "1", "--f", "3", *QUICK, "-o", out)[0] == 0
    saved = torch.load(state, weights_only=False)
    del saved["patch"]
    torch.save(saved, state)
    rc, _, err = run(capsys, "finetune", *TINY, "--data", clips, "--n", "1", "--f", "5", *QUICK, "-o", out,
                     "--resume")
    line = _one_line_error(err, "finetune")
    assert rc == 2 and "another model" in line and "size mismatch" in line and "--state" in line


# ----------------------------------------------------------------------------- user input that does not fit


def test_data_with_the_wrong_joint_count_is_a_clean_error(capsys, clips, tmp_path):
    z = dict(np.load(clips))
    z["positions"] = z["positions"][:, :16]
    np.savez(tmp_path / "j16.npz", **z)
    for command, extra in (("eval", ["--random-weights"]), ("finetune", [*QUICK, "-o", str(tmp_path / "h.pt")])):
        rc, _, err = run(capsys, command, *TINY, "--data", str(tmp_path / "j16.npz"), "--n", "1", "--f", "3", *extra)
        line = _one_line_error(err, command)
        assert rc == 2 and "(181, 16, 3)" in line and "(N, 17, 3)" in line


def test_a_checkpoint_of_another_model_is_a_clean_error(capsys, clips, tmp_path):
    other = get_recipe("mixste").build(9, dim=32, depth=2, num_heads=2)
    torch.save(other.state_dict(), tmp_path / "other.bin")
    for command, extra in (("eval", []), ("finetune", [*QUICK, "-o", str(tmp_path / "h.pt")])):
        rc, _, err = run(capsys, command, *TINY, "--checkpoint", str(tmp_path / "other.bin"), "--data", clips,
                         "--n", "1", "--f", "3", *extra)
        line = _one_line_error(err, command)
        assert rc == 2 and "another size" in line and "(1, 17, 32) in the checkpoint, (1, 17, 16) in the model" in line


def test_data_2d_with_a_clips_file_is_a_clean_error(capsys, clips, tmp_path):
    rc, _, err = run(capsys, "eval", *TINY, "--data", clips, "--data-2d", clips, "--n", "1", "--f", "3")
    assert rc == 2 and "Drop --data-2d" in _one_line_error(err, "eval")


# ----------------------------------------------------------------------------- options exercised once


def test_profile_by_block_and_train(capsys):
    rc, out, _ = run(capsys, "profile", *TINY, "--no-fps", "--counters", "paper", "--by-block", "--train",
                     "--json", "-")
    data = json.loads(out)
    assert rc == 0
    blocks = {b["name"]: b for b in data["blocks"]}
    for name in ("STEblocks.0", "STEblocks.1", "TTEblocks.0", "TTEblocks.1"):
        assert blocks[name]["is_block"] and blocks[name]["flops"] > 0
    assert sum(b["flops"] for b in data["blocks"]) == data["flops"]["paper"]["value"]
    assert data["memory"]["train_peak_bytes"] > data["memory"]["forward_peak_bytes"] > 0
    rc, out, _ = run(capsys, "profile", *TINY, "--no-fps", "--counters", "paper", "--json", "-")
    plain = json.loads(out)
    assert plain["memory"]["train_peak_bytes"] is None and not plain.get("blocks")


def test_kwargs_build_a_class_target(capsys):
    rc, out, _ = run(capsys, "profile", "author_vpts:MixSTELike", "--kwargs", '{"depth": 2, "dim": 16}', "--frames", "27",
                     "--no-fps", "--counters", "paper", "--json", "-")
    expected = sum(p.numel() for p in author_vpts.MixSTELike(depth=2, dim=16).parameters())
    assert rc == 0 and json.loads(out)["params"] == expected


@pytest.mark.parametrize("variant", ["lite", "full"])
def test_variant_picks_the_recipe_configuration(capsys, variant):
    small = ["--frames", "9", "--set", "dim_feat=16", "--set", "depth=1", "--set", "num_heads=2"]
    rc, out, _ = run(capsys, "profile", "motionbert", "--variant", variant, *small, "--no-fps", "--counters",
                     "paper", "--json", "-")
    model = get_recipe("motionbert").build(9, variant=variant, dim_feat=16, depth=1, num_heads=2)
    data = json.loads(out)
    assert rc == 0 and data["source"]["overrides"]["variant"] == variant
    assert data["params"] == sum(p.numel() for p in model.parameters())


def test_eval_flip_is_the_flip_averaged_error(capsys, clips, tmp_path):
    torch.manual_seed(1)
    model = get_recipe("mixste").build(9, dim=16, depth=2, num_heads=2)
    torch.save(model.state_dict(), tmp_path / "ck.bin")
    results = {}
    for flip in (False, True):
        rc, out, _ = run(capsys, "eval", *TINY, "--checkpoint", str(tmp_path / "ck.bin"), "--data", clips,
                         "--n", "1", "--f", "3", "--recover", "linear", "--cameras", "1", "--json", "-",
                         *(["--flip"] if flip else []))
        assert rc == 0
        results[flip] = json.loads(out)["original"]["mpjpe"]
    test = load_clips(clips, cameras_per_clip=1)["test"]
    direct = evaluate_model(model, WindowDataset(test, 9), flip=True, flops=False)["mpjpe"]
    assert results[True] == pytest.approx(direct, rel=1e-6) and results[True] != results[False]


def _write_h36m(tmp_path, frames=12):
    rng = np.random.default_rng(0)
    subjects = (*H36M_TRAIN_SUBJECTS, *H36M_TEST_SUBJECTS)
    poses_3d = {s: {"Walking": (rng.normal(size=(frames, 17, 3)) * 0.2 + [0, 0, 1]).astype(np.float32)}
                for s in subjects}
    poses_2d = {s: {"Walking": [rng.uniform(0, 1000, (frames, 17, 2)).astype(np.float32) for _ in range(4)]}
                for s in subjects}
    meta = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [list(H36M_LEFT), list(H36M_RIGHT)]}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=poses_3d)
    np.savez(tmp_path / "data_2d_h36m_det.npz", positions_2d=poses_2d, metadata=meta)
    return str(tmp_path / "data_3d_h36m.npz"), str(tmp_path / "data_2d_h36m_det.npz")


def test_data_2d_replaces_the_projected_inputs(capsys, tmp_path):
    path_3d, path_2d = _write_h36m(tmp_path)
    results = {}
    for extra in ([], ["--data-2d", path_2d]):
        rc, out, _ = run(capsys, "eval", *TINY, "--random-weights", "--data", path_3d, *extra, "--n", "1", "--f", "3",
                         "--recover", "linear", "--json", "-")
        assert rc == 0
        results[bool(extra)] = json.loads(out)["original"]
    assert results[True]["frames"] == results[False]["frames"] == len(H36M_TEST_SUBJECTS) * 4 * 12
    assert results[True]["mpjpe"] != results[False]["mpjpe"]  # other 2D inputs, other predictions
