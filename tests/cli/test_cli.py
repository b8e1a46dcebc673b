"""The ``hotpatch`` command line, run in-process on tiny models (one subprocess test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import hotpatch
import author_vpts
from hotpatch import saving
from hotpatch.cli import build_parser, main
from hotpatch.errors import TargetError

TINY = ["mixste", "--frames", "27", "--set", "dim=32", "--set", "depth=2"]
FAST = ["--repeats", "2", "--warmup", "0"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _check_numbers(profile: dict, counters: list[str]) -> None:
    assert isinstance(profile["params"], int) and profile["params"] > 0
    for name in counters:
        assert isinstance(profile["flops"][name]["value"], int) and profile["flops"][name]["value"] > 0, name
    assert profile["latency"]["median_ms"] > 0
    assert profile["fps"] > 0 and profile["fps_seq2seq"] > 0 and profile["fps_seq2frame"] > 0


def test_parser_has_profile_and_patch():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"profile", "patch"} <= set(choices)


def test_profile_recipe_before_after_json(capsys, tmp_path):
    path = tmp_path / "p.json"
    counters = ["paper", "fvcore", "torch"]
    rc, out, _ = run(capsys, "profile", *TINY, "--n", "1", "--f", "9", *FAST,
                     "--counters", ",".join(counters), "--json", str(path))
    assert rc == 0
    assert "hotpatch compare" in out and "FLOPs (paper)" in out and "speed-up" in out
    data = json.loads(path.read_text())
    for side in ("before", "after"):
        _check_numbers(data[side], counters)
    assert data["after"]["flops"]["paper"]["value"] < data["before"]["flops"]["paper"]["value"]
    assert data["change_pct"]["flops.paper"] < 0 and data["speedup"] > 0
    # the recipe's paper settings: a learnable positional embedding after pruning
    assert data["config"]["n"] == 1 and data["config"]["f"] == 9 and data["config"]["prune_pos_embed"] is True
    assert data["input_shape"] == [1, 27, 17, 2]


def test_profile_json_to_stdout_is_only_json(capsys):
    rc, out, _ = run(capsys, "profile", *TINY, *FAST, "--counters", "paper", "--batch", "2", "--json", "-")
    assert rc == 0
    data = json.loads(out)
    _check_numbers(data, ["paper"])
    assert data["batch"] == 2 and data["config"] is None


def test_pickled_model_needs_trust(capsys, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(author_vpts.MixSTELike(depth=2), path)
    rc, out, err = run(capsys, "profile", str(path), *FAST, "--counters", "paper")
    assert rc == 2 and out == ""
    assert "runs code" in err and "--trust" in err and "Traceback" not in err
    rc, out, _ = run(capsys, "profile", str(path), "--trust", "--n", "1", "--f", "9", *FAST, "--counters", "paper")
    assert rc == 0 and "hotpatch compare" in out and "F=27 J=17 C=2" in out


def test_patch_then_profile_the_saved_file(capsys, tmp_path):
    torch.manual_seed(0)
    original = author_vpts.MixSTELike(depth=2)
    ck = tmp_path / "ck.pt"
    torch.save({"model_pos": original.state_dict()}, ck)
    out_pt = tmp_path / "hot.pt"
    rc, out, _ = run(capsys, "patch", "author_vpts:MixSTELike", "--set", "depth=2", "--checkpoint", str(ck),
                     "--n", "1", "--f", "9", "--recover", "linear", "-o", str(out_pt))
    assert rc == 0 and "wrote" in out
    loaded = hotpatch.load(out_pt)
    saved = saving.read(out_pt)["state_dict"]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    assert all(torch.equal(saved[k], v) for k, v in original.state_dict().items())  # the checkpoint's weights
    # parameter-free recovery and the same weights: the reloaded patch equals a fresh one
    x = torch.randn(2, 27, 17, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), hotpatch.apply(original, n=1, f=9, recover="linear").eval()(x))

    rc, out, _ = run(capsys, "profile", str(out_pt), *FAST, "--counters", "paper")
    assert rc == 0 and "hotpatch profile" in out and "n=1 f=9" in out
    rc, out, _ = run(capsys, "profile", str(out_pt), "--n", "1", "--f", "9", *FAST, "--counters", "paper")
    assert rc == 0 and "hotpatch compare" in out  # against the original rebuilt from the file
    rc, _, err = run(capsys, "profile", str(out_pt), "--n", "1", "--f", "5", *FAST)
    assert rc == 2 and "already patched" in err


def test_header_lines_do_not_depend_on_terminal_width_or_path_length(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    deep = tmp_path / ("a-rather-long-directory-name-" * 4)
    deep.mkdir()
    out_pt = deep / "hot.pt"
    rc, out, _ = run(capsys, "patch", "author_vpts:MixSTELike", "--set", "depth=2", "--n", "1", "--f", "9",
                     "--recover", "linear", "-o", str(out_pt))
    assert rc == 0 and f"wrote {out_pt}:" in out.splitlines()[0]
    rc, out, _ = run(capsys, "profile", str(out_pt), *FAST, "--counters", "paper", "--no-fps")
    head = out.splitlines()[0]
    assert rc == 0 and str(out_pt) in head and "n=1 f=9 F=27" in head


def test_patch_recipe_defaults_and_round_trip(capsys, tmp_path):
    out_pt = tmp_path / "mh.pt"
    rc, out, _ = run(capsys, "patch", "mhformer", "--frames", "27", "--set", "dim=16", "--set", "d_hid=32",
                     "--n", "1", "--f", "9", "-o", str(out_pt))
    assert rc == 0
    loaded = hotpatch.load(out_pt)
    cfg = loaded.hotpatch_config
    assert (cfg["pipeline"], cfg["recover"], cfg["prune_pos_embed"]) == ("seq2frame", None, False)  # Table 6


def _not_a_model(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    return str(path)


def _weights(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(author_vpts.MixSTELike(depth=2).state_dict(), path)
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (lambda t: ["profile", str(t / "missing.pt")], "not a file, a recipe name or an import path"),
    (lambda t: ["profile", _not_a_model(t)], "not a model file"),
    (lambda t: ["profile", _weights(t)], "weights only"),
    (lambda t: ["profile", "poseformer"], "mixste"),
    (lambda t: ["profile", "author_vpts:NoSuchModel"], "has no attribute"),
    (lambda t: ["profile", "no_such_module:Model"], "cannot import module"),
    (lambda t: ["profile", "author_vpts:MixSTELike", "--frames", "10", "--n", "1", "--f", "3"], "F=27"),
    (lambda t: ["profile", *TINY, "--n", "1", "--f", "30"], "f=30 exceeds the clip length F=27"),
    (lambda t: ["profile", *TINY, "--n", "2", "--f", "9"], "n=2"),
    (lambda t: ["profile", *TINY, "--n", "1"], "both --n and --f"),
    (lambda t: ["patch", "author_vpts:MixSTELike", "--n", "1", "--f", "9", "-o", str(t / "no_dir" / "x.pt")], "no_dir"),
], ids=["missing", "not-a-model", "weights-only", "unknown-recipe", "bad-class", "bad-module", "wrong-frames",
        "f-gt-F", "n-too-large", "n-without-f", "bad-output"])
def test_bad_input_exits_nonzero_with_one_line(capsys, tmp_path, argv, message):
    rc, out, err = run(capsys, *argv(tmp_path))
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hotpatch "), err
    assert message in lines[0] and "Traceback" not in err


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(TargetError):
        main(["--debug", "profile", str(tmp_path / "missing.pt")])


def test_quiet_after_the_subcommand(capsys):
    assert main(["profile", *TINY, *FAST, "--counters", "paper", "--quiet", "--no-fps"]) == 0
    assert "hotpatch profile" in capsys.readouterr().out


def test_python_m_hotpatch_help():
    res = subprocess.run([sys.executable, "-m", "hotpatch", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "profile" in res.stdout and "patch" in res.stdout
