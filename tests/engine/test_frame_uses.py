"""hotpatch.apply on VPTs that use the frame count beyond sizes (tests/models/frame_use_vpts.py):
frame-sized layers (BatchNorm1d(F), Linear(F, F), Conv1d(F, F, 1), (F, F) adjacency) and
top-k over frames, at graph level and inside opaque blocks."""

from __future__ import annotations

import copy
import operator

import pytest
import torch
import torch.nn as nn
from einops import rearrange

import hotpatch
import frame_use_vpts
from hotpatch.layout import Layout
from hotpatch.engine.frame_layers import FrameBatchNorm1d, FrameLinear, FrameMatmul, swap
from hotpatch.engine.passes.splits import Split
from hotpatch.engine.passes.strided_stages import Reduction, ReducedIndex, valid_frames

MODELS = list(frame_use_vpts.ALL)
F, N, KEEP = 27, 1, 9


def patch(name: str, **kw):
    model, x = frame_use_vpts.build(name)
    kw.setdefault("n", N)
    kw.setdefault("f", KEEP)
    return model, x, hotpatch.apply(model, example_input=x[:1], **kw)


@pytest.mark.parametrize("name", MODELS)
def test_shape_finite_and_original_untouched(name):
    model, x = frame_use_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = copy.deepcopy(model.state_dict())
    classes = [type(m) for m in model.modules()]
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
        after = model(x)
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert torch.equal(after, before)
    assert [type(m) for m in model.modules()] == classes
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert set(patched.state_dict()) - set(state) == {k for k in patched.state_dict() if k.startswith("hotpatch")}


def _stage(block: str) -> int:
    """Stage of a StridedFormer block (`stages.i.j`): it sees F / 3**i tokens; 0 elsewhere."""
    return int(block.split(".")[1]) if block.startswith("stages.") else 0


@pytest.mark.parametrize("name", MODELS)
def test_blocks_after_the_cut_see_f_tokens(name):
    """Blocks after the cut see f tokens (f / 3**i in the i-th strided stage), blocks before F."""
    model, x, patched = patch(name)
    plan = patched.hotpatch_plan
    seen = {}
    hooks = [
        patched.get_submodule(b.name).register_forward_hook(lambda m, a, o, name=b.name: seen.__setitem__(name, a[0].shape[1]))
        for b in plan.blocks
    ]
    with torch.no_grad():
        patched(x)
    for h in hooks:
        h.remove()
    names = [b.name for b in plan.blocks]
    after = names[names.index(patched.hotpatch_sites.cut_block):]
    assert len(after) == len(names) - N
    assert all(seen[b] == (KEEP if b in after else F) // 3 ** _stage(b) for b in names), seen


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    model, x, patched = patch(name)
    patched.train()
    patched(x).square().mean().backward()
    grads = {k: p.grad for k, p in patched.named_parameters()}
    missing = [k for k, _ in model.named_parameters() if grads.get(k) is None]
    assert not missing, missing


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("recover", ["nearest", "linear"])
def test_all_frames_kept_reproduces_original(name, recover):
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=F, recover=recover, example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(patched(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_all_frames_kept_reproduces_original_training_step(name):
    """Train mode at f = F: same output and the same running statistics after one step."""
    model, x = frame_use_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    ref_model = copy.deepcopy(model).train()
    patched.train()
    torch.testing.assert_close(patched(x), ref_model(x), atol=1e-5, rtol=0)
    for k, v in ref_model.state_dict().items():
        torch.testing.assert_close(patched.state_dict()[k], v, atol=1e-6, rtol=0)


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


# ------------------------------------------------------------- each gathered op, by hand


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


# ----------------------------------------------------------------------- strided stages


def test_strided_stages_follow_f_and_slice_their_embeddings():
    model, x, patched = patch("stridedformer", f=18)
    notes = patched.hotpatch_plan.notes
    assert "strided stage `reduce.0` (stride 3, kernel 3: 27 -> 9) after the cut: 18 -> 6 tokens" in notes
    assert "strided stage `reduce.1` (stride 3, kernel 3: 9 -> 3) after the cut: 6 -> 2 tokens" in notes
    assert any(n.startswith("`pos_embeds_1` (1, 9, 32) indexed by positions") and "first 6" in n for n in notes)
    assert any(n.startswith("`pos_embeds_2` (1, 3, 32)") and "first 2" in n for n in notes)
    assert any("recovered to 3" in n for n in notes)
    seen = {}
    for b in patched.hotpatch_plan.blocks:
        patched.get_submodule(b.name).register_forward_hook(lambda m, a, o, name=b.name: seen.__setitem__(name, a[0].shape[1]))
    with torch.no_grad():
        out = patched(x)
    assert seen == {"stages.0.0": 27, "stages.0.1": 18, "stages.1.0": 6, "stages.1.1": 6, "stages.2.0": 2}
    assert out.shape == (2, 1, 17, 3) and torch.isfinite(out).all()


def test_stage_embedding_is_sliced_not_gathered():
    """Stage embeddings are narrowed to their first rows, whatever frames were kept."""
    model, x, patched = patch("stridedformer", prune="uniform")
    uses = [n for n in patched.graph.nodes if n.target is torch.narrow]
    assert [(n.args[0].target, n.args[1:]) for n in uses] == [("pos_embeds.1", (1, 0, 3)), ("pos_embeds.2", (1, 0, 1))]


@pytest.mark.parametrize("f", [10, 20, 4])
def test_f_that_does_not_fit_the_strides_is_refused_with_valid_values(f):
    model, x = frame_use_vpts.build("stridedformer")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit the strided stage `reduce.0`.*Valid f near") as err:
        hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    assert "9, 18" in str(err.value) and "pass one of them" in str(err.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_cut_after_a_strided_stage_is_refused():
    model, x = frame_use_vpts.build("stridedformer")
    with pytest.raises(hotpatch.RewriteError, match=r"falls after the strided stage `reduce.0`.*choose n <= 1"):
        hotpatch.apply(model, n=2, f=9, example_input=x[:1])


def test_valid_frames_follow_kernel_stride_and_padding():
    exact = [Reduction("r0", "r0", 27, 9, 3, 3, 0, 1), Reduction("r1", "r1", 9, 3, 3, 3, 0, 1)]
    assert valid_frames(exact, 27) == [9, 18, 27]
    padded = [Reduction("r0", "r0", 27, 14, 3, 2, 1, 1)]  # (27 + 2 - 2 - 1) / 2 + 1 = 14, exact
    assert valid_frames(padded, 27) == list(range(1, 28, 2))


def test_reduced_positions_of_all_frames_are_the_stage_positions():
    assert torch.equal(ReducedIndex(9, 3, 3)(torch.arange(27).expand(2, -1)), torch.arange(3).expand(2, -1))
    kept = torch.tensor([[0, 1, 2, 3, 4, 5, 24, 25, 26]])
    assert torch.equal(ReducedIndex(3, 9, 3)(kept), torch.tensor([[0, 1, 8]]))


# ------------------------------------------------------------------- splits of the frames


def test_literal_frame_slices_and_split_sizes_follow_f():
    model, x, patched = patch("segmentformer", f=18)
    index_args = [n.args[1] for n in patched.graph.nodes if n.target is operator.getitem and isinstance(n.args[1], tuple)]
    assert (slice(None, None, None), slice(None, 6, None)) in index_args  # x[:, :9] -> x[:, :6]
    assert (slice(None, None, None), slice(6, None, None)) in index_args  # x[:, 9:] -> x[:, 6:]
    sizes = [n.args[1] for n in patched.graph.nodes if n.target is torch.split]
    assert sizes == [[9, 18], [6, 12], [6, 12]]  # the first runs before the cut (after blocks.0)
    notes = patched.hotpatch_plan.notes
    assert any(n.startswith("frame split `chunk_") and "3 even parts of 18" in n for n in notes)
    assert any("(slice [:9] of the frame axis): boundary 9 -> 6" in n for n in notes)
    with torch.no_grad():
        assert patched(x).shape == model(x).shape


@pytest.mark.parametrize("f", [10, 13, 2])
def test_f_that_splits_a_frame_is_refused_with_valid_values(f):
    model, x = frame_use_vpts.build("segmentformer")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit `getitem_\d+` \(slice .* of the frame axis\).*Valid f near") as err:
        hotpatch.apply(model, n=1, f=f, example_input=x[:1])
    valid = [int(v) for v in str(err.value).split("Valid f near")[1].split(":")[1].split(";")[0].split(",")]
    assert valid and all(v % 3 == 0 for v in valid)
    assert min(abs(v - f) for v in valid) <= 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_split_constraints():
    chunk = Split("c", parts=3)
    assert [f for f in range(1, 28) if chunk.fits(f, 27)] == list(range(3, 28, 3))
    bound = Split("b", bound=81)  # x[:, :81] of 243 frames
    assert [f for f in range(1, 244) if bound.fits(f, 243)][:4] == [3, 6, 9, 12]


def test_splits_inside_opaque_blocks_follow_f():
    model, x, patched = patch("windowformer")
    notes = patched.hotpatch_plan.notes
    assert "frame split inside block `blocks.1`: `rearrange` (einops 'b (w t) c -> (b w) t c'): 3 even parts of 9" in notes
    assert any(n.startswith("frame split inside block `blocks.2`: `getitem_") and "(slice [:9] of the frame axis): boundary 9 -> 3" in n for n in notes)
    assert not any("`blocks.0`" in n for n in notes)  # before the cut
    assert type(patched.blocks[0]) is frame_use_vpts.WindowBlock
    assert type(model.blocks[1]) is frame_use_vpts.WindowBlock  # the user's block is not replaced
    slices = [n.args[1] for n in patched.blocks[1].graph.nodes if n.target is operator.getitem and isinstance(n.args[1], tuple)]
    assert (slice(None, None, None), slice(None, 3, None)) in slices
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()


def test_f_that_splits_a_window_inside_a_block_is_refused():
    model, x = frame_use_vpts.build("windowformer")
    with pytest.raises(hotpatch.ConfigError, match=r"f=10 does not fit inside block `blocks.1`: `rearrange`.*3 parts.*Valid f near 10: 6, 9, 12, 15"):
        hotpatch.apply(model, n=1, f=10, example_input=x[:1])


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


class _WindowBNBlock(frame_use_vpts.WindowBlock):
    """A literal split and a BatchNorm1d(F) in one block: both passes edit the same block."""

    def __init__(self, dim, heads, num_frame):
        super().__init__(dim, heads, num_frame)
        self.tbn = nn.BatchNorm1d(num_frame)

    def forward(self, x):
        w = rearrange(self.norm0(x), "b (w t) c -> (b w) t c", w=self.windows)
        x = x + rearrange(self.local_attn(w), "(b w) t c -> b (w t) c", w=self.windows)
        x = x + self.tbn(self.attn(self.norm1(x)))
        x = torch.cat([x[:, : self.warmup] * self.gate, x[:, self.warmup :]], dim=1)
        return x + self.mlp(self.norm2(x))


def test_split_and_frame_sized_layer_in_the_same_block():
    model, x = frame_use_vpts.build("windowformer")
    torch.manual_seed(1)
    model.blocks = nn.ModuleList([_WindowBNBlock(32, 4, F) for _ in range(3)])
    frame_use_vpts._as_trained(model)
    model.eval()
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    notes = "\n".join(patched.hotpatch_plan.notes)
    assert "inside a block: `blocks.2.tbn` (BatchNorm1d" in notes and "`blocks.2`: `getitem_" in notes
    assert isinstance(patched.blocks[2], torch.fx.GraphModule) and isinstance(patched.blocks[2].tbn, FrameBatchNorm1d)
    assert type(model.blocks[2].tbn) is nn.BatchNorm1d
    with torch.no_grad():
        out = patched(x)
    assert out.shape == model(x).shape and torch.isfinite(out).all()
    full = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    with torch.no_grad():
        assert torch.equal(full(x), model(x))


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


def test_functional_strided_stages_follow_f():
    """F.conv1d and F.max_pool1d with stride 3 are strided stages like their modules."""
    model, x, patched = patch("functionalstrided", f=18)
    notes = patched.hotpatch_plan.notes
    assert "strided stage `conv1d` (stride 3, kernel 3: 27 -> 9) after the cut: 18 -> 6 tokens" in notes
    assert "strided stage `max_pool1d` (stride 3, kernel 3: 9 -> 3) after the cut: 6 -> 2 tokens" in notes
    seen = {}
    for b in patched.hotpatch_plan.blocks:
        patched.get_submodule(b.name).register_forward_hook(lambda m, a, o, name=b.name: seen.__setitem__(name, a[0].shape[1]))
    with torch.no_grad():
        out = patched(x)
    assert seen == {"stages.0.0": 27, "stages.0.1": 18, "stages.1.0": 6, "stages.1.1": 6, "stages.2.0": 2}
    assert out.shape == (2, 1, 17, 3) and torch.isfinite(out).all()
    with pytest.raises(hotpatch.ConfigError, match=r"does not fit the strided stage `conv1d`.*Valid f near 10: 9, 18, 27"):
        hotpatch.apply(model, n=1, f=10, example_input=x[:1])
