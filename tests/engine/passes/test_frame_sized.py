"""The frame-sized-layers pass: BatchNorm1d(F), Linear(F, F), (F, F) constants in
``A @ x`` and einsums, top-k over frames, at graph level and inside opaque blocks
(tests/models/frame_use_vpts.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import hotpatch
from checks import build_and_patch
import frame_use_vpts
from hotpatch.layout import Layout
from hotpatch.engine.frame_layers import FrameBatchNorm1d, FrameLinear, FrameMatmul, swap

F, N, KEEP = 27, 1, 9


def patch(name: str, **kw):
    return build_and_patch(frame_use_vpts, name, **{"n": N, "f": KEEP, **kw})


def test_plan_records_every_gathered_layer():
    _, _, graph = patch("graphformer")
    notes = "\n".join(graph.hotpatch_plan.notes)
    # the cut is before blocks.1: gcns.1..3 run after it, gcns.0 before
    for i in (1, 2, 3):
        assert f"`gcns.{i}.bn` (BatchNorm1d" in notes and f"gcns_{i}_adj` (27, 27) in `A @ x`" in notes
    assert "gcns.0" not in notes and "gcns_0" not in notes
    assert notes.count("k=12 clamped to the f=9 kept frames") == 3
    _, _, mixer = patch("mixerformer")
    notes = "\n".join(mixer.hotpatch_plan.notes)
    assert "inside a block: `layers.2.token_mlp.fc1` (Linear, frames as features): input columns" in notes
    assert "`layers.2.token_mlp.fc2` (Linear, frames as features): output rows" in notes
    assert "`layers.1.tconv` (Conv1d, frames as features): rows and columns" in notes
    assert "layers.0." not in notes
    assert isinstance(mixer.get_submodule("layers.1.tbn"), FrameBatchNorm1d)
    assert type(mixer.get_submodule("layers.0.token_mlp.fc1")) is nn.Linear  # before the cut: untouched


def test_topk_smaller_than_f_is_not_clamped():
    model, x = frame_use_vpts.build("graphformer")
    model.num_key = 5
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    assert not any("clamped" in line for line in patched.hotpatch_plan.notes)


def _kept_index(patched, x):
    out = []
    patched.hotpatch_prune.register_forward_hook(lambda m, a, o: out.append(o[-1]))
    with torch.no_grad():
        patched(x)
    return out[0]


def test_gathered_batchnorm_running_stats_update_only_seen_frames():
    model, x, patched = patch("graphformer")
    bn = patched.gcns[2].bn
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    patched.train()
    index = _kept_index(patched, x)  # the kept frames of this training step
    seen = torch.zeros(F, dtype=torch.bool)
    seen[index.flatten()] = True
    assert not seen.all()
    assert torch.equal(bn.running_mean[~seen], before_mean[~seen])
    assert torch.equal(bn.running_var[~seen], before_var[~seen])
    assert (bn.running_mean[seen] != before_mean[seen]).all()
    assert int(bn.num_batches_tracked) == 1
    assert torch.equal(model.gcns[2].bn.running_mean, before_mean)  # the original is not touched


def _index(b=2, f=4):
    return torch.stack([torch.randperm(F, generator=torch.Generator().manual_seed(i))[:f].sort().values for i in range(b)])


def test_batchnorm_eval_equals_the_original_on_the_kept_frames():
    bn = nn.BatchNorm1d(F).eval()
    frame_use_vpts._as_trained(bn)
    full = torch.randn(2, F, 8)
    index = _index()
    kept = torch.stack([full[s, index[s]] for s in range(2)])
    ref = bn(full)
    gathered = swap(nn.ModuleDict({"bn": copy.deepcopy(bn)}), "bn", Layout((("B",), ("F",), (8,))), F, (True, True))
    assert gathered is not None
    out = gathered(kept, index)
    torch.testing.assert_close(out, torch.stack([ref[s, index[s]] for s in range(2)]), atol=1e-6, rtol=0)


def test_linear_over_frames_equals_the_original_on_zero_filled_frames():
    """Linear(F, F) on kept frames = the original on a clip whose dropped frames are zero,
    read at the kept frames: rows and columns of the weight both follow the kept index."""
    root = nn.ModuleDict({"mix": nn.Linear(F, F)})
    lin = copy.deepcopy(root.mix)
    frame_lin = swap(root, "mix", Layout((("B",), (5,), ("F",))), F, (True, True))
    assert isinstance(frame_lin, FrameLinear) and frame_lin.weight is root.mix.weight
    index = _index()
    kept = torch.randn(2, 5, 4)
    full = torch.zeros(2, 5, F)
    for s in range(2):
        full[s][:, index[s]] = kept[s]
    ref = lin(full)
    expected = torch.stack([ref[s][:, index[s]] for s in range(2)])
    torch.testing.assert_close(frame_lin(kept, index), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("const_first", [True, False])
def test_matmul_with_frame_matrix_gathers_rows_and_columns(const_first):
    a = torch.randn(F, F)
    index = _index()
    if const_first:
        kept, layout = torch.randn(2, 4, 3), Layout((("B",), ("F",), (3,)))
    else:
        kept, layout = torch.randn(2, 3, 4), Layout((("B",), (3,), ("F",)))
    mm = FrameMatmul(layout, const_first, F)
    out = mm(a, kept, index)
    full = torch.randn(2, F, 3) if const_first else torch.randn(2, 3, F)
    assert torch.equal(mm(a, full), a @ full if const_first else full @ a)  # no index: the plain product
    for s in range(2):
        sub = a[index[s]][:, index[s]]
        torch.testing.assert_close(out[s], sub @ kept[s] if const_first else kept[s] @ sub, atol=1e-6, rtol=0)


def test_adjacency_and_topk_inside_a_block_use_the_kept_frames():
    """The rebuilt block on kept tokens = the original block with the kept rows and columns of
    its adjacency and k = f, sample by sample."""
    model, x, patched = patch("adjacencyformer")
    notes = patched.hotpatch_plan.notes
    assert "inside block `blocks.1`: `adj` (27, 27) in `A @ x`: rows and columns gathered per sample by the kept frames" in notes
    assert "inside block `blocks.2`: `topk`: top-k over frames, k=12 clamped to the f=9 kept frames" in notes
    assert type(model.blocks[1]) is frame_use_vpts.GraphBlock and "adj" in dict(patched.blocks[1].named_buffers())
    index = _index(2, KEEP)
    tokens = torch.randn(2, KEEP, 32)
    patched.hotpatch_kept(index)
    with torch.no_grad():
        out = patched.blocks[1](tokens)
        for s in range(2):
            ref = copy.deepcopy(model.blocks[1])
            ref.adj = model.blocks[1].adj[index[s]][:, index[s]]
            ref.num_key = KEEP
            torch.testing.assert_close(out[s : s + 1], ref(tokens[s : s + 1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mixerformer", "windowformer", "adjacencyformer"])
def test_inplace_shares_parameters_but_never_swaps_the_users_modules(name):
    model, x = frame_use_vpts.build(name)
    classes = {k: type(m) for k, m in model.named_modules()}
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1], inplace=True)
    assert {k: type(m) for k, m in model.named_modules()} == classes
    own = dict(model.named_parameters())
    assert all(p is own[k] for k, p in patched.named_parameters() if k in own)
    with torch.no_grad():
        assert patched(x).shape == model(x).shape


def test_frame_einsum_gathers_each_samples_rows_and_columns():
    from hotpatch.engine.frame_layers import FrameEinsum

    a = torch.randn(9, 9)
    x = torch.randn(2, 4, 5, 3)  # (B, f, J, C): 4 kept frames
    index = torch.tensor([[0, 2, 5, 8], [1, 3, 4, 7]])
    first = FrameEinsum("ts,bsjc->btjc", "bts,bsjc->btjc", 0, 9)(a, x, index=index)
    second = FrameEinsum("bsjc,st->btjc", "bsjc,bst->btjc", 1, 9)(x, a, index=index)
    for b in range(2):
        kept = a[index[b]][:, index[b]]
        torch.testing.assert_close(first[b], torch.einsum("ts,sjc->tjc", kept, x[b]))
        torch.testing.assert_close(second[b], torch.einsum("sjc,st->tjc", x[b], kept))
    full = torch.randn(2, 9, 5, 3)
    assert torch.equal(FrameEinsum("ts,bsjc->btjc", "bts,bsjc->btjc", 0, 9)(a, full),
                       torch.einsum("ts,bsjc->btjc", a, full))


def test_einsum_with_a_frame_matrix_is_rewritten_in_and_between_blocks():
    model, x, patched = patch("einsumformer", n=1, f=9, recover="linear")
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert "inside block `blocks.1`: `mix` (27, 27) in `einsum 'ts,bsjc->btjc'`" in notes
    assert "`adj` (27, 27) in einsum 'bsjc,st->btjc'" in notes
    with torch.no_grad():
        assert patched(x).shape == model(x).shape
