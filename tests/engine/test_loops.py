"""Blocks found by the loop (issue 27, pattern 3): layers stored as ``ModuleList([attn, ff])`` and
called one by one by the parent's loop, the residual adds in the parent; each loop iteration is
one block (:class:`hotpatch.engine.loops.LoopBlock`), on the VPTs of tests/models/loop_vpts.py."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import hotpatch
import loop_vpts as vpts
import vpt_properties as props
from hotpatch.engine.loops import LoopBlock

F, N, KEEP = 27, 1, 9
SOURCES = {name: f"loop_vpts:{cls.__name__}" for name, cls in vpts.MODELS.items()}
DEPTH = {"loop": 4, "regressor": 4, "factorised": 3, "shared": 4, "shared_regressor": 4}


@pytest.mark.parametrize("name", list(vpts.MODELS))
def test_each_loop_iteration_is_one_block_under_the_containers_name(name):
    model, x = vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    plan = patched.hotpatch_plan
    names = [f"layers.{i}" for i in range(DEPTH[name])]
    assert [b.name for b in plan.blocks] == names
    assert all(b.kind == "temporal" for b in plan.blocks)
    calls = [n.target for n in patched.graph.nodes if n.op == "call_module" and n.target.startswith("layers.")]
    assert calls == names  # one call per iteration, nothing of the layers outside it
    assert all(isinstance(patched.get_submodule(b), LoopBlock) for b in names)
    assert f"blocks layers.0–{DEPTH[name] - 1} are loop iterations" in plan.notes[0]
    original = set(model.state_dict())
    assert original <= set(patched.state_dict())  # every original key, under its own name
    assert {k for k in patched.state_dict() if not k.startswith("hotpatch_")} == original


def test_a_module_of_the_parent_called_in_the_loop_stays_the_parents():
    model, x = vpts.build("shared")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    blocks = [patched.get_submodule(f"layers.{i}") for i in range(4)]
    assert all(b.hotpatch_outer_between is patched.between for b in blocks)  # one norm, shared
    assert not any(k.startswith("layers.") and ".between." in k for k in patched.state_dict())
    patched.train()
    with torch.no_grad():  # F.dropout(training=self.training) follows .train() inside the blocks too
        assert not torch.equal(patched(x), patched(x))
    patched.eval()
    with torch.no_grad():
        assert torch.equal(patched(x), patched(x))


def test_the_block_holds_the_containers_layers_and_iterates_like_it():
    model, x = vpts.build("regressor")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1], inplace=True)
    block = patched.get_submodule("layers.2")
    attn, ff, regress = block  # the parent's own loop unpacks it as before
    assert len(block) == 3 and block[2] is regress
    assert model.layers[2] is block  # in place: the model's container was replaced by the block
    with torch.no_grad():
        reference = hotpatch.apply(copy.deepcopy(model), n=N, f=F, recover="nearest", example_input=x[:1])(x)
        assert torch.equal(model(x), reference)  # the model's forward still runs its loop


def test_second_stream_is_pruned_with_the_tokens_and_recovered():
    model, x = vpts.build("regressor")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1], recover="linear")
    seen = {}
    for i in (1, 3):
        patched.get_submodule(f"layers.{i}").register_forward_pre_hook(
            lambda m, a, i=i: seen.__setitem__(i, [tuple(t.shape) for t in a]))
    with torch.no_grad():
        out = patched(x)
    assert out.shape == (2, F, 17, 3)
    assert seen[1] == seen[3] == [(2, KEEP, 51), (2, KEEP, 32)] or seen[1] == seen[3] == [(2, KEEP, 32), (2, KEEP, 51)]


def test_loop_blocks_survive_deepcopy_and_pickling():
    model, x = vpts.build("factorised")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    original = patched.get_submodule("layers.1")
    seen = {}
    hook = original.register_forward_hook(lambda m, a, o: seen.update(args=a, out=o))
    with torch.no_grad():
        out = patched(x)
    hook.remove()
    buffer = io.BytesIO()
    torch.save(original, buffer)
    buffer.seek(0)
    block = torch.load(buffer, weights_only=False)
    assert isinstance(block, LoopBlock) and block.state_dict().keys() == original.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(block(*seen["args"]), seen["out"])
        assert torch.equal(copy.deepcopy(patched)(x), out)


globals().update(props.property_tests(vpts.build, SOURCES, N, KEEP, F))
