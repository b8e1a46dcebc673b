"""``hotpatch lift --stream``: JSON lines in, one pose per frame out, equal to the offline lift."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from checks import onnx_missing
from hotpatch.cli import main
from keypoint_files import H, W, coco_from_h36m, projected_clip, write_coco

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]


def _lines(coco: np.ndarray, scores: np.ndarray, missing=()) -> str:
    rows = []
    for t in range(len(coco)):
        kp = None if t in missing else np.concatenate([coco[t], scores[t][:, None]], axis=1).reshape(-1).tolist()
        rows.append(json.dumps({"image_id": t, "keypoints": kp}))
    return "\n".join(rows) + "\n"


def _stream(capsys, monkeypatch, text: str, *argv: str) -> tuple[int, list[dict], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    rc = main(["--quiet", "lift", *argv, "--stream"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture()
def patched(tmp_path, capsys):
    path = tmp_path / "hot.pt"
    assert main(["--quiet", "patch", *TINY, "--n", "1", "--f", "3", "--recover", "linear", "-o", str(path)]) == 0
    capsys.readouterr()
    return str(path)


def test_stream_cli_equals_the_offline_lift(capsys, monkeypatch, tmp_path, patched):
    px = projected_clip(30)
    coco, scores = coco_from_h36m(px), np.full((30, 17), 0.9)
    write_coco(tmp_path / "r.json", coco, scores)
    assert main(["--quiet", "lift", patched, "--keypoints", str(tmp_path / "r.json"), "--size", f"{W}x{H}",
                 "--stride", "9", "-o", str(tmp_path / "o.npz")]) == 0
    capsys.readouterr()
    offline = np.load(tmp_path / "o.npz")["poses_3d"]
    rc, rows, err = _stream(capsys, monkeypatch, _lines(coco, scores), patched, "--size", f"{W}x{H}")
    assert rc == 0, err
    assert [r["frame"] for r in rows] == list(range(30))
    np.testing.assert_allclose(np.array([r["pose"] for r in rows]), offline, atol=2e-5)


def test_stream_cli_holds_missing_frames_and_waits_for_the_first_detection(capsys, monkeypatch, patched):
    px = projected_clip(20)
    coco, scores = coco_from_h36m(px), np.full((20, 17), 0.9)
    scores[6, 3] = 0.1  # one joint too unsure: held at its frame-5 position
    text = _lines(coco, scores, missing=(0, 1, 10))
    rc, rows, err = _stream(capsys, monkeypatch, text, patched, "--size", f"{W}x{H}", "--delay", "2")
    assert rc == 0, err
    assert [r["frame"] for r in rows] == list(range(20))
    assert rows[0]["pose"] is None and rows[1]["pose"] is None and all(r["pose"] for r in rows[2:])
    held = coco.copy()
    held[6, 3] = held[5, 3]
    held[10] = held[9]
    filled = _lines(held[2:], scores[2:])  # the same stream with the gaps filled as the CLI fills them
    rc, again, _ = _stream(capsys, monkeypatch, filled, patched, "--size", f"{W}x{H}", "--delay", "2")
    assert rc == 0
    np.testing.assert_allclose(np.array([r["pose"] for r in rows[2:]]), np.array([r["pose"] for r in again]),
                               atol=1e-6)


@onnx_missing
def test_stream_cli_through_an_exported_onnx_file(capsys, monkeypatch, tmp_path, patched):
    assert main(["--quiet", "export", patched, "--onnx", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    px = projected_clip(12)
    text = _lines(coco_from_h36m(px), np.full((12, 17), 0.9))
    _, eager, _ = _stream(capsys, monkeypatch, text, patched, "--size", f"{W}x{H}", "--delay", "3", "--hop", "2")
    rc, rows, err = _stream(capsys, monkeypatch, text, str(tmp_path / "m.onnx"), "--size", f"{W}x{H}", "--delay",
                            "3", "--hop", "2")
    assert rc == 0, err
    np.testing.assert_allclose(np.array([r["pose"] for r in rows]), np.array([r["pose"] for r in eager]), atol=1e-4)


@pytest.mark.parametrize("argv, stdin, message", [
    (["--stream", "-o", "x.npz", "--size", "100x100"], "", "drop -o"),
    (["--stream", "--flip", "--stride", "3", "--size", "100x100"], "", "drop --stride, --flip"),
    (["--stream"], "", "--size WxH"),
    (["--stream", "--size", "100x100", "--delay", "9"], "", "delay=9"),
    (["--stream", "--size", "100x100"], "{not json\n", "line 1 of stdin is not JSON"),
    (["--stream", "--size", "100x100"], json.dumps({"keypoints": [1, 2, 3] * 16}) + "\n", "16 joints"),
    (["-o", "x.npz"], "", "FILE (or --keypoints FILE) (or lift live with --stream)"),
    (["--keypoints", "k.json", "-o", "x.npz", "--delay", "3"], "", "add --stream"),
])
def test_stream_cli_errors_are_one_line(capsys, monkeypatch, patched, argv, stdin, message):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["--quiet", "lift", patched, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
