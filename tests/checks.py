"""Helpers shared by the tests that check patched models (not a test module)."""

from __future__ import annotations


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


def frames_per_block(patched, x, blocks=None) -> dict[str, int]:
    """Frames the first input of each block (default: every block of the plan) carries in one
    forward of ``patched`` on ``x``, read with forward hooks."""
    import torch

    plan = patched.hotpatch_plan
    nodes = {n.name: n for n in patched.graph.nodes}
    seen: dict[str, int] = {}
    hooks = []
    for block in plan.blocks if blocks is None else blocks:
        arg = nodes[block.node].args[0]
        while arg.name not in plan.facts:  # a pruned or recovered input: follow it to the source
            arg = arg.args[0]
        axes = plan.facts[arg.name].axes

        def hook(_m, args, _out, name=block.name, axes=axes):
            seen[name] = frames_seen(args[0].shape, axes, x.shape[0])

        hooks.append(patched.get_submodule(block.name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            patched(x)
    finally:
        for h in hooks:
            h.remove()
    return seen
