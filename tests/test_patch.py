"""hotpatch.apply (hotpatch/patch.py) on six small VPTs written in their authors' styles
(tests/models/author_vpts.py), and what it says when given a model it has already patched."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

import hotpatch
import author_vpts
import wild_vpts
from checks import frames_per_block, state_of

MODELS = list(author_vpts.ALL)
F, N, KEEP = 27, 1, 9
PACKAGE_DIR = os.path.dirname(hotpatch.__file__)


def patch(name: str, **kw):
    model, x = author_vpts.build(name)
    kw.setdefault("n", N)
    kw.setdefault("f", KEEP)
    return model, x, hotpatch.apply(model, example_input=x[:1], **kw)


@pytest.mark.parametrize("name", MODELS)
def test_shape_finite_and_original_untouched(name):
    model, x = author_vpts.build(name)
    with torch.no_grad():
        before = model(x)
    state = copy.deepcopy(model.state_dict())
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    with torch.no_grad():
        out = patched(x)
        after = model(x)
    assert out.shape == before.shape
    assert torch.isfinite(out).all()
    assert torch.equal(after, before)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert not any(k.startswith("hotpatch") for k in model.state_dict())


@pytest.mark.parametrize("name", MODELS)
def test_blocks_after_the_cut_see_f_frames(name):
    model, x, patched = patch(name)
    plan = patched.hotpatch_plan
    seen = frames_per_block(patched, x)
    cut = patched.hotpatch_sites.cut_block
    names = [b.name for b in plan.blocks]
    after_cut = set(names[names.index(cut):])
    temporal_after = [b.name for b in plan.temporal_blocks if b.name in after_cut]
    assert temporal_after, "the cut must leave temporal blocks after it"
    for b in plan.blocks:
        if b.kind == "frame-channel":
            continue
        assert seen[b.name] == (KEEP if b.name in after_cut else F), b.name
    assert all(b.level > N for b in plan.temporal_blocks if b.name in after_cut)
    assert all(b.level <= N for b in plan.temporal_blocks if b.name not in after_cut)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    model, x, patched = patch(name)
    patched.train()
    patched(x).square().mean().backward()
    names = {k for k, _ in model.named_parameters()}
    grads = {k: p.grad for k, p in patched.named_parameters()}
    assert names <= grads.keys()
    missing = [k for k in names if grads[k] is None]
    assert not missing, missing
    new = [k for k in grads if k.startswith("hotpatch_recover")]
    assert new and all(grads[k] is not None for k in new)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_all_frames_kept_reproduces_original(name, prune):
    model, x = author_vpts.build(name)
    with torch.no_grad():
        ref = model(x)
    for recover in ("nearest", "linear"):
        patched = hotpatch.apply(model, n=N, f=F, prune=prune, recover=recover, example_input=x[:1])
        with torch.no_grad():
            out = patched(x)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_is_original_plus_new_keys(name):
    model, x, patched = patch(name)
    original = model.state_dict()
    assert set(original) <= set(patched.state_dict())
    result = patched.load_state_dict(original, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("hotpatch_") for k in result.missing_keys)
    for k, v in original.items():
        assert torch.equal(patched.state_dict()[k], v)


def test_tra_parameters_live_under_one_new_submodule():
    model, x, patched = patch("mixste")
    new = [k for k, _ in patched.named_parameters() if k.startswith("hotpatch")]
    assert {k.split(".")[0] for k in new} == {"hotpatch_recover"}
    tra = patched.hotpatch_recover.recoverer
    assert isinstance(tra, hotpatch.TRA)
    assert tra.queries.shape == (1, F, 32) and torch.count_nonzero(tra.queries) == 0
    assert tra.heads == 4  # read from the host's attention
    assert type(patched).__name__ == "MixSTELikePatched"


def test_parameter_free_recovery_adds_no_parameters():
    model, x, patched = patch("mixste", recover="linear")
    assert sum(p.numel() for p in patched.parameters()) == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- train mode


@pytest.mark.parametrize("name", ["mixste", "poseformer", "encoder_layer"])
def test_train_mode_dropout_and_droppath_follow_train_eval(name):
    model, x = author_vpts.build(name)
    patched = hotpatch.apply(model, n=N, f=F, recover="nearest", example_input=x[:1])
    model.train()
    patched.train()
    torch.manual_seed(123)
    ref = model(x)
    torch.manual_seed(123)
    out = patched(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    model.eval()
    patched.eval()
    with torch.no_grad():
        assert not torch.allclose(patched(x), out, atol=1e-4)  # dropout was really active
        torch.testing.assert_close(patched(x), model(x), atol=1e-5, rtol=0)


def test_training_flag_is_kept():
    model, x = author_vpts.build("mixste")
    model.train()
    patched = hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    assert patched.training and model.training
    assert all(m.training for m in patched.modules())


def test_inplace_shares_parameters_and_copy_does_not():
    model, x = author_vpts.build("mixste")
    copied = hotpatch.apply(model, n=1, f=9, example_input=x[:1])
    shared = hotpatch.apply(model, n=1, f=9, example_input=x[:1], inplace=True)
    assert copied.head[1].weight is not model.head[1].weight
    assert shared.head[1].weight is model.head[1].weight


# ------------------------------------------------------------------------------- seq2frame


def test_seq2frame_returns_the_centre_frame():
    model, x = author_vpts.build("mhformer")
    with torch.no_grad():
        ref = model(x)
    full = hotpatch.apply(model, n=1, f=F, pipeline="seq2frame", example_input=x[:1])
    pruned = hotpatch.apply(model, n=1, f=KEEP, pipeline="seq2frame", example_input=x[:1])
    with torch.no_grad():
        out_full = full(x)
        out = pruned(x)
    assert out.shape == (2, 1, 17, 3)
    torch.testing.assert_close(out_full, ref[:, F // 2 : F // 2 + 1], atol=1e-5, rtol=0)
    assert torch.isfinite(out).all()
    assert not any(k.startswith("hotpatch_recover") for k in pruned.state_dict())


def test_seq2frame_keeps_the_centre_among_f_tokens():
    model, x, patched = patch("mixste", pipeline="seq2frame")
    indices = []
    patched.hotpatch_prune.register_forward_hook(lambda m, a, out: indices.append(out[-1]))
    with torch.no_grad():
        assert patched(x).shape == (2, 1, 17, 3)
    index = indices[0]
    assert index.shape == (2, KEEP)
    assert (index == F // 2).any(dim=1).all()


def test_seq2frame_needs_an_output_with_frames():
    model, x = author_vpts.build("center_frame")
    with pytest.raises(hotpatch.RewriteError, match="seq2frame"):
        hotpatch.apply(model, n=1, f=9, pipeline="seq2frame", example_input=x[:1])


def test_wrong_clip_length_at_run_time_is_a_clear_error():
    model, x, patched = patch("mixste")
    with pytest.raises(hotpatch.HotpatchError, match="F=27"):
        patched(torch.randn(1, 30, 17, 2))


def test_recover_frames_changes_the_number_of_output_frames():
    model, x, patched = patch("mixste", recover_frames=9)
    with torch.no_grad():
        assert patched(x).shape == (2, 9, 17, 3)
    assert patched.hotpatch_recover.recoverer.queries.shape == (1, 9, 32)


# ------------------------------------------------------- the patched model is HoT, by hand


def _dpc_knn_by_hand(tokens: torch.Tensor, keep: int, k: int) -> list[int]:
    """DPC-kNN of the paper (Eq. 1-2), one sample, plain loops. Equal densities (every
    mutual-nearest pair has them when k=2) are ordered by frame: the earlier one is denser."""
    n, c = tokens.shape
    dist = [[float((tokens[i] - tokens[j]).norm()) / math.sqrt(c) for j in range(n)] for i in range(n)]
    density = []
    for i in range(n):
        nearest = sorted(dist[i])[:k]
        density.append(math.exp(-sum(d * d for d in nearest) / k))
    score = []
    for i in range(n):
        denser = [dist[i][j] for j in range(n) if (density[j], -j) > (density[i], -i)]
        delta = min(denser) if denser else max(dist[i])
        score.append(density[i] * delta)
    best = sorted(range(n), key=lambda i: -score[i])[:keep]
    return sorted(best)


def _hot_mixste_by_hand(m: author_vpts.MixSTELike, tra: hotpatch.TRA, x: torch.Tensor, n: int, keep: int) -> torch.Tensor:
    b, frames, joints, _ = x.shape
    c = m.Temporal_pos_embed.shape[-1]

    def spatial(h, i, t):  # h: (b, t, j, c)
        h = m.Spatial_norm(m.STEblocks[i](h.reshape(b * t, joints, c)))
        return h.reshape(b, t, joints, c)

    def temporal(h, i, t):
        h = h.transpose(1, 2).reshape(b * joints, t, c)
        if i == 0:
            h = h + m.Temporal_pos_embed
        h = m.Temporal_norm(m.TTEblocks[i](h))
        return h.reshape(b, joints, t, c).transpose(1, 2)

    h = m.Spatial_patch_to_embedding(x.reshape(b * frames, joints, -1)) + m.Spatial_pos_embed
    h = h.reshape(b, frames, joints, c)
    t = frames
    for i in range(m.block_depth):
        if i == n:  # TPC after the n-th temporal block
            pooled = h.mean(dim=2).double()
            index = torch.tensor([_dpc_knn_by_hand(pooled[s], keep, 2) for s in range(b)])
            h = torch.stack([h[s, index[s]] for s in range(b)])
            t = keep
        h = temporal(spatial(h, i, t), i, t)
    # TRA: F zero-initialised queries attend to each joint's f tokens (Eq. 3-4)
    kv = h.transpose(1, 2).reshape(b * joints, keep, c)
    q0 = tra.queries.expand(b * joints, -1, -1)
    heads, d = tra.heads, c // tra.heads
    q = tra.q(q0).reshape(b * joints, frames, heads, d).transpose(1, 2)
    k = tra.k(kv).reshape(b * joints, keep, heads, d).transpose(1, 2)
    v = tra.v(kv).reshape(b * joints, keep, heads, d).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    mca = tra.proj((attn @ v).transpose(1, 2).reshape(b * joints, frames, c))
    h = (q0 + mca).reshape(b, joints, frames, c).transpose(1, 2)
    return m.head(h)


@pytest.mark.parametrize("n", [1, 2])
def test_patched_mixste_equals_hand_written_hot(n):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=n, f=KEEP, example_input=x[:1])
    tra = patched.hotpatch_recover.recoverer
    torch.manual_seed(5)
    with torch.no_grad():
        tra.queries.normal_()
        for lin in (tra.q, tra.k, tra.v, tra.proj):
            lin.weight.normal_(std=0.3)
            lin.bias.normal_(std=0.3)
        out = patched(x)
        ref = _hot_mixste_by_hand(model, tra, x, n, KEEP)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


class _FixedDropout(torch.nn.Module):
    """Functional dropout with a literal training flag: never on, or always on."""

    def __init__(self, always: bool):
        super().__init__()
        self.always = always
        self.embed = torch.nn.Linear(34, 16)
        self.blocks = torch.nn.ModuleList([author_vpts.Block(16, 2) for _ in range(3)])
        self.head = torch.nn.Linear(16, 51)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        x = torch.nn.functional.dropout(x, 0.5, training=self.always)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x).view(b, f, j, 3)


def test_functional_dropout_with_a_literal_flag_keeps_its_meaning():
    x = torch.randn(2, 9, 17, 2)
    never = _FixedDropout(always=False).eval()
    patched = hotpatch.apply(never, n=1, f=9, recover="nearest", example_input=x[:1]).train()
    torch.testing.assert_close(patched(x), never.train()(x), atol=1e-5, rtol=0)  # train(): still no dropout
    always = _FixedDropout(always=True).eval()
    patched = hotpatch.apply(always, n=1, f=9, recover="nearest", example_input=x[:1]).eval()
    torch.manual_seed(0)
    ref = always(x)
    torch.manual_seed(0)
    torch.testing.assert_close(patched(x), ref, atol=1e-5, rtol=0)  # eval(): dropout still on
    assert not torch.allclose(patched(x), patched(x))


# ------------------------------------------------------------------ an already patched model


@pytest.mark.parametrize("entry", ["apply", "prepare", "wrapped"])
def test_patching_a_patched_model_says_how_to_repatch(entry):
    model, x = wild_vpts.build("iter_norm")
    patched = hotpatch.apply(model, n=N, f=KEEP, example_input=x[:1])
    state = state_of(patched)
    with pytest.raises(hotpatch.AlreadyPatchedError) as err:
        if entry == "prepare":
            hotpatch.prepare(patched)
        elif entry == "wrapped":
            hotpatch.apply(torch.nn.Sequential(patched), n=1, f=3, example_input=x[:1])
        else:
            hotpatch.apply(patched, n=2, f=3, example_input=x[:1])
    msg = str(err.value)
    assert f"already patched by hotpatch (n={N}, f={KEEP})" in msg
    assert "original" in msg and "hotpatch.prepare(original)" in msg
    assert PACKAGE_DIR not in msg
    assert all(torch.equal(patched.state_dict()[k], v) for k, v in state.items())
    assert isinstance(err.value, hotpatch.HotpatchError)


def test_repatching_the_original_after_a_refusal_works():
    model, x = wild_vpts.build("iter_norm")
    first = hotpatch.apply(model, n=1, f=KEEP, example_input=x[:1])
    with pytest.raises(hotpatch.AlreadyPatchedError):
        hotpatch.apply(first, n=2, f=3, example_input=x[:1])
    second = hotpatch.prepare(copy.deepcopy(model), example_input=x[:1]).patch(2, 3)
    assert second.hotpatch_config["n"] == 2 and second(x).shape == x.shape[:3] + (3,)
