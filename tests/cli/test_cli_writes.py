"""Issue 20's table, one test per row: what each command writes when something goes wrong
(nothing unchecked or partial at the target, inputs never overwritten), one-line argument
errors, and messages that say what was found and what to do on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hotpatch.atomic
import hotpatch.cli.eval
import hotpatch.cli.finetune
from hotpatch.atomic import atomic_write, failed_copy_path, write_text
from hotpatch.cli import main
from hotpatch.errors import ExportError, OutputError
from hotpatch.saving import save_model
from tinypose import write_clips

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
QUICK = ["--batch", "4", "--steps-per-epoch", "1", "--val-clips", "0", "--cameras", "1"]
NOISY = ["noisy_lifter:NoisyLifter", "--frames", "9", "--joints", "17", "--channels", "2"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"hotpatch {command}: error: "), err
    return lines[0]


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a command gets as far as building its model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the arguments were checked")
    for module in (hotpatch.cli.eval, hotpatch.cli.finetune):
        monkeypatch.setattr(module, "load_target", refuse)


# ------------------------------------------------------------------ export: a failed check


def test_export_whose_check_fails_leaves_nothing_at_the_path(capsys, tmp_path):
    target = tmp_path / "noisy.onnx"
    rc, _, err = run(capsys, "export", *NOISY, "--onnx", str(target))
    line = one_line(err, "export")
    assert rc == 2 and "differs from the eager model" in line and "do not deploy it" in line
    assert f"nothing was written to '{target}'" in line
    assert files(tmp_path) == []  # neither the file nor its temp copy


def test_export_keep_failed_keeps_the_file_elsewhere_and_says_where(capsys, tmp_path):
    target = tmp_path / "noisy.pt2"
    rc, _, err = run(capsys, "export", *NOISY, "--torch-export", str(target), "--keep-failed")
    line = one_line(err, "export")
    kept = failed_copy_path(target)
    assert rc == 2 and f"the file that failed is kept at '{kept}'" in line
    assert files(tmp_path) == ["noisy.failed.pt2"] and kept.stat().st_size > 0
    assert torch.export.load(str(kept)) is not None  # the kept file is the (unchecked) program itself


def test_export_that_fails_its_check_leaves_an_older_file_as_it_was(capsys, tmp_path):
    target = tmp_path / "noisy.pt2"
    target.write_bytes(b"older export")
    rc, _, err = run(capsys, "export", *NOISY, "--torch-export", str(target))
    assert rc == 2 and "is an older one, left unchanged" in one_line(err, "export")
    assert target.read_bytes() == b"older export" and files(tmp_path) == ["noisy.pt2"]


# ------------------------------------------------------------------ export: write failures


def test_export_to_an_unwritable_path_fails_before_the_conversion(capsys, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: pytest.fail("converted before checking the path"))
    rc, _, err = run(capsys, "export", *NOISY, "--torch-export", str(tmp_path / "afile" / "m.pt2"))
    line = one_line(err, "export")
    assert rc == 2 and f"'{tmp_path / 'afile'}' is a file, not a directory" in line
    assert "patch with other settings" not in line.lower()


def test_export_write_failure_is_reported_as_a_write_failure(capsys, tmp_path, monkeypatch):
    def full_disk(program, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", full_disk)
    target = tmp_path / "m.pt2"
    rc, _, err = run(capsys, "export", *NOISY, "--torch-export", str(target))
    line = one_line(err, "export")
    assert rc == 2 and f"cannot write '{target}': No space left on device" in line
    assert "export failed" not in line and "other settings" not in line
    assert files(tmp_path) == []


# ------------------------------------------------------------------ patch: never its own input


def test_patch_refuses_to_overwrite_its_own_input(capsys, tmp_path):
    model = tmp_path / "model.pt"
    assert run(capsys, "patch", *TINY, "--n", "1", "--f", "3", "-o", str(model))[0] == 0
    before = model.read_bytes()
    rc, _, err = run(capsys, "patch", str(model), "-o", str(model))
    line = one_line(err, "patch")
    assert rc == 2 and f"-o {model} is also TARGET" in line and "overwrite its own input" in line
    assert model.read_bytes() == before


def test_other_commands_never_write_over_an_input_or_twice_to_one_file(capsys, tmp_path):
    clips = write_clips(tmp_path / "clips.npz")
    before = clips.read_bytes()
    rc, _, err = run(capsys, "eval", *TINY, "--data", str(clips), "--n", "1", "--f", "3", "--json", str(clips))
    assert rc == 2 and f"--json {clips} is also --data" in one_line(err, "eval")
    rc, _, err = run(capsys, "sweep", *TINY, "--n", "1", "--f", "3", "--csv", str(tmp_path / "a"),
                     "--json", str(tmp_path / "a"))
    assert rc == 2 and "--json and --csv are both" in one_line(err, "sweep")
    assert clips.read_bytes() == before and files(tmp_path) == ["clips.npz"]


# ------------------------------------------------------------------ argument errors: one line


@pytest.mark.parametrize("argv, command, message", [
    (["lift", *TINY, "--keypoints", "k.json", "-o", "o.npz", "--width", "-5"], "lift",
     "argument --width: -5: expected a positive integer"),
    (["profile", *TINY, "--f", "2.5"], "profile", "argument --f: '2.5' is not an integer"),
    (["sweep", *TINY, "--n", "2,1", "--f", "3"], "sweep", "give each value once, in increasing order"),
    (["sweep", *TINY, "--n", "", "--f", "3"], "sweep", "give positive integers"),
    (["sweep", *TINY, "--stages", "1,3"], "sweep", "give the stages as N,N:F,F"),
    (["eval", *TINY, "--data", "d.npz", "--batch", "0"], "eval", "argument --batch: 0: expected a positive integer"),
    (["finetune", *TINY, "--data", "d.npz", "--epochs", "0", "-o", "x.pt"], "finetune",
     "argument --epochs: 0: expected a positive integer"),
    (["train", *TINY, "--data", "d.npz", "--epochs", "1", "-o", "x.pt", "--lr", "0"], "train",
     "argument --lr: 0: expected a number greater than 0"),
    (["export", *TINY], "export", None),
    (["patch", *TINY], "patch", "the following arguments are required: -o/--output"),
])
def test_argument_errors_are_one_line_with_the_way_to_help(capsys, tmp_path, monkeypatch, argv, command, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv) if message else main([*argv, "--onnx", "m.onnx", "--batch", "x"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith(f"hotpatch {command}: error: ") and err.rstrip().endswith(f"(see hotpatch {command} --help)")
    assert message is None or message in err
    assert files(tmp_path) == []


# ------------------------------------------------------------------ accurate path messages


def test_a_directory_given_as_the_keypoint_file_says_so(capsys, tmp_path):
    rc, _, err = run(capsys, "lift", *TINY, "--keypoints", str(tmp_path), "-o", str(tmp_path / "o.npz"))
    line = one_line(err, "lift")
    assert rc == 2 and f"{tmp_path} is a folder without keypoint files" in line and "does not exist" not in line


def test_an_output_whose_parent_is_a_file_says_so(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    rc, _, err = run(capsys, "patch", *TINY, "--n", "1", "--f", "3", "-o", str(tmp_path / "notes.txt" / "hot.pt"))
    line = one_line(err, "patch")
    assert rc == 2 and f"'{tmp_path / 'notes.txt'}' is a file, not a directory" in line
    assert "does not exist" not in line


# ------------------------------------------------------------------ model settings that cannot work


def _no_python_advice(line: str) -> None:
    for leak in ("tlparse", "example_input=", "leaf_modules=", "make that line independent"):
        assert leak not in line, line


def test_heads_that_do_not_divide_the_width_name_both_and_the_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "profile", "mixste", "--frames", "9", "--set", "dim=30", "--set", "num_heads=4",
                     "--n", "1", "--f", "3", "--no-fps")
    line = one_line(err, "profile")
    assert rc == 2 and "dim=30" in line and "num_heads=4" in line and "num_heads among [1, 2, 3, 5, 6, 10, 15]" in line
    _no_python_advice(line)
    # a model class of one's own: what the model itself raised, on which clip, and where to look
    rc, _, err = run(capsys, "patch", "author_vpts:MixSTELike", "--set", "dim=30", "--set", "heads=4", "--set",
                     "depth=2", "--frames", "27", "--joints", "17", "--channels", "2", "--n", "1", "--f", "9",
                     "-o", "never.pt")
    line = one_line(err, "patch")
    assert rc == 2 and "fails on a clip of shape (1, 27, 17, 2) as it is built, before any patch" in line
    assert "RuntimeError: shape '[27, 17, 3, 4, 7]' is invalid" in line and "--set/--kwargs" in line
    _no_python_advice(line)
    assert files(tmp_path) == []


def test_depth_zero_says_there_is_no_block(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "patch", "mixste", "--frames", "9", "--set", "depth=0", "-o", "never.pt")
    line = one_line(err, "patch")
    assert rc == 2 and "mixste with depth=0 has no transformer block" in line and "pass depth=1 or more" in line
    _no_python_advice(line)
    rc, _, err = run(capsys, "profile", "author_vpts:MixSTELike", "--set", "depth=0", "--n", "1", "--f", "9")
    line = one_line(err, "profile")
    assert rc == 2 and "IndexError: index 0 is out of range" in line and "as it is built" in line
    _no_python_advice(line)


# ------------------------------------------------------------------ arguments checked before any work


@pytest.mark.parametrize("command", ["eval", "finetune"])
def test_a_missing_data_file_is_found_before_the_model_is_built(capsys, tmp_path, no_model, command):
    extra = ["--epochs", "1", "-o", str(tmp_path / "hot.pt")] if command == "finetune" else []
    rc, _, err = run(capsys, command, *TINY, "--n", "1", "--f", "3", "--data", str(tmp_path / "missing.npz"), *extra)
    assert rc == 2 and "missing.npz' does not exist" in one_line(err, command)
    rc, _, err = run(capsys, command, *TINY, "--n", "1", "--f", "3", "--data", str(tmp_path), *extra)
    assert rc == 2 and f"--data '{tmp_path}' is a directory" in one_line(err, command)


def test_resume_with_another_epoch_count_is_an_error_before_any_work(capsys, tmp_path, monkeypatch):
    clips = str(write_clips(tmp_path / "clips.npz"))
    out = str(tmp_path / "hot.pt")
    base = ["finetune", *TINY, "--data", clips, "--n", "1", "--f", "3", *QUICK, "-o", out]
    assert run(capsys, *base, "--epochs", "1")[0] == 0
    monkeypatch.setattr(hotpatch.cli.finetune, "load_target", lambda *a, **k: pytest.fail("model built"))
    rc, _, err = run(capsys, *base, "--epochs", "2", "--resume")
    line = one_line(err, "finetune")
    assert rc == 2 and "--resume with --epochs 2" in line and "run of 1 epochs" in line
    assert "resume with --epochs 1" in line and "--state NEW.state.pt" in line


# ------------------------------------------------------------------ save_model: temp file, then rename


def test_save_model_never_leaves_a_partial_file(tmp_path, monkeypatch):
    import hotpatch.models.mixste as mixste

    model = mixste.build(9, dim=16, depth=1, num_heads=2)
    path = tmp_path / "base.pt"
    save_model(model, path)
    good = path.read_bytes()

    def interrupted(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(OutputError, match=r"cannot write .*base.pt.*file write failed.*older one, left unchanged"):
        save_model(model, path)
    assert path.read_bytes() == good and files(tmp_path) == ["base.pt"]


def test_train_writes_through_a_temp_file_beside_the_target(capsys, tmp_path, monkeypatch):
    import hotpatch.atomic

    seen = []
    real = hotpatch.atomic.temp_path
    monkeypatch.setattr(hotpatch.atomic, "temp_path", lambda p: seen.append(real(p)) or real(p))
    clips = str(write_clips(tmp_path / "clips.npz"))
    rc, _, err = run(capsys, "train", *TINY, "--data", clips, "--epochs", "1", *QUICK, "-o", str(tmp_path / "b.pt"))
    assert rc == 0, err
    assert real(tmp_path / "b.pt") in seen and (tmp_path / "b.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------ the helper itself


def test_atomic_write_replaces_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "r.json"
    write_text(path, "one")
    with pytest.raises(ExportError, match=r"bad \(the file that failed is kept at .*r.failed.json"):
        with atomic_write(path, keep_failed=True) as tmp:
            tmp.write_text("two")
            raise ExportError("bad")
    assert path.read_text() == "one" and (tmp_path / "r.failed.json").read_text() == "two"
    with atomic_write(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".json" and tmp != path
        tmp.write_text("three")
    assert path.read_text() == "three" and sorted(files(tmp_path)) == ["r.failed.json", "r.json"]
    with pytest.raises(OutputError, match="the writer made no file"):
        with atomic_write(tmp_path / "empty.txt"):
            pass
    assert json.loads(write_text(tmp_path / "n.json", "[1]").read_text()) == [1]
    np.testing.assert_array_equal(np.load(hotpatch.atomic.write_npz(tmp_path / "a", x=np.arange(3)))["x"], [0, 1, 2])


def test_the_training_state_file_is_an_output_like_the_others(capsys, tmp_path, no_model):
    clips = str(write_clips(tmp_path / "clips.npz"))
    base = ["finetune", *TINY, "--data", clips, "--n", "1", "--f", "3", "--epochs", "1", "-o", str(tmp_path / "h.pt")]
    rc, _, err = run(capsys, *base, "--state", str(tmp_path / "h.pt"))
    assert rc == 2 and f"-o and --state are both {tmp_path / 'h.pt'}" in one_line(err, "finetune")
    rc, _, err = run(capsys, *base, "--state", clips)
    assert rc == 2 and f"--state {clips} is also --data" in one_line(err, "finetune")
    # an explicit, distinct --state passes the checks and reaches the model (refused here by no_model)
    with pytest.raises(AssertionError, match="the model was built before the arguments were checked"):
        main(["--quiet", *base, "--state", str(tmp_path / "s.pt")])


def test_an_interrupted_write_leaves_neither_the_target_nor_its_temp_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "big.pt") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert files(tmp_path) == []
