"""Fast checks of the HoT Table 6 baseline re-implementations (benchmarks/baselines.py)."""

import sys
from pathlib import Path

import pytest
import torch

# make `benchmarks` importable under plain `pytest` too (python -m pytest adds the cwd itself)
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.baselines import (  # noqa: E402
    BASELINES,
    FLOPS_CONVENTION,
    PAPER_TABLE6,
    count_flops,
    count_params,
)

TOL = 0.005  # 0.5 % relative
# STCFormer needs ~2.5 s for one F=243 forward on one CPU core; its forward and
# FLOPs checks use F=27 instead (all its Linear/Conv work is per token, so the
# FLOPs scale exactly with F).
SMALL_FRAMES = {"stcformer": 27}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: builder().eval() for name, (builder, _) in BASELINES.items()}


def _rel(ours: float, paper: float) -> float:
    return abs(ours - paper) / paper


def _input(name: str) -> torch.Tensor:
    shape = list(BASELINES[name][1])
    shape[1] = SMALL_FRAMES.get(name, shape[1])
    return torch.randn(shape)


def test_registry_matches_paper_rows():
    assert set(BASELINES) == set(PAPER_TABLE6) == set(FLOPS_CONVENTION)
    frames = {name: shape[1] for name, (_, shape) in BASELINES.items()}
    assert frames == {"poseformer": 81, "strided": 351, "pstmo": 243, "stcformer": 243}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_param_count_within_half_percent(models, name):
    ours = count_params(models[name]) / 1e6
    assert _rel(ours, PAPER_TABLE6[name][0]) < TOL, ours


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_forward_and_flops(models, name):
    model, x = models[name], _input(name)
    with torch.no_grad():
        out = model(x)
    b, f, j, _ = x.shape
    if name in ("strided", "pstmo"):  # seq2frame with an auxiliary full-sequence head
        centre, full = out
        assert centre.shape == (b, 1, j, 3) and full.shape == (b, f, j, 3)
        out = centre
    elif name == "poseformer":
        assert out.shape == (b, 1, j, 3)
    else:
        assert out.shape == (b, f, j, 3)
    assert torch.isfinite(out).all()

    flops = count_flops(model, x, FLOPS_CONVENTION[name])
    flops *= BASELINES[name][1][1] / f  # exact for STCFormer (per-token work only)
    assert _rel(flops / 1e9, PAPER_TABLE6[name][1]) < TOL, flops / 1e9


def test_train_mode_forward_runs():
    """Dropout / stochastic-depth paths execute (small inputs only)."""
    torch.manual_seed(0)
    for name in ("poseformer", "stcformer"):
        builder, shape = BASELINES[name]
        model = builder().train()
        x = torch.randn(2, 9 if name == "stcformer" else shape[1], 17, 2)
        out = model(x)
        assert torch.isfinite(out).all()
