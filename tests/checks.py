"""Helpers shared by the tests that check patched models (not a test module)."""

from __future__ import annotations

import operator

import pytest
import torch

from hotpatch.engine.rewrite import stage_pruners


def frames_seen(shape, axes, batch: int, joints: int = 17) -> int:
    """Frames in a block input of layout ``axes`` (from the plan) at batch size ``batch``."""
    i = next(i for i, a in enumerate(axes) if a is not None and "F" in a)
    size = shape[i]
    if "B" in axes[i]:
        size //= batch
    if "J" in axes[i]:
        size //= joints
    for atom in axes[i]:  # fixed sizes merged with the frames (hypotheses: B·H·F)
        if type(atom) is not str:
            size //= int(atom)
    return size


def call_with(model, x):
    """``model`` on ``x``: one tensor, a tuple of positional inputs or a dict of keyword inputs."""
    if isinstance(x, dict):
        return model(**x)
    return model(*x) if isinstance(x, (tuple, list)) else model(x)


def batch_of(x) -> int:
    """The batch size of ``x`` (a tensor, or a tuple / dict of inputs with the batch on axis 0)."""
    first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, (tuple, list)) else x
    return first.shape[0]


def block_input_shapes(patched, x, blocks=None) -> dict[str, tuple[int, ...]]:
    """Shape of the first input of each block (default: every block of the plan) in one forward
    of ``patched`` on ``x`` (a tensor, or a tuple / dict of the model's inputs), read with
    forward hooks."""
    import torch

    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        patched.get_submodule(b.name).register_forward_hook(
            lambda _m, args, _out, name=b.name: seen.__setitem__(name, tuple(args[0].shape)))
        for b in (patched.hotpatch_plan.blocks if blocks is None else blocks)
    ]
    try:
        with torch.no_grad():
            call_with(patched, x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def frames_per_block(patched, x, blocks=None, joints: int = 17) -> dict[str, int]:
    """Frames the first input of each block (default: every block of the plan) carries in one
    forward of ``patched`` on ``x``, read with forward hooks."""
    plan = patched.hotpatch_plan
    nodes = {n.name: n for n in patched.graph.nodes}
    blocks = plan.blocks if blocks is None else blocks
    axes = {}
    for block in blocks:
        arg = nodes[block.node].args[0]
        while arg.name not in plan.facts:  # a pruned or recovered input: follow it to the source
            source = arg.args[0]
            if arg.target is operator.getitem and source.op == "call_module" and isinstance(arg.args[1], int):
                arg = source.args[arg.args[1]]  # output i of a pruner that prunes several tensors is its input i
            else:
                arg = source
        axes[block.name] = plan.facts[arg.name].axes
    shapes = block_input_shapes(patched, x, blocks)
    return {name: frames_seen(shape, axes[name], batch_of(x), joints) for name, shape in shapes.items()}


def state_of(model) -> dict:
    """A copy of ``model``'s state_dict, to check later that patching left it unchanged."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, state, x, before) -> None:
    """``model`` still has the ``state`` of :func:`state_of` and still maps ``x`` to ``before``."""
    import torch

    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(model(x), before)


onnx_missing = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="ONNX export needs the export extra: pip install 'hotpatch[export]'",
)


def stage_indices(patched, x) -> list[torch.Tensor]:
    """The index (original frames) each stage returns."""
    out, handles = [], []
    for _, m in stage_pruners(patched):
        handles.append(m.register_forward_hook(lambda _m, _a, o: out.append(o[-1].clone())))
    with torch.no_grad():
        patched(x)
    for h in handles:
        h.remove()
    return out


def build_and_patch(models, name: str, **settings):
    """(model, clip, patched) for the test VPT ``name`` of ``models`` (a module of tests/models with
    ``build``), patched with ``settings`` on its first clip."""
    import hotpatch

    model, x = models.build(name)
    return model, x, hotpatch.apply(model, example_input=x[:1], **settings)
