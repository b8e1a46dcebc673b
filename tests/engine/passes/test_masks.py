"""Masks and position tables computed in ``forward`` from the clip length describe the kept
frames after the cut (issue 27, item 6; passes "masks and tables" and "per-frame contexts"), on
the VPTs of tests/models/capture_vpts.py. The rule: the original value at each sample's kept
frames (``index``), never the value made again for f frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import capture_vpts as vpts
import hotpatch
import vpt_properties as props
from hotpatch.engine.wrappers import GatherPairs

F, N, KEEP = 27, 2, 9
HEADS = 4


def _masks_seen(patched, x, kwarg: str) -> dict[str, torch.Tensor]:
    seen = {}
    for name in ("blocks.0", "blocks.2", "blocks.3"):
        patched.get_submodule(name).register_forward_pre_hook(
            lambda m, a, k, name=name: seen.__setitem__(name, k[kwarg]), with_kwargs=True)
    seen.update(props.capture(patched, x))
    return seen


def test_padding_mask_from_numpy_follows_the_kept_frames():
    model, x = vpts.build("numpy_mask")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    seen = _masks_seen(patched, x, "key_padding_mask")
    full = torch.from_numpy(np.arange(F) % 5 == 0)[None].repeat(2, 1)  # m[::5] = 0: frames 0, 5, 10, ...
    index = seen["index"]
    assert torch.equal(seen["blocks.0"], full)
    for name in ("blocks.2", "blocks.3"):
        assert torch.equal(seen[name], full.gather(1, index)), name
    # the rule matters: the mask made again for f frames would mark kept tokens 0, 5 instead
    assert not all(torch.equal(full[b, index[b]], full[b, :KEEP]) for b in range(2))


def test_sine_table_rows_are_the_kept_frames_positions():
    model, x = vpts.build("sine_table")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    seen = {}
    gathers = [m for name, m in patched.named_modules() if name.startswith("hotpatch_gather")]
    assert len(gathers) == 1  # one table, one stage
    gathers[0].register_forward_hook(lambda m, a, o: seen.update(table=o))
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: seen.update(index=o[-1]))
    with torch.no_grad():
        patched(x)
    index = seen["index"]
    full = model.scale * vpts.sine_table(2, F, vpts.C)
    assert torch.equal(seen["table"], full[torch.arange(2)[:, None], index])


def test_band_attn_mask_is_gathered_per_sample_for_each_head():
    model, x = vpts.build("band_mask")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    seen = _masks_seen(patched, x, "attn_mask")
    t = torch.arange(F)
    full = (t[None, :] - t[:, None]).abs() > model.band
    index = seen["index"]
    assert torch.equal(seen["blocks.0"], full)
    expected = torch.stack([full[index[b]][:, index[b]] for b in range(2)]).repeat_interleave(HEADS, dim=0)
    assert seen["blocks.2"].shape == (2 * HEADS, KEEP, KEEP)
    assert torch.equal(seen["blocks.2"], expected) and torch.equal(seen["blocks.3"], expected)
    assert any("its kept frames' rows and columns are gathered per sample" in n for n in patched.hotpatch_plan.notes)


def test_causal_mask_is_its_first_f_by_f_entries_for_every_sample():
    model, x = vpts.build("causal_mask")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    seen = _masks_seen(patched, x, "attn_mask")
    full = torch.triu(torch.ones(F, F, dtype=torch.bool), diagonal=1)
    assert torch.equal(seen["blocks.2"], full[:KEEP, :KEEP])
    for b in range(2):  # the same as gathering: the kept frames are sorted in time
        i = seen["index"][b]
        assert torch.equal(full[i][:, i], seen["blocks.2"])
    assert not any(isinstance(m, GatherPairs) for m in patched.modules())


def test_band_mask_in_two_stages():
    model, x = vpts.build("band_mask")
    patched = hotpatch.apply(model, n=[1, 2], f=[15, 9], example_input=x[:1])
    shapes = {}
    for name in ("blocks.1", "blocks.2"):
        patched.get_submodule(name).register_forward_pre_hook(
            lambda m, a, k, name=name: shapes.__setitem__(name, tuple(k["attn_mask"].shape)), with_kwargs=True)
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
    assert shapes == {"blocks.1": (2 * HEADS, 15, 15), "blocks.2": (2 * HEADS, 9, 9)}


def test_table_made_after_the_cut_is_made_for_all_frames_then_gathered():
    model, x = vpts.build("late_table")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    seen: dict = {"positions": [], "gathered": []}
    patched.time.register_forward_pre_hook(lambda m, a: seen["positions"].append(a[0]))
    for name, m in patched.named_modules():
        if name.startswith("hotpatch_gather"):
            m.register_forward_hook(lambda m, a, o: seen["gathered"].append(o))
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: seen.update(index=o[-1]))
    with torch.no_grad():
        patched(x)
        full = model.time(torch.arange(F).float()[None, :, None] / F)[0]
    index = seen["index"]
    assert [p.shape for p in seen["positions"]] == [(1, F, 1)] * 4  # made for all F frames at every block
    assert len(seen["gathered"]) == 1  # for block 3: the table added before block 2 is pruned with the tokens
    for rows in seen["gathered"]:
        assert torch.equal(rows, full[index])
    assert any("is made from the frame count after the cut: it is made for all 27 frames" in n
               for n in patched.hotpatch_plan.notes)


def test_mask_a_block_cannot_take_per_sample_is_refused_in_one_line():
    model, x = vpts.build("band_mask_custom")
    with pytest.raises(hotpatch.RewriteError) as err:
        hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    msg = str(err.value)
    assert "mask over pairs of frames passed to `blocks.2`" in msg and "(MaskedBlock)" in msg and "Fix:" in msg
    assert "\n" not in msg and len(msg) <= 600


def test_rotary_table_rows_follow_each_samples_kept_frames_for_every_joint():
    model, x = vpts.build("rotary")
    patched = hotpatch.apply(model, n=1, f=KEEP, example_input=x[:1])
    seen = {}
    patched.get_submodule("temporal.1").register_forward_pre_hook(lambda m, a: seen.update(freqs=a[1]))
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: seen.update(index=o[-1]))
    with torch.no_grad():
        patched(x)
        t = torch.arange(F).float()
        full = (t[:, None] * model.inv_freq[None, :]).repeat_interleave(2, dim=-1)  # (F, d)
    index = seen["index"]
    rows = torch.arange(2).repeat_interleave(17)  # (B·J) rows: sample b, joint j
    assert seen["freqs"].shape == (2 * 17, KEEP, full.shape[-1])
    assert torch.equal(seen["freqs"], full[index[rows]])
