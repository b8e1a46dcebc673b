"""The keep-ratio knob: apply(model, n, keep=K) keeps f = K*F frames, rounded to a valid f."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import author_vpts
import frame_use_vpts
import hotpatch
from hotpatch.cli import main
from hotpatch.errors import ConfigError
from hotpatch.keep import frames_for

TINY = ["mixste", "--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
QUICK = ["--counters", "paper", "--no-fps"]


def test_frames_for_rounds_halves_up_and_keeps_at_least_one():
    assert [frames_for(k, 27) for k in (1 / 3, 0.5, 0.34, 1.0, 0.001)] == [9, 14, 9, 27, 1]
    assert frames_for([0.5, 0.25], 243) == (122, 61)
    assert frames_for(1 / 3, 243) == 81


def test_keep_patches_as_the_f_it_computes_and_logs_it(caplog):
    model, x = author_vpts.build("mixste")
    with caplog.at_level(logging.INFO, logger="hotpatch.patch"):
        by_keep = hotpatch.apply(model, n=1, keep=1 / 3, recover="linear")
    assert "keep=0.333 of F=27 frames: f=9" in caplog.text
    by_f = hotpatch.apply(model, n=1, f=9, recover="linear")
    assert by_keep.hotpatch_config == by_f.hotpatch_config
    with torch.no_grad():
        assert torch.equal(by_keep(x), by_f(x))
    two = hotpatch.prepare(model).patch([1, 2], keep=[0.5, 0.25])
    assert two.hotpatch_config["f"] == [14, 7]


@pytest.mark.parametrize("keep, f", [(0.37, 9), (0.5, 18), (0.6, 18), (1.0, 27)])
def test_keep_moves_to_the_nearest_f_a_strided_stage_takes(keep, f):
    model, _ = frame_use_vpts.build("stridedformer")  # stride-3 stages: f must be a multiple of 9
    assert hotpatch.apply(model, n=1, keep=keep).hotpatch_config["f"] == f
    if frames_for(keep, 27) != f:
        with pytest.raises(ConfigError, match="Valid f near"):
            hotpatch.apply(model, n=1, f=frames_for(keep, 27))  # f itself is not moved


@pytest.mark.parametrize("kwargs, message", [
    ({"f": 9, "keep": 0.5}, "exactly one of f"),
    ({}, "exactly one of f"),
    ({"keep": 0}, "0 < keep <= 1"),
    ({"keep": 1.5}, "0 < keep <= 1"),
    ({"keep": "half"}, "0 < keep <= 1"),
    ({"n": [1, 2], "keep": [0.5, 0.6]}, "f must not increase"),
])
def test_bad_keep_is_a_config_error(kwargs, message):
    model, _ = author_vpts.build("mixste")
    with pytest.raises(ConfigError, match=message):
        hotpatch.apply(model, **{"n": 1, **kwargs})


def test_keep_on_the_command_line(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="hotpatch.patch"):
        assert main(["profile", *TINY, "--n", "1", "--keep", "0.34", *QUICK, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["f"] == 9
    assert "keep=0.34 of F=27 frames: f=9" in caplog.text  # printed on stderr (INFO) unless --quiet
    assert main(["--quiet", "profile", *TINY, "--n", "1", "--keep", "0.34", "--f", "9", *QUICK]) == 2
    assert "pass --f 9 or --keep 0.34, not both" in capsys.readouterr().err
    assert main(["--quiet", "sweep", *TINY, "--n", "1", "--keep", "0.34,0.67", "--no-latency", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted({r["f"] for r in rows if r["f"] is not None}) == [9, 18]  # the original: f None


def test_bad_keep_option_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["profile", *TINY, "--n", "1", "--keep", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "0 < keep <= 1" in err


def test_a_recipe_may_give_keep_instead_of_f(capsys, tmp_path):
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "recipes" / "mixste" / "hot-243-81.toml").read_text()
    text = (text.replace("f = 81 ", "keep = 0.3333 ").replace("embed_dim_ratio = 512", "embed_dim_ratio = 16")
            .replace("depth = 8", "depth = 2").replace("num_heads = 8", "num_heads = 2").replace("frames = 243 ", "frames = 27 ")
            .replace("n = 3 ", "n = 1 "))
    (tmp_path / "keep.toml").write_text(text)
    assert main(["--quiet", "profile", str(tmp_path / "keep.toml"), *QUICK, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["f"] == 9
    assert main(["--quiet", "profile", str(tmp_path / "keep.toml"), "--n", "1", "--f", "5", *QUICK, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["f"] == 5  # --f replaces the recipe's keep


def test_show_takes_keep(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    import tinypose

    data = tinypose.write_clips(tmp_path / "clips.npz")
    rc = main(["--quiet", "show", "mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set",
               "num_heads=2", "--data", str(data), "--clip", "dataset-1_walk_normal_000", "--n", "1", "--keep", "0.34",
               "--prune", "tpc,uniform", "-o", str(tmp_path / "show.png")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.count("kept 3 frames") == 2  # 0.34 * 9 = 3.06 -> f=3
