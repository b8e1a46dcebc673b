"""``hotpatch export``: both formats from a patched file, each checked against eager."""

from __future__ import annotations

import pytest

from checks import onnx_missing
from hotpatch.cli import main


@onnx_missing
def test_cli_export_both_formats(capsys, tmp_path):
    out_pt = tmp_path / "hot.pt"
    assert main(["--quiet", "patch", "author_vpts:MixSTELike", "--set", "depth=2", "--n", "1", "--f", "9",
                 "--recover", "linear", "-o", str(out_pt)]) == 0
    capsys.readouterr()
    rc = main(["--quiet", "export", str(out_pt), "--onnx", str(tmp_path / "m.onnx"),
               "--torch-export", str(tmp_path / "m.pt2"), "--batch", "2"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "m.onnx").stat().st_size > 0 and (tmp_path / "m.pt2").stat().st_size > 0
    assert "onnxruntime vs eager" in out and "reloaded program vs eager" in out and "(2, 27, 17, 2)" in out
    rc = main(["--quiet", "export", str(out_pt)])
    assert rc == 2 and "--onnx" in capsys.readouterr().err


@onnx_missing
def test_cli_export_int8_reports_its_error_and_the_mpjpe_change(capsys, tmp_path):
    import re

    from tinypose import write_clips

    clips = write_clips(tmp_path / "clips.npz")
    out_pt = tmp_path / "hot.pt"
    assert main(["--quiet", "patch", "mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2",
                 "--set", "num_heads=2", "--n", "1", "--f", "3", "--recover", "linear", "-o", str(out_pt)]) == 0
    capsys.readouterr()
    rc = main(["--quiet", "export", str(out_pt), "--onnx", str(tmp_path / "m8.onnx"), "--quantize", "int8",
               "--data", str(clips)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert re.search(r"int8 weights, input \(1, 9, 17, 2\); onnxruntime vs eager max \|diff\| \S+ \(RMS \d+\.\d+% of the output\)",
                     out)
    found = re.search(r"eager (\d+\.\d+) mm, int8 ONNX (\d+\.\d+) mm \(([+-]\d+\.\d+) mm\)", out)
    assert found, out
    eager, int8, change = (float(v) for v in found.groups())
    assert change == pytest.approx(int8 - eager, abs=0.011) and int8 != eager


@pytest.mark.parametrize("argv, message", [
    (["--quantize", "int8"], "pass --onnx"),
    (["--onnx", "m.onnx", "--per-channel"], "add --quantize int8"),
])
def test_cli_export_quantize_options_need_their_partners(capsys, tmp_path, argv, message):
    rc = main(["--quiet", "export", "mixste", "--frames", "9", *argv])
    assert rc == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("recover", ["tra", "linear"])
def test_cli_export_says_when_the_tra_is_untrained(capsys, tmp_path, caplog, recover):
    out_pt = tmp_path / "hot.pt"
    assert main(["--quiet", "patch", "author_vpts:MixSTELike", "--set", "depth=2", "--n", "1", "--f", "9",
                 "--recover", recover, "-o", str(out_pt)]) == 0
    caplog.clear()
    rc = main(["--quiet", "export", str(out_pt), "--torch-export", str(tmp_path / "m.pt2")])
    assert rc == 0, capsys.readouterr().err
    assert ("the TRA has no trained weights" in caplog.text) == (recover == "tra")
