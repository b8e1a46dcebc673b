"""Patched models compile without graph breaks (``torch.compile(fullgraph=True)``)."""

from __future__ import annotations

import shutil

import pytest
import torch

import hotpatch
import vpts

# Every model, pruner and recoverer at least once; the outputs of a compiled graph that
# runs the same aten ops (aot_eager) must equal eager's to float rounding (atol 1e-6).
CASES = [
    ("mixste", dict(prune="tpc", recover="tra")),
    ("motionbert", dict(prune="tpc", recover="linear", prune_pos_embed=True)),
    ("mhformer", dict(prune="uniform", recover="nearest")),
    ("poseformer", dict(prune="attention", recover="linear")),
    ("center_frame", dict(prune="motion", recover="tra")),
    ("mixste", dict(prune="uniform", pipeline="seq2frame")),
]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name, settings", CASES, ids=[f"{n}-{'-'.join(map(str, s.values()))}" for n, s in CASES])
def test_fullgraph_compile_matches_eager(name, settings):
    model, x = vpts.build(name)
    patched = hotpatch.apply(model, n=1, f=9, **settings).eval()
    with torch.no_grad():
        for p in patched.parameters():  # a trained-looking TRA / pos-embed, not zeros
            if not p.any():
                p.normal_(0, 0.1)
        compiled = torch.compile(patched, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), patched(x), rtol=0, atol=1e-6)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile's inductor backend needs a C++ compiler on CPU")
def test_inductor_compile_of_a_patched_model():
    model, x = vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear").eval()
    with torch.no_grad():
        compiled = torch.compile(patched, fullgraph=True)
        torch.testing.assert_close(compiled(x), patched(x), rtol=1e-4, atol=1e-4)
