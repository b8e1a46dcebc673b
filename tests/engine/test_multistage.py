"""Multi-stage (hierarchical) pruning: ``apply(model, n=[n1, n2, ...], f=[f1, f2, ...])``.

Blocks 1..n1 see F frames, blocks n1+1..n2 see f1, ..., the blocks after the last cut see the
last f; each later stage selects among the tokens the previous one kept and recovery happens
once, from the original frames of the last stage's tokens."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import author_vpts
from checks import build_and_patch, frames_per_block
from hotpatch.errors import ConfigError
from hotpatch.engine.rewrite import stage_pruners

MODELS = list(author_vpts.ALL)
F, CUTS, KEEPS = 27, [1, 2], [15, 7]


def patch(name: str, **kw):
    return build_and_patch(author_vpts, name, **{"n": CUTS, "f": KEEPS, **kw})


@pytest.mark.parametrize("name", MODELS)
def test_blocks_see_the_token_pyramid(name):
    model, x, patched = patch(name)
    plan = patched.hotpatch_plan
    seen = frames_per_block(patched, x)
    cut1, cut2 = patched.hotpatch_sites.cut_blocks
    names = [b.name for b in plan.blocks]
    for b in plan.blocks:
        i = names.index(b.name)
        want = F if i < names.index(cut1) else KEEPS[0] if i < names.index(cut2) else KEEPS[1]
        assert seen[b.name] == want == plan.tokens[b.name], b.name
    levels = {b.name: b.level for b in plan.temporal_blocks}
    assert {levels[b] for b in levels if seen[b] == F} <= {1}
    assert {levels[b] for b in levels if seen[b] == KEEPS[0]} == {2}
    assert min(levels[b] for b in levels if seen[b] == KEEPS[1]) == 3
    with torch.no_grad():
        assert patched(x).shape == model(x).shape


@pytest.mark.parametrize("name", [m for m in MODELS if m != "center_frame"])
@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_all_frames_kept_in_every_stage_reproduces_original(name, prune):
    model, x = author_vpts.build(name)
    prepared = hotpatch.prepare(model, example_input=x[:1])
    with torch.no_grad():
        ref = model(x)
        for recover in ("nearest", "linear"):
            out = prepared.patch(CUTS, [F, F], prune=prune, recover=recover)(x)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
        centre = prepared.patch(CUTS, [F, F], prune=prune, pipeline="seq2frame")(x)
        torch.testing.assert_close(centre, ref[:, F // 2 : F // 2 + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mixste", "motionbert", "mhformer"])
def test_two_stages_are_deterministic_and_batch_invariant(name):
    _, x, patched = patch(name, recover="tra")
    with torch.no_grad():
        for prm in patched.parameters():  # TRA away from its zero init, so recovery matters
            prm.add_(0.02 * torch.randn_like(prm))
        whole = patched(x)
        again = patched(x)
        alone = torch.cat([patched(x[i : i + 1]) for i in range(x.shape[0])])
    assert torch.equal(whole, again)
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_original_parameter(name):
    model, x, patched = patch(name, prune_pos_embed=True)
    patched.train()
    patched(x).square().mean().backward()
    grads = {k: p.grad for k, p in patched.named_parameters()}
    missing = [k for k, _ in model.named_parameters() if grads.get(k) is None]
    assert not missing, missing
    assert {k.split(".")[0] for k in grads if k.startswith("hotpatch")} >= {"hotpatch_recover"}


def test_one_positional_embedding_per_stage():
    model, x, patched = patch("mixste", prune_pos_embed=True, recover="linear")
    shapes = {k: tuple(v.shape) for k, v in patched.state_dict().items() if "pos_embed" in k and k.startswith("hotpatch")}
    assert shapes == {"hotpatch_prune.pruner.pos_embed": (1, 15, 32), "hotpatch_prune2.pruner.pos_embed": (1, 7, 32)}
    with torch.no_grad():
        before = patched(x)
        patched.hotpatch_prune2.pruner.pos_embed.fill_(0.5)
        assert not torch.allclose(patched(x), before)  # the second stage's embedding is used


def test_single_stage_lists_and_ints_agree():
    model, x = author_vpts.build("mixste")
    prepared = hotpatch.prepare(model, example_input=x[:1])
    a, b = prepared.patch(2, 9, recover="linear"), prepared.patch([2], [9], recover="linear")
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert b.hotpatch_config["n"] == 2 and b.hotpatch_config["f"] == 9
    assert [name for name, _ in stage_pruners(a)] == ["hotpatch_prune"]


def test_plan_and_config_show_the_stages():
    _, x, patched = patch("mixste")
    cfg = patched.hotpatch_config
    assert cfg["n"] == CUTS and cfg["f"] == KEEPS
    text = str(patched.hotpatch_plan)
    assert "TTEblocks.0                  temporal level 1, 27 frames" in text
    assert "TTEblocks.1                  temporal level 2, 15 frames" in text
    assert "TTEblocks.3                  temporal level 4, 7 frames" in text


def test_save_and_load_two_stages(tmp_path):
    model, x, patched = patch("mixste", prune_pos_embed=True)
    with torch.no_grad():
        for prm in patched.parameters():
            prm.add_(0.01 * torch.randn_like(prm))
    path = hotpatch.save(patched, tmp_path / "two.pt", source={"class": "author_vpts:MixSTELike", "kwargs": {}})
    loaded = hotpatch.load(path)
    assert loaded.hotpatch_config["n"] == CUTS and loaded.hotpatch_config["f"] == KEEPS
    with torch.no_grad():
        assert torch.equal(loaded(x), patched(x))


@pytest.mark.parametrize(
    ("n", "f", "match"),
    [
        ([2, 1], [15, 7], "strictly increasing"),
        ([1, 1], [15, 7], "strictly increasing"),
        ([1, 2], [7, 15], "must not increase"),
        ([1, 2], [15], "one f per cut"),
        ([1, 2], 9, "one f per cut"),
        ([1, 4], [15, 7], "1 <= n <= 3"),
        ([1, 2], [28, 7], "exceeds the clip length"),
        ([1, 2], [15, 0], "at least one frame"),
        ([0, 2], [15, 7], "counts temporal blocks from 1"),
        ([1, 2.0], [15, 7], "list of ints"),
        ([], [], "non-empty list"),
    ],
)
def test_bad_stage_lists_are_refused(n, f, match):
    model, x = author_vpts.build("mixste")
    with pytest.raises(ConfigError, match=match):
        hotpatch.apply(model, n=n, f=f, example_input=x[:1])


def test_full_size_mixste_two_stages():
    """The issue's recipe: MixSTE (F=243) n=[1, 3], f=[121, 61] costs fewer paper FLOPs than
    n=1, f=121; blocks see 243, 121 and 61 frames; the output keeps all 243."""
    from hotpatch import models
    from hotpatch.profile import profile

    torch.manual_seed(0)
    model = models.get("mixste").build().eval()
    x = torch.randn(1, 243, 17, 2)
    prepared = hotpatch.prepare(model, example_input=x)
    one = prepared.patch(1, 121, prune_pos_embed=True)
    two = prepared.patch([1, 3], [121, 61], prune_pos_embed=True)

    def paper(m) -> int:
        return profile(m, x, counters=("paper",), fps=False, memory=False).flops["paper"].value

    assert paper(two) < paper(one) < paper(model)
    seen = {}
    hooks = [two.get_submodule(f"TTEblocks.{i}").register_forward_hook(
        lambda _m, args, _o, i=i: seen.__setitem__(i, args[0].shape[1])) for i in range(8)]
    with torch.no_grad():
        out = two(x)
    for h in hooks:
        h.remove()
    assert seen == {0: 243, 1: 121, 2: 121, 3: 61, 4: 61, 5: 61, 6: 61, 7: 61}
    assert out.shape == (1, 243, 17, 3)


# ----------------------------------------------------------------------------- command line
