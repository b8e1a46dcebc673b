"""The carried-tensors pass: a frame-carrying tensor made from the input after the cut (not from
pruned tokens) and read next to pruned tokens is gathered with the kept frames
(tests/models/skip_vpts.py: ``h = blk(h) + reinject(x)``)."""

from __future__ import annotations

import copy

import pytest
import torch

import hotpatch
import skip_vpts
from checks import frames_per_block
from hotpatch.engine.wrappers import GatherAt


def _gathers(patched) -> list[str]:
    return [n.target for n in patched.graph.nodes
            if n.op == "call_module" and isinstance(patched.get_submodule(n.target), GatherAt)]


def test_reinjected_input_is_gathered_once_per_use_after_the_cut():
    model, x = skip_vpts.build()
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    assert len(_gathers(patched)) == 2  # blocks 1 and 2 come after the cut; block 0 before it
    assert patched(x).shape == model(x).shape
    assert set(frames_per_block(patched, x).values()) == {27, 9}
    assert frames_per_block(patched, x)["blocks.2"] == 9


def test_gathered_reinjection_is_the_kept_frames_of_the_full_tensor():
    model, x = skip_vpts.build()
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear", prune="uniform")
    seen: dict[str, torch.Tensor] = {}
    first = patched.get_submodule(_gathers(patched)[0])
    first.register_forward_hook(lambda _m, args, out: seen.update(full=args[0], index=args[1], out=out))
    with torch.no_grad():
        patched(x)
    full, index, out = seen["full"], seen["index"], seen["out"]
    assert full.shape[1] == 27 and out.shape[1] == 9
    expected = torch.stack([full[b, index[b]] for b in range(full.shape[0])])
    assert torch.equal(out, expected)


@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_the_original(recover):
    model, x = skip_vpts.build()
    patched = hotpatch.apply(model, n=1, f=27, example_input=x[:1], recover=recover)
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


def test_original_untouched_gradients_and_round_trip(tmp_path):
    model, x = skip_vpts.build()
    before = copy.deepcopy(model.state_dict())
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="tra")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    patched.train()
    patched(x).square().mean().backward()
    names = dict(model.named_parameters())
    missing = [k for k, p in patched.named_parameters() if k in names and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []
    patched.eval()
    path = tmp_path / "reinject.pt"
    hotpatch.save(patched, path, source={"class": "skip_vpts:ReinjectFormer", "kwargs": {}})
    loaded = hotpatch.load(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), patched(x))
