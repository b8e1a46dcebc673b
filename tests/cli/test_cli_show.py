"""``hotpatch show``: a picture of the frames each pruner keeps, for one or several stages."""

from __future__ import annotations

import pytest

import tinypose
from hotpatch.cli import main

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


def test_cli_show_marks_kept_frames(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    out_png = tmp_path / "show.png"
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "dataset-1_walk_normal_000",
               "--n", "1", "--f", "3", "--prune", "tpc,uniform,motion", "-o", str(out_png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.count("kept 3 frames") == 3
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "nope", "--n", "1", "--f", "3",
               "-o", str(out_png)])
    assert rc == 2 and "no clip named 'nope'" in capsys.readouterr().err


def test_cli_show_marks_each_stage(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra")
    data = tinypose.write_clips(tmp_path / "clips.npz")
    out_png = tmp_path / "stages.png"
    rc = main(["--quiet", "show", *TINY, "--data", str(data), "--clip", "dataset-1_walk_normal_000",
               "--n", "1,2", "--f", "6,3", "--prune", "tpc,uniform", "-o", str(out_png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.count("kept 3 frames") == 2  # the last stage's
