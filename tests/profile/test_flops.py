"""hotpatch.profile.flops: counting on fake tensors (shapes, no arithmetic) gives exactly the
counts of a run on real values, on every test VPT, plain and patched."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor

import author_vpts
import hotpatch
import wild_vpts
from hotpatch.profile import flops

MODELS = [("author", n) for n in author_vpts.ALL] + [("wild", n) for n in wild_vpts.ALL]
PATCHABLE = list(author_vpts.ALL) + [n for n in wild_vpts.PATCHABLE]
NEEDS_VALUES = {"guarded_encoder"}  # branches on a tensor's value: fake tensors cannot run it


def _build(family: str, name: str) -> tuple[nn.Module, torch.Tensor]:
    return (author_vpts if family == "author" else wild_vpts).build(name)


@pytest.mark.parametrize("family,name", MODELS, ids=[f"{f}:{n}" for f, n in MODELS])
def test_fake_and_real_counts_are_equal(family, name, monkeypatch):
    model, x = _build(family, name)
    if name in NEEDS_VALUES:
        with pytest.raises(Exception, match="DataDependent"):
            flops.probe(model, (x,), fake=True)
        monkeypatch.setattr(flops, "worth_faking", lambda *_: True)  # auto: tries fake, then real
        assert flops.probe(model, (x,)) == flops.probe(model, (x,), fake=False)
        return
    models = [model]
    if name in PATCHABLE:
        models.append(hotpatch.apply(model, n=1, f=9, example_input=x).eval())
    for m in models:
        real = flops.probe(m, (x,), fake=False)
        assert real and list(flops.probe(m, (x,), fake=True).items()) == list(real.items())  # per module, in order
        torch_real = flops.count("torch", m, (x,), fake=False)
        assert torch_real.value and flops.count("torch", m, (x,), fake=True).value == torch_real.value


class Recorder(nn.Module):
    """Records the type of its input; branches on a value if ``branch``."""

    def __init__(self, branch: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.branch = branch
        self.seen: list[type] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(type(x))
        if self.branch and bool(x.sum() > 0):  # needs a value: fails on fake tensors
            return self.lin(self.lin(x))
        return self.lin(x)


def test_auto_fakes_a_paper_size_model(monkeypatch):
    model, x = Recorder(), torch.ones(1, 3, 4)
    assert flops.probe(model, (x,)) == {"lin": 3 * 4 * 4} and model.seen == [torch.Tensor]  # tiny: real
    monkeypatch.setattr(flops, "worth_faking", lambda *_: True)
    assert flops.probe(model, (x,)) == {"lin": 3 * 4 * 4} and model.seen[-1] is FakeTensor


def test_auto_falls_back_to_real_values_when_the_fake_run_needs_one(monkeypatch):
    monkeypatch.setattr(flops, "worth_faking", lambda *_: True)
    model, x = Recorder(branch=True), torch.ones(1, 3, 4)
    assert flops.probe(model, (x,)) == {"lin": 2 * 3 * 4 * 4}  # the value-dependent branch, counted
    assert model.seen == [FakeTensor, torch.Tensor]
    with pytest.raises(Exception):
        flops.probe(model, (x,), fake=True)  # forced fake: the failure is not hidden


def test_profile_of_a_paper_size_recipe_counts_without_arithmetic():
    from hotpatch.models import mixste

    model = mixste.build(depth=2).eval()  # full width and F = 243: faked (worth_faking)
    x = torch.randn(1, 243, 17, 2)
    seen: list[type] = []
    hook = model.register_forward_pre_hook(lambda _m, args: seen.append(type(args[0])))  # copied with the model
    try:
        result = hotpatch.profile(model, x, counters="paper,torch", fps=False, memory=False)
    finally:
        hook.remove()
    assert seen == [FakeTensor, FakeTensor]  # the paper probe and the torch counter
    assert result.flops["paper"].value == 2 * sum(flops.probe(model, (x,), fake=False).values())
    assert result.flops["torch"].value == flops.count("torch", model, (x,), fake=False).value
