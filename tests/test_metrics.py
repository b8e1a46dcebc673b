import math

import numpy as np
import pytest
import torch

from hotpatch.data import DataShapeError
from hotpatch.errors import HotpatchError
from hotpatch.metrics import (
    M_TO_MM,
    evaluate,
    frame_mpjpe,
    frame_mpjve,
    frame_p_mpjpe,
    mpjpe,
    mpjve,
    p_mpjpe,
    procrustes_align,
    selection_mask,
    split_by_selection,
    to_mm,
)


def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def test_mpjpe_hand_computed():
    target = np.zeros((2, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]],   # frame 0: joint errors 5 and 2 -> 3.5
                     [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # frame 1: 1 and 1 -> 1
    np.testing.assert_allclose(frame_mpjpe(pred, target), [3.5, 1.0])
    assert mpjpe(pred, target) == pytest.approx(2.25)
    assert mpjpe(pred, target, valid=np.array([True, False])) == pytest.approx(3.5)
    assert mpjpe(torch.tensor(pred), torch.tensor(target)) == pytest.approx(2.25)
    assert to_mm(mpjpe(pred, target)) == pytest.approx(2250.0)


def test_frame_functions_keep_the_input_type_and_gradients():
    pred = torch.randn(4, 17, 3, requires_grad=True)
    err = frame_mpjpe(pred, torch.zeros(4, 17, 3))
    assert isinstance(err, torch.Tensor) and err.shape == (4,)
    err.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert isinstance(frame_p_mpjpe(np.ones((2, 5, 3)), np.ones((2, 5, 3))), np.ndarray)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_p_mpjpe_of_a_similar_copy_is_zero(as_tensor):
    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 17, 3))
    pred = np.stack([1.7 * target[i] @ _rotation(rng.normal(size=3), 0.3 + i).T + rng.normal(size=3)
                     for i in range(6)])
    if as_tensor:
        pred, target = torch.tensor(pred), torch.tensor(target)
    assert mpjpe(pred, target) > 0.5
    assert p_mpjpe(pred, target) < 1e-9
    np.testing.assert_allclose(np.asarray(procrustes_align(pred, target)), np.asarray(target), atol=1e-9)


def test_p_mpjpe_never_reflects():
    target = np.random.default_rng(1).normal(size=(1, 17, 3))
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    assert p_mpjpe(mirrored, target) > 0.1  # a mirror image is not a similar copy


def test_p_mpjpe_hand_computed():
    # A collapsed prediction can only be scaled to zero and moved to the target centroid.
    target = np.array([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]])
    assert p_mpjpe(np.zeros((1, 2, 3)), target) == pytest.approx(1.0)
    # A square stretched 3x along x: rotation stays identity, scale = tr(P^T T) / |P|^2 = 8 / 20,
    # so the joints land at x = +-1.2 and y = +-0.4: errors 0.2, 0.2, 0.6, 0.6 -> mean 0.4.
    square = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])
    stretched = square * np.array([3.0, 1.0, 1.0])
    assert p_mpjpe(stretched, square) == pytest.approx(0.4)


def test_mpjve_constant_offset_is_zero_and_linear_drift_is_hand_computed():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(2, 10, 17, 3))
    assert mpjve(target + np.array([0.3, -2.0, 5.0]), target) == pytest.approx(0.0, abs=1e-12)
    drift = target + np.arange(10)[None, :, None, None] * np.array([0.0, 0.0, 2.0])
    assert mpjve(drift, target) == pytest.approx(2.0)
    assert frame_mpjve(drift, target).shape == (2, 9)
    # a jump between frames 4 and 5 is ignored once either of them is padding
    jump = target.copy()
    jump[:, 5:] += 1.0
    assert mpjve(jump, target) > 0
    for padded in (4, 5):
        valid = np.ones((2, 10), bool)
        valid[:, padded] = False
        assert mpjve(jump, target, valid=valid) == pytest.approx(0.0, abs=1e-12)


def test_split_hand_computed_and_recombines():
    s = split_by_selection(np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, False, True, False]))
    assert (s.all, s.selected, s.pruned, s.n_all, s.n_selected, s.n_pruned) == (2.5, 2.0, 3.0, 4, 2, 2)

    rng = np.random.default_rng(3)
    errors = rng.random((5, 81))
    selected = rng.random((5, 81)) < 0.3
    valid = rng.random((5, 81)) < 0.9
    s = split_by_selection(errors, selected, valid)
    assert s.n_selected + s.n_pruned == s.n_all == valid.sum()
    assert s.selected != pytest.approx(s.pruned)
    assert (s.n_selected * s.selected + s.n_pruned * s.pruned) / s.n_all == pytest.approx(s.all)
    assert s.all == pytest.approx(errors[valid].mean())


def test_evaluate_splits_every_metric_and_scales():
    rng = np.random.default_rng(4)
    target = rng.normal(size=(3, 9, 17, 3))
    pred = target + 0.01 * rng.normal(size=target.shape)
    selected = selection_mask(torch.tensor([[0, 4, 8]] * 3), 9)
    assert selected.shape == (3, 9) and selected.sum() == 9 and selected[0, 4] and not selected[0, 5]
    valid = np.ones((3, 9), bool)
    valid[2, 7:] = False
    out = evaluate(pred, target, valid=valid, selected=selected, scale=M_TO_MM)
    assert out["mpjpe"] == pytest.approx(M_TO_MM * mpjpe(pred, target, valid))
    assert out["p_mpjpe"] == pytest.approx(M_TO_MM * p_mpjpe(pred, target, valid))
    assert out["mpjve"] == pytest.approx(M_TO_MM * mpjve(pred, target, valid))
    assert out["frames"] == 25 and out["frames_selected"] == 8 and out["frames_pruned"] == 17
    for name in ("mpjpe", "p_mpjpe"):
        recombined = (8 * out[f"{name}_selected"] + 17 * out[f"{name}_pruned"]) / 25
        assert recombined == pytest.approx(out[name])
    assert "mpjve_pruned" in out and set(evaluate(pred, target)) == {"mpjpe", "p_mpjpe", "mpjve", "frames"}


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(DataShapeError, match=r"\(2, 17, 3\).*\(2, 16, 3\)"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    with pytest.raises(HotpatchError, match="T >= 2"):
        mpjve(np.zeros((1, 17, 3)), np.zeros((1, 17, 3)))
    with pytest.raises(DataShapeError, match="valid mask"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)), valid=np.ones(3, bool))
    with pytest.raises(DataShapeError, match="expected 0..8"):
        selection_mask(torch.tensor([[0, 9]]), 9)
