"""The recovery pass: seq2seq recovers every tensor that leaves the pruned region right after the
last block and its norm, to all F frames; seq2frame returns the centre frame instead."""

from __future__ import annotations

import torch

import author_vpts
import hotpatch
from hotpatch.engine.wrappers import CenterSelect, RecoverAt


def _calls(patched, kind) -> list[str]:
    return [n.target for n in patched.graph.nodes
            if n.op == "call_module" and isinstance(patched.get_submodule(n.target), kind)]


def test_recovery_follows_the_final_norm_and_restores_all_frames():
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="linear")
    (name,) = _calls(patched, RecoverAt)
    node = next(n for n in patched.graph.nodes if n.target == name)
    assert node.args[0].name == patched.hotpatch_sites.recover_after  # right after the norm's output
    seen = {}
    patched.get_submodule(name).register_forward_hook(lambda _m, args, out: seen.update(inp=args[0], out=out))
    with torch.no_grad():
        patched(x)
    assert seen["out"].numel() == seen["inp"].numel() * 27 // 9


def test_nearest_recovery_puts_each_kept_token_back_at_its_frame():
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], recover="nearest", prune="uniform")
    (name,) = _calls(patched, RecoverAt)
    module = patched.get_submodule(name)
    seen = {}
    module.register_forward_hook(lambda _m, args, out: seen.update(inp=args[0], index=args[1], out=out))
    with torch.no_grad():
        patched(x)
    tokens = module.layout.to_canonical(seen["inp"], 9)  # (B, 9, ...) in MixSTE's (B·J, F, C) layout
    frames = module.layout.to_canonical(seen["out"], 27)  # (B, 27, ...)
    index = seen["index"]
    assert frames.shape[:2] == (2, 27)
    for b in range(2):
        assert torch.equal(frames[b, index[b]], tokens[b])


def test_seq2frame_selects_the_centre_frame_and_recovers_nothing():
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1], pipeline="seq2frame")
    assert _calls(patched, RecoverAt) == [] and len(_calls(patched, CenterSelect)) == 1
    assert patched(x).shape == (2, 1, 17, 3)
