"""Issue 27 item 7: other people's models (tests/corpus/README.md). Each is patched with the
properties our own test VPTs have (tests/vpt_properties.py), or refused cleanly: a
``HotpatchError`` raised before the rewrite (a ``PatchCheckError``, a failure of the check after
it, is an analysis bug), at most 600 characters, naming the construct."""

from __future__ import annotations

import functools

import pytest
import torch

import hotpatch
from checks import assert_unchanged, frames_per_block, state_of
from corpus_models import FRAMES
from corpus_table import ENTRIES, KEEP, N, PATCH
from hotpatch.errors import HotpatchError, PatchCheckError
from thirdparty import require


def _params(entries):
    return [pytest.param(e, id=e.name, marks=[
        pytest.mark.xfail(strict=True, raises=e.today.error, reason=e.today.reason)] if e.today else [])
        for e in entries]


ALL = pytest.mark.parametrize("entry", _params(ENTRIES))
PATCHING = pytest.mark.parametrize("entry", _params([e for e in ENTRIES if e.patches]))


@functools.cache
def _prepared(name: str):
    """(model, clips, hotpatch.prepare(model) or the HotpatchError it raised), once per process."""
    from corpus_table import BY_NAME

    entry = BY_NAME[name]
    require(entry.package)
    model, x = entry.build()
    try:
        return model, x, hotpatch.prepare(model, example_input=x[:1])
    except HotpatchError as exc:
        return model, x, exc


def _patched(entry, f: int = KEEP, **settings):
    """(model, clips, patched) of ``entry``; skipped if it was refused with an accepted refusal."""
    model, x, prepared = _prepared(entry.name)
    try:
        if isinstance(prepared, HotpatchError):
            raise prepared
        return model, x, prepared.patch(N, f, **settings)
    except HotpatchError as exc:  # refused by prepare or by patch (no temporal blocks)
        if entry.refuses_cleanly(exc):
            pytest.skip(f"refused cleanly: {exc}")
        raise


@ALL
def test_patched_or_refused_cleanly(entry):
    require(entry.package)
    model, x = entry.build()
    with torch.no_grad():
        before = model(x)
    state = state_of(model)
    try:
        patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    except PatchCheckError as exc:  # the post-rewrite check caught what the analysis missed
        pytest.fail(f"PatchCheckError (an analysis bug, issue 27 item 2): {exc}")
    except HotpatchError as exc:
        if not any(r.matches(exc) for r in entry.accept if r != PATCH):
            if entry.today and not entry.today.holds(exc):
                pytest.fail(f"main's error is no longer the recorded one ({entry.today.reason}): "
                            f"{type(exc).__name__}: {exc}")
            raise  # not a refusal the corpus accepts for this model: fail with main's own error
        assert len(str(exc)) <= 600, f"{len(str(exc))} characters: {exc}"
        assert_unchanged(model, state, x, before)
        return
    assert entry.patches, f"patched, but the corpus expects a refusal: {entry.accept}"
    with torch.no_grad():
        out = patched(x)
    assert out.shape == before.shape and torch.isfinite(out).all()
    assert_unchanged(model, state, x, before)


@PATCHING
def test_blocks_after_the_cut_see_f_tokens(entry):
    model, x, patched = _patched(entry)
    names = [b.name for b in patched.hotpatch_plan.blocks]
    after = names[names.index(patched.hotpatch_sites.cut_block):]
    assert after and len(after) < len(names)
    seen = frames_per_block(patched, x, joints=x.shape[2])
    assert seen == {b: KEEP if b in after else x.shape[1] for b in names}, seen


@PATCHING
def test_gradients_reach_every_original_parameter(entry):
    model, x, patched = _patched(entry)
    patched.train()(x).square().mean().backward()
    grads = {k: p.grad for k, p in patched.named_parameters()}
    assert not [k for k, _ in model.named_parameters() if grads.get(k) is None]


@PATCHING
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(entry, recover):
    model, x, patched = _patched(entry, f=FRAMES, recover=recover)
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


@PATCHING
def test_save_load_round_trip(entry, tmp_path):
    _, x, patched = _patched(entry)
    with torch.no_grad():
        for p in patched.parameters():  # the new modules too: not their initial values
            p.add_(0.01 * torch.randn_like(p))
    path = hotpatch.save(patched, tmp_path / "patched.pt", source={"class": entry.source, "kwargs": {}})
    with torch.no_grad():
        assert torch.equal(hotpatch.load(path)(x), patched.eval()(x))

