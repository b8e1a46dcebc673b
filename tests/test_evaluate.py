import numpy as np
import pytest
import torch
import torch.nn as nn

import hotpatch
from hotpatch.data import WindowDataset, flip_pose
from hotpatch.errors import HotpatchError
from hotpatch.evaluate import (
    Predictions,
    compare_models,
    evaluate_model,
    paper_flops,
    predict,
    score,
    untrained_recovery,
)
from tinypose import mixste, sequences


def _truth(dataset, offset=(0.0, 0.0, 0.0)):
    """Per-window predictions equal to the targets plus a constant offset (metres)."""
    batch = dataset.batch(range(len(dataset)))
    return batch["targets"].numpy() + np.asarray(offset, np.float32)


def test_seq2seq_score_counts_every_real_frame_once_and_ignores_padding():
    seqs = sequences((20, 13, 27))
    ds = WindowDataset(seqs, 9)
    preds = Predictions(_truth(ds, (0.003, 0.004, 0.0)), None, np.arange(len(ds)), "seq2seq")
    out = score(ds, preds)
    assert out["frames"] == 60 and out["sequences"] == 3
    assert out["mpjpe"] == pytest.approx(5.0, abs=1e-3)  # 5 mm everywhere
    assert out["p_mpjpe"] == pytest.approx(0.0, abs=1e-3)  # a pure translation
    assert out["mpjve"] == pytest.approx(0.0, abs=1e-3)
    # garbage in the padded frames must not count
    poses = _truth(ds)
    valid = ds.batch(range(len(ds)))["valid"].numpy()
    poses[~valid] = 100.0
    assert score(ds, Predictions(poses, None, np.arange(len(ds)), "seq2seq"))["mpjpe"] == pytest.approx(0, abs=1e-6)


def test_velocities_do_not_cross_windows_of_different_sequences():
    seqs = sequences((9, 9))
    ds = WindowDataset(seqs, 9)
    poses = _truth(ds)
    poses[1] += 0.01  # second sequence shifted by a constant: no velocity error at all
    out = score(ds, Predictions(poses, None, np.arange(2), "seq2seq"))
    assert out["mpjve"] == pytest.approx(0.0, abs=1e-4)
    assert out["mpjpe"] == pytest.approx(0.5 * 10 * 3**0.5, rel=1e-4)


def test_seq2frame_scores_the_centre_of_each_window():
    seqs = sequences((12, 7))
    ds = WindowDataset(seqs, 5, mode="seq2frame")
    full = _truth(ds)
    centre = full[:, 2:3] + np.float32(0.002)
    out = score(ds, Predictions(centre, None, np.arange(len(ds)), "seq2frame"))
    assert out["frames"] == 19 and out["mpjpe"] == pytest.approx(2 * 3**0.5, rel=1e-4)
    assert out["mpjve"] == pytest.approx(0.0, abs=1e-4)


def test_selected_and_pruned_split_of_a_patched_model():
    model = mixste(9)
    patched = hotpatch.apply(model, 1, 3, recover="linear")
    ds = WindowDataset(sequences((18, 27)), 9)  # 5 full windows
    preds = predict(patched, ds)
    assert preds.selected is not None and preds.selected.shape == (5, 9)
    assert (preds.selected.sum(1) == 3).all()
    out = score(ds, preds)
    assert out["frames_selected"] == 15 and out["frames_pruned"] == 30
    n = out["frames"]
    mixed = (out["mpjpe_selected"] * 15 + out["mpjpe_pruned"] * 30) / n
    assert out["mpjpe"] == pytest.approx(mixed, rel=1e-6)
    # the original has no pruner: no split
    assert "mpjpe_selected" not in evaluate_model(model, ds, flops=False)


def test_flip_augmentation_averages_with_the_unflipped_prediction():
    class Lift(nn.Module):  # a fixed, non-equivariant map 2D -> 3D
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    model = Lift()
    ds = WindowDataset(sequences((9,)), 9)
    x = ds.batch([0])["inputs"]
    expected = (model(x) + flip_pose(model(flip_pose(x)))) / 2
    got = predict(model, ds, flip=True).poses
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-6)
    assert not np.allclose(got, predict(model, ds).poses)


def test_compare_models_zero_retraining_with_flops():
    model = mixste(9)
    patched = hotpatch.apply(model, 1, 3, recover="nearest")
    res = compare_models(model, patched, sequences((20, 13)))
    assert set(res) == {"original", "patched", "delta", "config"}
    assert res["original"]["frames"] == res["patched"]["frames"] == 33
    assert res["patched"]["flops"] < res["original"]["flops"] == paper_flops(model, 9)
    assert res["delta"]["flops_pct"] < -20
    assert res["config"]["pipeline"] == "seq2seq" and res["config"]["f"] == 3
    s2f = hotpatch.apply(model, 1, 3, pipeline="seq2frame")
    res = compare_models(model, s2f, sequences((20, 13)))
    assert res["config"]["pipeline"] == "seq2frame" and res["original"]["frames"] == 33
    assert "mpjpe_selected" not in res["patched"]  # the centre is always kept


def test_untrained_tra_is_detected():
    model = mixste(9)
    tra = hotpatch.apply(model, 1, 3, recover="tra")
    assert untrained_recovery(tra)
    assert not untrained_recovery(hotpatch.apply(model, 1, 3, recover="linear"))
    with torch.no_grad():
        tra.hotpatch_recover.recoverer.queries.add_(0.1)
    assert not untrained_recovery(tra)


def test_wrong_output_and_flipping_dataset_are_errors():
    ds = WindowDataset(sequences((9,)), 9, flip_prob=0.5)
    with pytest.raises(HotpatchError, match="flip_prob"):
        predict(mixste(9), ds)
    s2f = hotpatch.apply(mixste(9), 1, 3, pipeline="seq2frame")
    with pytest.raises(HotpatchError, match="seq2frame"):
        predict(s2f, WindowDataset(sequences((9,)), 9))
