"""Patched models compile without graph breaks (``torch.compile(fullgraph=True)``)."""

from __future__ import annotations

import shutil

import pytest
import torch

import hotpatch
from hotpatch.errors import ConfigError
import author_vpts

# Every model, pruner and recoverer at least once; the outputs of a compiled graph that
# runs the same aten ops (aot_eager) must equal eager's to float rounding (atol 1e-6).
CASES = [
    ("mixste", dict(prune="tpc", recover="tra")),
    ("motionbert", dict(prune="tpc", recover="linear", prune_pos_embed=True)),
    ("mhformer", dict(prune="uniform", recover="nearest")),
    ("poseformer", dict(prune="attention", recover="linear")),
    ("center_frame", dict(prune="motion", recover="tra")),
    ("mixste", dict(prune="uniform", pipeline="seq2frame")),
    ("mixste", dict(n=[1, 2], f=[12, 6], prune="tpc", pipeline="seq2frame")),  # two stages, centre kept
    ("motionbert", dict(n=[1, 2], f=[12, 6], prune="motion", recover="linear-tra")),
    ("mixste", dict(prune="merge", recover="unmerge")),  # token merging and its matched recovery
    ("motionbert", dict(n=[1, 2], f=[12, 6], prune="merge-density", recover="unmerge-pure")),  # sizes composed
    ("mixste", dict(n=[1, 2], f=[12, 6], prune="merge", pipeline="seq2frame")),  # centre kept alone
]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name, settings", CASES, ids=[f"{n}-{'-'.join(map(str, s.values()))}" for n, s in CASES])
def test_fullgraph_compile_matches_eager(name, settings):
    model, x = author_vpts.build(name)
    settings = {"n": 1, "f": 9, **settings}
    patched = hotpatch.apply(model, **settings).eval()
    with torch.no_grad():
        for p in patched.parameters():  # a trained-looking TRA / pos-embed, not zeros
            if not p.any():
                p.normal_(0, 0.1)
        compiled = torch.compile(patched, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), patched(x), rtol=0, atol=1e-6)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile's inductor backend needs a C++ compiler on CPU")
@pytest.mark.parametrize("settings", [dict(recover="linear"), dict(prune="merge", recover="unmerge")],
                         ids=["tpc-linear", "merge-unmerge"])
def test_inductor_compile_of_a_patched_model(settings):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, **settings).eval()
    with torch.no_grad():
        compiled = torch.compile(patched, fullgraph=True)
        torch.testing.assert_close(compiled(x), patched(x), rtol=1e-4, atol=1e-4)


def test_profile_times_the_compiled_models(monkeypatch, capsys):
    import importlib

    from hotpatch.cli import main

    profile_mod = importlib.import_module("hotpatch.profile")  # the module, not the function of that name

    calls = []
    real = torch.compile

    def fake_compile(model, *, mode=None, fullgraph=False):  # inductor is slow on CPU: capture only
        calls.append((type(model).__name__, mode, fullgraph))
        return real(model, backend="eager", fullgraph=fullgraph)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear")
    cmp = profile_mod.compare(model, patched, x[:1], counters=("paper",), repeats=2, warmup=0, memory=False,
                              compile="reduce-overhead")
    assert [c[1:] for c in calls] == [("reduce-overhead", True)] * 2
    assert cmp.before.compile == cmp.after.compile == "reduce-overhead"
    assert cmp.before.compile_seconds > 0 and cmp.after.compile_seconds > 0 and cmp.speedup > 0
    assert main(["--quiet", "profile", "author_vpts:MixSTELike", "--set", "depth=2", "--n", "1", "--f", "9",
                 "--counters", "paper", "--repeats", "2", "--warmup", "0", "--compile"]) == 0
    out = capsys.readouterr().out
    assert "compiled (default)" in out and "Compile seconds" in out and calls[-1][1:] == ("default", True)
    with pytest.raises(ConfigError, match="compile=.fast."):
        profile_mod.profile(model, x[:1], compile="fast")


def test_lift_with_a_compiled_model_gives_the_same_poses(monkeypatch):
    import numpy as np

    from hotpatch.lift import lift

    modes, real = [], torch.compile

    def fake_compile(model, *, mode=None, fullgraph=False):
        modes.append((mode, fullgraph))
        return real(model, backend="aot_eager", fullgraph=fullgraph)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, _ = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear")
    inputs = np.random.default_rng(0).normal(size=(70, 17, 2)).astype(np.float32)
    eager = lift(patched, inputs, frames=27, batch_size=2)
    compiled = lift(patched, inputs, frames=27, batch_size=2, compile="max-autotune")
    assert modes == [("max-autotune", True)]
    np.testing.assert_allclose(compiled.poses, eager.poses, atol=1e-6)
