"""What must hold for every test VPT that hotpatch patches (issue 19), as plain functions the
per-pattern test files call (not a test module)."""

from __future__ import annotations

import copy

import pytest
import torch

import hotpatch
from checks import frames_per_block
from hotpatch.errors import HotpatchError, PatchCheckError

REFUSAL_LIMIT = 600  # characters a refusal may take (issue 27)


def apply_or_refusal(model, **settings):
    """``hotpatch.apply(model, **settings)``, or the refusal it raises (a ``HotpatchError``, returned).

    Fails the test on a :class:`~hotpatch.errors.PatchCheckError`, a failure after the rewrite:
    every model must be patched or refused by the analysis before the rewrite, so one is a bug in
    the analysis. Fails too on a refusal over 600 characters."""
    try:
        return hotpatch.apply(model, **settings)
    except PatchCheckError as exc:
        pytest.fail(f"the rewrite discovered what the analysis should have refused (a bug): {exc}")
    except HotpatchError as exc:
        assert len(str(exc)) <= REFUSAL_LIMIT, f"a refusal of {len(str(exc))} characters: {exc}"
        return exc


def assert_refused(refusal, error: type, *names: str) -> None:
    """``refusal`` (from :func:`apply_or_refusal`) is an ``error`` whose one-line message names
    every one of ``names`` (the construct and its layer)."""
    assert isinstance(refusal, error), f"expected {error.__name__}, got {refusal!r}"
    text = str(refusal)
    assert "\n" not in text and len(text) <= REFUSAL_LIMIT
    missing = [n for n in names if n not in text]
    assert not missing, f"{missing} not named in: {text}"


def patch_keeps_original(build, name: str, n: int, f: int) -> None:
    """Output shape kept, finite; the original's state_dict bit-identical and outputs equal."""
    model, x = build(name)
    with torch.no_grad():
        before = model(x)
    state = copy.deepcopy(model.state_dict())
    patched = hotpatch.apply(model, n=n, f=f, example_input=x[:1])
    with torch.no_grad():
        out, after = patched(x), model(x)
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert torch.equal(after, before)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def blocks_see_f(build, name: str, n: int, f: int, frames: int) -> None:
    """Blocks before the cut see F frames, the blocks from the cut on see f (forward hooks)."""
    model, x = build(name)
    patched = hotpatch.apply(model, n=n, f=f, example_input=x[:1])
    names = [b.name for b in patched.hotpatch_plan.blocks]
    after = names[names.index(patched.hotpatch_sites.cut_block):]
    seen = frames_per_block(patched, x)
    assert after and len(after) < len(names)
    assert seen == {b: f if b in after else frames for b in names}, seen


def gradients_reach_every_parameter(build, name: str, n: int, f: int) -> None:
    model, x = build(name)
    patched = hotpatch.apply(model, n=n, f=f, example_input=x[:1]).train()
    patched(x).square().mean().backward()
    grads = dict((k, p.grad) for k, p in patched.named_parameters())
    missing = [k for k, _ in model.named_parameters() if grads.get(k) is None]
    assert not missing, missing


def all_frames_reproduce(build, name: str, n: int, frames: int, recover: str, prune: str = "tpc") -> None:
    model, x = build(name)
    patched = hotpatch.apply(model, n=n, f=frames, prune=prune, recover=recover, example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


def merge_is_per_sample(build, name: str, n: int, f: int) -> None:
    """Token merging in this host's layout: shape kept, finite, each sample as alone (to 1e-5)."""
    model, x = build(name)
    x = torch.cat([x, x.flip(0)]) if x.shape[0] > 1 else torch.cat([x, 2 * x])
    patched = hotpatch.apply(model, n=n, f=f, prune="merge", recover="unmerge", example_input=x[:1]).eval()
    with torch.no_grad():
        batch = patched(x)
        assert batch.shape == model(x).shape and torch.isfinite(batch).all()
        for i in range(x.shape[0]):
            torch.testing.assert_close(batch[i:i + 1], patched(x[i:i + 1]), rtol=0, atol=1e-5)


def save_load_round_trip(build, name: str, n: int, f: int, source: str, tmp_path) -> None:
    model, x = build(name)
    patched = hotpatch.apply(model, n=n, f=f, example_input=x[:1])
    with torch.no_grad():
        for p in patched.parameters():  # the new modules too: not their initial values
            p.add_(0.01 * torch.randn_like(p))
    path = hotpatch.save(patched, tmp_path / "patched.pt", source={"class": source, "kwargs": {}})
    directory = hotpatch.save_pretrained(patched, tmp_path / "patched", source={"class": source, "kwargs": {}})
    with torch.no_grad():
        for loaded in (hotpatch.load(path), hotpatch.from_pretrained(directory)):
            assert torch.equal(loaded(x), patched.eval()(x))


def capture(patched, x, outputs: dict[str, str] = {}, inputs: dict[str, tuple[str, int]] = {}) -> dict:
    """One forward of ``patched`` on ``x``; returns the outputs of the modules named in
    ``outputs`` (label -> module) and argument i of those in ``inputs`` (label -> (module, i)).
    The pruner's index is under ``"index"``."""
    got: dict = {}
    hooks = [patched.hotpatch_prune.register_forward_hook(lambda m, a, o: got.__setitem__("index", o[-1]))]
    for label, name in outputs.items():
        hooks.append(patched.get_submodule(name).register_forward_hook(lambda m, a, o, k=label: got.__setitem__(k, o)))
    for label, (name, i) in inputs.items():
        hooks.append(patched.get_submodule(name).register_forward_pre_hook(lambda m, a, k=label, i=i: got.__setitem__(k, a[i])))
    try:
        with torch.no_grad():
            patched(x)
    finally:
        for h in hooks:
            h.remove()
    return got


def property_tests(build, sources: dict[str, str], n: int, f: int, frames: int) -> dict:
    """The tests every new test VPT must pass, parametrized over ``sources`` (name -> the
    ``module:Class`` it is saved as); a test file adds them with ``globals().update(...)``."""
    names = pytest.mark.parametrize("name", list(sources))

    @names
    def test_patch_keeps_the_original(name):
        patch_keeps_original(build, name, n, f)

    @names
    def test_blocks_after_the_cut_see_f_tokens(name):
        blocks_see_f(build, name, n, f, frames)

    @names
    def test_gradients_reach_every_original_parameter(name):
        gradients_reach_every_parameter(build, name, n, f)

    @names
    @pytest.mark.parametrize("prune, recover", [("tpc", "nearest"), ("tpc", "linear"), ("merge", "unmerge")])
    def test_all_frames_kept_reproduces_the_original(name, prune, recover):
        all_frames_reproduce(build, name, n, frames, recover, prune)

    @names
    def test_token_merging_is_per_sample(name):
        merge_is_per_sample(build, name, n, f)

    @names
    def test_save_load_round_trip(name, tmp_path):
        save_load_round_trip(build, name, n, f, sources[name], tmp_path)

    tests = (test_patch_keeps_the_original, test_blocks_after_the_cut_see_f_tokens,
             test_gradients_reach_every_original_parameter, test_all_frames_kept_reproduces_the_original,
             test_token_merging_is_per_sample, test_save_load_round_trip)
    return {t.__name__: t for t in tests}
