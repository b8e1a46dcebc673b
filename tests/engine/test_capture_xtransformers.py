"""Capture by running on third-party code (issue 27): x-transformers' ``Encoder`` with rotary
positions computed in ``forward`` from the clip length, in tests/models/xtransformers_lifter.py.
Its positions reach the attention layers after the cut as the kept frames' rows, as does the
shell's key padding mask. x-transformers is pinned in the ``corpus`` extra (tests/corpus/README.md)."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import vpt_properties as props

pytest.importorskip("x_transformers")
import xtransformers_lifter as lifter  # noqa: E402

F, N, KEEP = 27, 2, 9
LATER = "encoder.layers.4.1"  # the attention of layer 3: after the cut at n=2


def test_rotary_positions_and_mask_follow_the_kept_frames():
    model, x = lifter.build()
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert [b.name for b in patched.hotpatch_plan.blocks] == [f"encoder.layers.{i}.1" for i in (0, 2, 4, 6)]
    seen = {}
    patched.get_submodule(LATER).register_forward_pre_hook(lambda m, a, k: seen.update(k), with_kwargs=True)
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: seen.update(index=o[-1]))
    with torch.no_grad():
        patched(x)
        freqs = model.encoder.rotary_pos_emb(torch.arange(F))[0]  # (1, F, d)
    index = seen["index"]
    assert torch.equal(seen["rotary_pos_emb"][0], freqs[0][index])
    mask = torch.ones(2, F, dtype=torch.bool)
    mask[:, ::5] = False
    assert torch.equal(seen["mask"], mask.gather(1, index))
    notes = patched.hotpatch_plan.notes
    assert any("reads the device ('cpu') while tracing" in n for n in notes)


globals().update(props.property_tests(lifter.build, {"xt": "xtransformers_lifter:XTLifter"}, N, KEEP, F))
