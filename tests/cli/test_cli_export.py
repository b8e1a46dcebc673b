"""``hotpatch export``: both formats from a patched file, each checked against eager."""

from __future__ import annotations

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
