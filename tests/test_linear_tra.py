"""``recover="linear-tra"``: linear recovery at initialisation, a learnable correction after."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import author_vpts
from hotpatch.evaluate import untrained_recovery
from hotpatch.recover import LinearRecover, LinearTRA


def test_module_equals_linear_recovery_at_init_and_learns_a_correction():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 17, 16)
    index = torch.tensor([[0, 3, 9, 14, 19], [1, 2, 5, 11, 18], [0, 4, 8, 12, 16]])
    rec = LinearTRA(16, 20, heads=4)
    assert torch.equal(rec(x, index), LinearRecover(20)(x, index))
    rec(x, index).pow(2).mean().backward()
    assert rec.proj.weight.grad.abs().sum() > 0  # the zero projection is where learning starts
    opt = torch.optim.SGD(rec.parameters(), lr=0.5)
    opt.step()
    assert not torch.equal(rec(x, index), LinearRecover(20)(x, index))


@pytest.mark.parametrize("name", ["mixste", "motionbert", "mhformer", "poseformer"])
def test_patched_model_equals_linear_recovery_at_init(name):
    model, x = author_vpts.build(name)
    prepared = hotpatch.prepare(model, example_input=x[:1])
    linear = prepared.patch(1, 9, recover="linear")
    refined = prepared.patch(1, 9, recover="linear-tra")
    with torch.no_grad():
        assert torch.equal(refined(x), linear(x))
    new = {k for k in refined.state_dict() if k.startswith("hotpatch_recover")}
    assert new and all(k.split(".")[-2] in {"queries", "q", "k", "v", "proj"} or k.endswith("queries") for k in new)
    assert not untrained_recovery(refined)  # zero-retraining is meaningful: no warning


def test_fine_tuning_lowers_the_error_of_linear_recovery():
    torch.manual_seed(0)
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear-tra")
    target = model(x).detach()
    params = [p for n, p in patched.named_parameters() if n.startswith("hotpatch_recover")]
    opt = torch.optim.Adam(params, lr=1e-2)
    start = (patched(x) - target).pow(2).mean().item()
    for _ in range(30):
        opt.zero_grad()
        loss = (patched(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * start


def test_save_load_round_trip(tmp_path):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, recover="linear-tra")
    with torch.no_grad():
        for p in patched.hotpatch_recover.parameters():
            p.normal_(0, 0.05)
    hotpatch.save(patched, tmp_path / "p.pt", source={"class": "author_vpts:MixSTELike", "kwargs": {}})
    loaded = hotpatch.load(tmp_path / "p.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), patched(x))
    assert loaded.hotpatch_config["recover"] == "linear-tra"
