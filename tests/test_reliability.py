"""Reliability: exact save/load whatever the weights' values, no side effects on the global
RNG, batch invariance, one set of indices for every pruned stream, the hand-written HoT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import hotpatch
import layerscale_vpt
import author_vpts
from hotpatch.engine import analyse
from hotpatch.errors import RewriteError
from hotpatch.profile import profile
from hotpatch.models import mixste, motionbert

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import hand_hot  # noqa: E402


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """As if trained: random values everywhere (zero scales, embeddings, TRA queries included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _out(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _trained(cls, **kwargs):
    torch.manual_seed(0)
    model = cls(**kwargs).eval()
    _perturb(model, 1)
    return model


def _round_trip(patched, source, tmp_path):
    return hotpatch.load(hotpatch.save(patched, tmp_path / "m.pt", source=source))


# ----------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", list(author_vpts.ALL))
def test_round_trip_is_exact_for_every_test_vpt(name, tmp_path):
    model, x = author_vpts.build(name)
    _perturb(model, 1)
    patched = hotpatch.apply(model, n=1, f=9, example_input=x)
    _perturb(patched, 2, 0.01)  # fine-tuned: TRA queries and everything else move
    loaded = _round_trip(patched, {"class": f"author_vpts:{type(model).__name__}", "kwargs": {}}, tmp_path)
    assert torch.equal(_out(patched, x), _out(loaded, x))


# Models whose fresh initialisation hides what the analysis must see: ReZero / LayerScale-0
# residual branches (no block looks temporal), and a zero-initialised embedding (all tokens
# equal, so the order of a merged batch axis cannot be read), in both token orders.
FRESH_HIDES = {
    "layer_scale_0": ("LayerScaleVPT", {"init_values": 0.0}),
    "layer_scale_0_joint_major": ("TrajectoryVPT", {"init_values": 0.0, "joint_major": True}),
    "zero_embed_batch_major": ("TrajectoryVPT", {"zero_embed": True}),
    "zero_embed_joint_major": ("TrajectoryVPT", {"zero_embed": True, "joint_major": True}),
}


@pytest.mark.parametrize("case", list(FRESH_HIDES))
def test_load_rebuilds_the_saved_patch_whatever_the_fresh_weights(case, tmp_path):
    cls, kwargs = FRESH_HIDES[case]
    patched = hotpatch.apply(_trained(getattr(layerscale_vpt, cls), **kwargs), n=1, f=9)
    loaded = _round_trip(patched, {"class": f"layerscale_vpt:{cls}", "kwargs": kwargs}, tmp_path)
    assert loaded.hotpatch_prune.extra_repr() == patched.hotpatch_prune.extra_repr()  # same layouts
    x = torch.randn(3, 27, 17, 2)
    assert torch.equal(_out(patched, x), _out(loaded, x))


@pytest.mark.parametrize("drop", [("prune_pos_embed", "recover_frames", "analysis"), ("analysis",)])
def test_files_written_before_a_field_existed_still_load(drop, tmp_path):
    """Older files lack config fields and the analysis record; without the record the
    analysis runs on the saved weights (not a fresh initialisation)."""
    kwargs = {"zero_embed": True, "joint_major": True}
    patched = hotpatch.apply(_trained(layerscale_vpt.TrajectoryVPT, **kwargs), n=2, f=9)
    path = hotpatch.save(patched, tmp_path / "new.pt", source={"class": "layerscale_vpt:TrajectoryVPT", "kwargs": kwargs})
    payload = torch.load(path, weights_only=True)
    for key in drop:
        payload.pop(key, None)
        payload["config"].pop(key, None)
    torch.save(payload, tmp_path / "old.pt")
    loaded = hotpatch.load(tmp_path / "old.pt")
    x = torch.randn(2, 27, 17, 2)
    assert torch.equal(_out(patched, x), _out(loaded, x))


def test_the_file_records_block_kinds_and_batch_orders(tmp_path):
    patched = hotpatch.apply(_trained(layerscale_vpt.TrajectoryVPT, joint_major=True), n=1, f=9)
    path = hotpatch.save(patched, tmp_path / "m.pt", source={"class": "layerscale_vpt:TrajectoryVPT", "kwargs": {}})
    record = torch.load(path, weights_only=True)["analysis"]
    assert record["blocks"] == [[f"blocks.{i}", "temporal", i + 1] for i in range(3)]
    assert record["axes"]["blocks_0"] == [["J", "B"], ["F"], [32]]


def test_order_test_reports_ambiguity_instead_of_guessing():
    half = torch.randn(4, 5)
    assert analyse.batch_order(torch.cat([half, half]), 0, 4) == "major"
    assert analyse.batch_order(half.repeat_interleave(2, dim=0), 0, 4) == "minor"
    assert analyse.batch_order(torch.ones(8, 5), 0, 4) == "ambiguous"
    assert analyse.batch_order(torch.randn(8, 5), 0, 4) is None


def test_fresh_zero_embedding_model_is_refused_not_guessed():
    """All tokens equal: (B·J) and (J·B) cannot be told apart, so apply must not pick one."""
    torch.manual_seed(0)
    model = layerscale_vpt.TrajectoryVPT(zero_embed=True, joint_major=True)
    with pytest.raises(RewriteError, match="cannot read"):
        hotpatch.apply(model, n=1, f=9)


# ----------------------------------------------------------------------------- global RNG


def _rng_untouched(action) -> None:
    torch.manual_seed(0)
    expected = torch.randn(3)
    torch.manual_seed(0)
    action()
    assert torch.equal(torch.randn(3), expected)


def test_apply_prepare_profile_load_leave_the_global_rng_alone(tmp_path):
    model = mixste.build(27, dim=16, depth=2)
    _rng_untouched(lambda: hotpatch.apply(model, n=1, f=9))  # input shape inferred: a probe clip is drawn
    prepared = hotpatch.prepare(model)
    _rng_untouched(lambda: prepared.patch(1, 9, prune_pos_embed=True))
    _rng_untouched(lambda: hotpatch.prepare(model))
    patched = prepared.patch(1, 9)
    _rng_untouched(lambda: profile(patched, counters=("paper",), fps=False, train=True))
    path = hotpatch.save(patched, tmp_path / "m.pt")
    _rng_untouched(lambda: hotpatch.load(path))


def test_apply_is_reproducible_under_the_callers_seed():
    """TRA's Linears are still initialised from the caller's seed (then the state is restored)."""
    model = mixste.build(27, dim=16, depth=2)
    torch.manual_seed(5)
    a = hotpatch.apply(model, n=1, f=9).hotpatch_recover.state_dict()
    torch.manual_seed(5)
    b = hotpatch.apply(model, n=1, f=9).hotpatch_recover.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("name", list(author_vpts.ALL))
@pytest.mark.parametrize("settings", [{}, {"prune": "merge", "recover": "unmerge"}], ids=["tpc-tra", "merge-unmerge"])
def test_patched_models_are_batch_invariant(name, settings):
    """Sample i of a batch gives what it gives alone (to 1e-5: batched matmuls may round differently)."""
    model, x = author_vpts.build(name)
    x = torch.cat([x, torch.randn(2, *x.shape[1:])])
    patched = hotpatch.apply(model, n=1, f=9, example_input=x, **settings)
    _perturb(patched.hotpatch_recover if hasattr(patched, "hotpatch_recover") else patched, 2, 0.01)
    batch = _out(patched, x)
    for i in range(x.shape[0]):
        torch.testing.assert_close(batch[i:i + 1], _out(patched, x[i:i + 1]), rtol=0, atol=1e-5)


def test_every_stream_is_pruned_with_the_same_indices():
    """MHFormer-like: three hypothesis streams alive at the cut, all gathered at one index."""
    model, x = author_vpts.build("mhformer")
    patched = hotpatch.apply(model, n=1, f=9)
    seen = {}
    patched.hotpatch_prune.register_forward_hook(lambda m, a, out: seen.update(inputs=a, outputs=out))
    _out(patched, x)
    *pruned, index = seen["outputs"]
    assert len(seen["inputs"]) == 3 and len(pruned) == 3
    assert index.shape == (2, 9) and bool((index.diff(dim=1) > 0).all())
    rows = torch.arange(2)[:, None]
    for stream, kept in zip(seen["inputs"], pruned):  # (B, F, C) streams
        assert torch.equal(kept, stream[rows, index])


@pytest.mark.parametrize("name, build, n", [
    ("mixste", lambda: mixste.build(27, dim=32, depth=4), 2),
    ("motionbert", lambda: motionbert.build(frames=27, dim=32, depth=3), 1),
])
def test_hand_written_hot_computes_what_the_patched_model_computes(name, build, n, monkeypatch):
    """benchmarks/hand_hot.py is the speed reference: given the patched model's frame selection
    it must compute the same outputs, bit for bit."""
    torch.manual_seed(0)
    host = build().eval()
    _perturb(host, 1)
    patched = hotpatch.apply(host, n=n, f=9, prune_pos_embed=True)
    _perturb(patched.hotpatch_recover, 2)
    _perturb(patched.hotpatch_prune, 3)
    x = torch.randn(2, 27, 17, 2 if name == "mixste" else 3)
    seen = {}
    patched.hotpatch_prune.register_forward_hook(lambda m, a, out: seen.update(index=out[-1]))
    expected = _out(patched, x)
    monkeypatch.setattr(hand_hot, "cluster_centres", lambda tokens, keep, k=2: seen["index"])
    hand = hand_hot.hand_written(name, host, patched, n, 9)
    assert torch.equal(_out(hand, x), expected)


def test_a_constant_example_input_does_not_hide_the_layout():
    """A zero clip gives every joint the same token; the analysis uses a random clip of its shape."""
    model = _trained(layerscale_vpt.TrajectoryVPT, joint_major=True)
    torch.manual_seed(0)
    patched = hotpatch.apply(model, n=1, f=9, example_input=torch.zeros(1, 27, 17, 2))
    assert "(J·B, F, 32)" in patched.hotpatch_prune.extra_repr()
    assert any("example_input is constant" in note for note in patched.hotpatch_plan.notes)
    x = torch.randn(2, 27, 17, 2)
    torch.manual_seed(0)  # the same TRA initialisation
    reference = hotpatch.apply(model, n=1, f=9, example_input=x)
    assert torch.equal(_out(patched, x), _out(reference, x))


@pytest.mark.parametrize("name", list(author_vpts.ALL))
def test_keeping_every_frame_reproduces_the_original_exactly(name):
    """The README's "exactly": f = F with nearest/linear recovery (and merge/unmerge) gives the
    original's outputs, bit for bit."""
    model, x = author_vpts.build(name)
    reference = _out(model, x)
    prepared = hotpatch.prepare(model, example_input=x[:1])
    settings = [(p, r) for p in ("tpc", "uniform", "attention", "motion") for r in ("nearest", "linear")]
    for prune, recover in settings + [("merge", "unmerge"), ("merge-density", "unmerge-pure"), ("tpc", "unmerge")]:
        patched = prepared.patch(1, x.shape[1], prune=prune, recover=recover)
        assert torch.equal(_out(patched, x), reference), (prune, recover)
