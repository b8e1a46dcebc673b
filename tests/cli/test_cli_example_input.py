"""``--example-input in.pt`` on the commands that build a patch, for models with several inputs
(the denoiser and masked VPTs of tests/models/denoiser_vpts.py), and ``profile --calls``."""

from __future__ import annotations

import json

import pytest
import torch

import hotpatch
from denoiser_vpts import DiffusionDenoiser, denoiser_inputs, masked_inputs
from hotpatch.cli import main

DENOISER = ["denoiser_vpts:DiffusionDenoiser"]
FAST = ["--repeats", "2", "--warmup", "0"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def tuple_file(tmp_path):
    path = tmp_path / "in.pt"
    torch.save(denoiser_inputs(batch=1), path)
    return path


def test_patch_with_an_example_input_file_saves_a_loadable_patch(tmp_path, capsys, tuple_file):
    out_path = tmp_path / "hot.pt"
    rc, out, _ = run(capsys, "patch", *DENOISER, "--example-input", str(tuple_file), "--n", "1", "--f", "9",
                     "--recover", "linear", "-o", str(out_path))
    assert rc == 0 and "wrote" in out
    loaded = hotpatch.load(out_path)
    x, y, t = denoiser_inputs()
    torch.manual_seed(0)
    direct = hotpatch.apply(DiffusionDenoiser().eval(), n=1, f=9, recover="linear", example_input=(x[:1], y[:1], t[:1]))
    direct.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(x, y, t), direct(x, y, t))
    assert [i["name"] for i in loaded.hotpatch_config["inputs"]] == ["x_2d", "y_noisy", "t"]


def test_profile_states_per_call_numbers_and_per_clip_totals(tmp_path, capsys, tuple_file):
    report = tmp_path / "r.json"
    rc, out, _ = run(capsys, "profile", *DENOISER, "--example-input", str(tuple_file), "--n", "1", "--f", "9",
                     "--counters", "paper", *FAST, "--calls", "50", "--json", str(report))
    assert rc == 0
    data = json.loads(report.read_text())
    assert data["inputs"] == ["x_2d", "y_noisy", "t"] and data["input_shape"] == [1, 27, 17, 2]
    before, after = data["before"]["flops"]["paper"]["value"], data["after"]["flops"]["paper"]["value"]
    assert 0 < after < before
    assert data["per_clip"]["calls"] == 50
    assert data["per_clip"]["before"]["flops"]["paper"] == 50 * before
    assert data["per_clip"]["after"]["flops"]["paper"] == 50 * after
    assert "per clip of 50 calls (every number above is per call)" in out
    assert "inputs x_2d, y_noisy, t" in out


def test_profile_says_numbers_are_per_call(capsys, tuple_file):
    rc, out, _ = run(capsys, "profile", *DENOISER, "--example-input", str(tuple_file), "--counters", "paper", "--no-fps")
    assert rc == 0 and "Numbers are per call (one forward of the batch)" in out and "--calls N adds per-clip" in out


def test_a_saved_patch_with_several_inputs_profiles_and_exports_without_the_file(tmp_path, capsys, tuple_file):
    out_path = tmp_path / "hot.pt"
    assert run(capsys, "patch", *DENOISER, "--example-input", str(tuple_file), "--n", "1", "--f", "9",
               "-o", str(out_path))[0] == 0
    rc, out, _ = run(capsys, "profile", str(out_path), "--counters", "paper", "--no-fps")
    assert rc == 0 and "inputs x_2d, y_noisy, t" in out
    rc, out, _ = run(capsys, "export", str(out_path), "--torch-export", str(tmp_path / "hot.pt2"), "--batch", "2")
    assert rc == 0 and "input (2, 27, 17, 2)" in out
    program = torch.export.load(str(tmp_path / "hot.pt2")).module()
    x, y, t = denoiser_inputs()
    with torch.no_grad():
        assert torch.allclose(program(x, y, t), hotpatch.load(out_path)(x, y, t), atol=1e-5)


def test_a_dict_file_gives_keyword_inputs(tmp_path, capsys):
    path = tmp_path / "in.pt"
    torch.save({k: v[:1] for k, v in masked_inputs().items()}, path)
    rc, out, _ = run(capsys, "profile", "denoiser_vpts:MaskedSeqVPT", "--example-input", str(path), "--n", "1",
                     "--f", "9", "--counters", "paper", "--no-fps")
    assert rc == 0 and "inputs x, mask" in out


@pytest.mark.parametrize("content, message", [
    ((torch.zeros(1, 27, 17, 2), 3), "holds Tensor, int"),
    ((torch.zeros(1, 27, 17, 2), torch.zeros(2, 27, 17, 3)), "different batch sizes"),
    ((torch.zeros(1, 9),), "has no clip (B, F, J, C)"),
])
def test_bad_example_input_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "in.pt"
    torch.save(content, path)
    rc, _, err = run(capsys, "profile", *DENOISER, "--example-input", str(path), "--no-fps")
    lines = err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and message in lines[0], err


def test_eval_refuses_a_model_with_several_inputs(tmp_path, capsys, tuple_file):
    import numpy as np

    np.savez(tmp_path / "x.npz", unused=np.zeros(1))  # refused before the data is read
    rc, _, err = run(capsys, "eval", *DENOISER, "--example-input", str(tuple_file), "--data", str(tmp_path / "x.npz"),
                     "--n", "1", "--f", "9")
    assert rc != 0 and "takes several inputs" in err
