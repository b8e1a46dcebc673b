import pytest
import torch

from hotpatch.errors import HotpatchError
from hotpatch.losses import (
    H36M_JOINT_WEIGHTS,
    TC_WEIGHT,
    VELOCITY_WEIGHT,
    loss_sums,
    mixste_loss,
    temporal_consistency,
    velocity_error,
    weighted_mpjpe,
)


def _poses():
    """B=1, T=3, J=2: target still at zero; pred moves joint 0 by (3, 4, 0) at t=1."""
    target = torch.zeros(1, 3, 2, 3)
    pred = torch.zeros(1, 3, 2, 3)
    pred[0, 1, 0] = torch.tensor([3.0, 4.0, 0.0])  # error 5 at (t=1, j=0)
    pred[0, 2, 1] = torch.tensor([0.0, 0.0, 2.0])  # error 2 at (t=2, j=1)
    return pred, target


def test_mixste_constants():
    assert H36M_JOINT_WEIGHTS == (1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4)
    assert (TC_WEIGHT, VELOCITY_WEIGHT) == (0.5, 2.0)


def test_losses_against_hand_computed_values():
    pred, target = _poses()
    w = (1.0, 3.0)
    # weighted MPJPE: (1·5 + 3·2) / (3 frames · 2 joints)
    assert float(weighted_mpjpe(pred, target, w)) == pytest.approx(11 / 6)
    # TCLoss: squared steps: t0→1 joint0 25, t1→2 joint0 25 and joint1 4; weighted 25+25+3·4 = 62
    # over 2 pairs · 2 joints · 3 coords = 12
    assert float(temporal_consistency(pred, w)) == pytest.approx(62 / 12)
    # velocity: |Δ| per pair and joint: (5, 0), (5, 2) → 12 / 4
    assert float(velocity_error(pred, target)) == pytest.approx(3.0)
    terms = mixste_loss(pred, target, weights=w)
    assert float(terms.total) == pytest.approx(11 / 6 + 0.5 * 62 / 12 + 2.0 * 3.0)


def test_valid_mask_drops_padded_frames_and_their_pairs():
    pred, target = _poses()
    valid = torch.tensor([[True, True, False]])
    w = (1.0, 3.0)
    assert float(weighted_mpjpe(pred, target, w, valid)) == pytest.approx(5 / 4)
    assert float(temporal_consistency(pred, w, valid)) == pytest.approx(25 / 6)  # one pair left
    assert float(velocity_error(pred, target, valid)) == pytest.approx(5 / 2)
    sums = loss_sums(pred, target, valid, w)
    assert [float(n) for _, n in sums.values()] == [4.0, 6.0, 2.0]


def test_default_weights_are_mixste_for_17_joints_and_uniform_otherwise():
    pred = torch.zeros(1, 2, 17, 3)
    pred[..., 0] = 1.0  # error 1 everywhere
    assert float(weighted_mpjpe(pred, torch.zeros_like(pred))) == pytest.approx(sum(H36M_JOINT_WEIGHTS) / 17)
    pred5 = torch.ones(1, 2, 5, 3)
    assert float(weighted_mpjpe(pred5, torch.ones_like(pred5) * 0)) == pytest.approx(3**0.5)


def test_single_frame_output_has_no_temporal_terms_and_gradients_flow():
    pred = torch.randn(2, 1, 17, 3, requires_grad=True)
    terms = mixste_loss(pred, torch.zeros(2, 1, 17, 3))
    assert float(terms.tc.detach()) == 0 and float(terms.velocity.detach()) == 0
    terms.total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_bad_shapes_are_hotpatch_errors():
    with pytest.raises(HotpatchError, match=r"\(B, T, J, 3\)"):
        mixste_loss(torch.zeros(2, 17, 3), torch.zeros(2, 17, 3))
    with pytest.raises(HotpatchError, match="valid mask"):
        mixste_loss(torch.zeros(1, 2, 17, 3), torch.zeros(1, 2, 17, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(HotpatchError, match="joint weights"):
        weighted_mpjpe(torch.zeros(1, 2, 17, 3), torch.zeros(1, 2, 17, 3), (1.0, 2.0))
