"""``benchmarks/derive_clips.py``: a shifted copy of a clips file (new capture rate, new proportions)."""

import sys
from pathlib import Path

import numpy as np
import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks import derive_clips  # noqa: E402
from hotpatch.data import load_clips  # noqa: E402
from tinypose import PARENTS, write_clips  # noqa: E402


def _bones(clip: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(clip[:, j] - clip[:, p], axis=-1) for j, p in enumerate(PARENTS) if p >= 0], 1)


def test_shifted_file_has_new_rate_and_proportions(tmp_path):
    src = write_clips(tmp_path / "clips.npz", lengths=(31, 22, 41, 25))
    out = tmp_path / "shifted.npz"
    assert derive_clips.main([str(src), str(out), "--fps", "50", "--body", "1.2", "1.2", "--bone-jitter", "0"]) == 0
    with np.load(src) as a, np.load(out) as b:
        assert list(b["clip_names"]) == [n for n in a["clip_names"] if "_normal_" in n]
        assert float(b["fps"]) == 50.0 and b.files == a.files
        first = a["positions"][: a["clip_offsets"][1]].astype(np.float64)
        shifted = b["positions"][: b["clip_offsets"][1]].astype(np.float64)
        assert len(shifted) == 51  # 30 intervals at 30 fps = 1 s = 50 intervals at 50 fps
        np.testing.assert_allclose(shifted[0, 0], first[0, 0], atol=1e-6)  # the root stays
        np.testing.assert_allclose(_bones(shifted[:1]), 1.2 * _bones(first[:1]), rtol=1e-5)
        np.testing.assert_allclose(shifted[-1], b["positions"][b["clip_offsets"][1] - 1], atol=0)
    splits = load_clips(out, cameras_per_clip=1)
    assert len(splits["test"]) == 2 and not splits["train"]


def test_resample_is_exact_on_linear_motion():
    t = np.arange(10, dtype=np.float64)[:, None, None] * np.ones((1, 17, 3))
    np.testing.assert_allclose(derive_clips.resample(t, 30.0, 60.0)[:, 0, 0], np.arange(19) / 2)


def test_refuses_to_write_into_the_repository(tmp_path, capsys):
    src = write_clips(tmp_path / "clips.npz")
    assert derive_clips.main([str(src), str(_ROOT / "shifted.npz")]) == 2
    assert "licence" in capsys.readouterr().err and not (_ROOT / "shifted.npz").exists()


def test_no_clip_of_the_style_is_an_error(tmp_path):
    src = write_clips(tmp_path / "clips.npz")
    with pytest.raises(ValueError, match="no clip"):
        derive_clips.main([str(src), str(tmp_path / "o.npz"), "--styles", "happy"])
