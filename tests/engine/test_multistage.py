"""Multi-stage (hierarchical) pruning: ``apply(model, n=[n1, n2, ...], f=[f1, f2, ...])``.

Blocks 1..n1 see F frames, blocks n1+1..n2 see f1, ..., the blocks after the last cut see the
last f; each later stage selects among the tokens the previous one kept and recovery happens
once, from the original frames of the last stage's tokens."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import author_vpts
from checks import frames_per_block
from hotpatch.errors import ConfigError, RewriteError
from hotpatch.prune import TPC, UniformPrune, top_frames
from hotpatch.layout import Layout
from hotpatch.engine.rewrite import PruneAgain, stage_pruners

MODELS = list(author_vpts.ALL)
F, CUTS, KEEPS = 27, [1, 2], [15, 7]


def patch(name: str, **kw):
    model, x = author_vpts.build(name)
    kw.setdefault("n", CUTS)
    kw.setdefault("f", KEEPS)
    return model, x, hotpatch.apply(model, example_input=x[:1], **kw)


def _kept(patched, x) -> list[torch.Tensor]:
    """The index (original frames) each stage returns."""
    out, handles = [], []
    for _, m in stage_pruners(patched):
        handles.append(m.register_forward_hook(lambda _m, _a, o: out.append(o[-1].clone())))
    with torch.no_grad():
        patched(x)
    for h in handles:
        h.remove()
    return out


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


@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_later_stages_select_among_kept_frames(prune):
    _, x, patched = patch("mixste", prune=prune, n=[1, 2, 3], f=[20, 11, 5])
    first, second, third = _kept(patched, x)
    assert [t.shape[1] for t in (first, second, third)] == [20, 11, 5]
    for before, after in ((first, second), (second, third)):
        for b in range(x.shape[0]):
            assert set(after[b].tolist()) <= set(before[b].tolist())
            assert after[b].tolist() == sorted(after[b].tolist())
    seen = frames_per_block(patched, x)
    assert sorted(set(seen.values()), reverse=True) == [F, 20, 11, 5]


@pytest.mark.parametrize("prune", ["tpc", "uniform", "attention", "motion"])
def test_seq2frame_keeps_the_centre_frame_in_every_stage(prune):
    model, x, patched = patch("mixste", prune=prune, pipeline="seq2frame", n=[1, 2], f=[10, 3])
    for index in _kept(patched, x):
        assert (index == F // 2).any(dim=1).all()
    with torch.no_grad():
        assert patched(x).shape == (x.shape[0], 1, 17, 3)


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


def test_strided_stage_between_cuts_is_refused():
    import frame_use_vpts

    model, x = frame_use_vpts.build("stridedformer")
    with pytest.raises(RewriteError, match="between two pruning cuts"):
        hotpatch.apply(model, n=[1, 2], f=[18, 9], example_input=x[:1])


def test_prune_again_composes_indices():
    x = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)
    x[:, 2] = 100.0  # an outlier frame: TPC's densest cluster centres lie elsewhere
    before = torch.tensor([[0, 4, 9, 13, 20], [1, 2, 3, 5, 8]])
    stage = PruneAgain(UniformPrune(3), [Layout((("B",), ("F",), (3,)))])
    kept, index = stage(x, before)
    assert index.tolist() == [[0, 9, 20], [1, 3, 8]]  # positions 0, 2, 4 of each sample's frames
    assert torch.equal(kept, x[:, [0, 2, 4]])
    centred = PruneAgain(UniformPrune(2), [Layout((("B",), ("F",), (3,)))], center=13)
    _, index = centred(x[:1], before[:1])
    assert 13 in index[0].tolist()


def test_centre_can_differ_per_sample():
    score = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert top_frames(score, 2, torch.tensor([4, 2])).tolist() == [[0, 4], [0, 2]]
    index = UniformPrune(3).select(torch.randn(2, 9, 4), torch.tensor([3, 5]))
    assert index.tolist() == [[0, 3, 8], [0, 5, 8]]
    assert TPC(2).select(torch.randn(2, 6, 4), torch.tensor([1, 4]))[:, :].eq(torch.tensor([[1], [4]])).any(1).all()


def test_full_size_mixste_two_stages():
    """The issue's recipe: MixSTE (F=243) n=[1, 3], f=[121, 61] costs fewer paper FLOPs than
    n=1, f=121; blocks see 243, 121 and 61 frames; the output keeps all 243."""
    from hotpatch import recipes
    from hotpatch.profile import profile

    torch.manual_seed(0)
    model = recipes.get("mixste").build().eval()
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

TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


def test_cli_patch_profile_and_eval_two_stages(capsys, tmp_path):
    import json

    import tinypose
    from hotpatch.cli import main

    out_file = tmp_path / "two.pt"
    assert main(["--quiet", "patch", *TINY, "--n", "1,2", "--f", "6,3", "-o", str(out_file)]) == 0
    assert "n=1,2 f=6,3 F=9" in capsys.readouterr().out
    loaded = hotpatch.load(out_file)
    assert loaded.hotpatch_config["n"] == [1, 2] and loaded.hotpatch_config["f"] == [6, 3]
    assert main(["--quiet", "profile", str(out_file), "--by-block", "--no-fps", "--json", str(tmp_path / "p.json")]) == 0
    blocks = {b["name"]: b["frames"] for b in json.loads((tmp_path / "p.json").read_text())["blocks"]}
    assert [blocks[f"TTEblocks.{i}"] for i in range(3)] == [9, 6, 3]
    data = tinypose.write_clips(tmp_path / "clips.npz")
    assert main(["--quiet", "eval", str(out_file), "--data", str(data), "--cameras", "1",
                 "--json", str(tmp_path / "e.json")]) == 0
    assert "MPJPE selected / pruned" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--n", "1,x", "--f", "6,3"], "comma-separated list of integers"),
])
def test_cli_bad_stage_syntax_exits_2(capsys, argv, message):
    from hotpatch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["patch", *TINY, *argv, "-o", "x.pt"])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--n", "2,1", "--f", "6,3"], "strictly increasing"),
    (["--n", "1,2", "--f", "3,6"], "must not increase"),
    (["--n", "1,2", "--f", "6"], "one f per cut"),
])
def test_cli_bad_stage_lists_are_one_line(capsys, tmp_path, argv, message):
    from hotpatch.cli import main

    assert main(["--quiet", "patch", *TINY, *argv, "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_finetune_two_stages_and_resume(capsys, tmp_path):
    import json

    import tinypose
    from hotpatch.cli import main

    data = tinypose.write_clips(tmp_path / "clips.npz")
    out_pt = tmp_path / "hot2.pt"
    args = ["--quiet", "finetune", *TINY, "--data", str(data), "--n", "1,2", "--f", "6,3", "-o", str(out_pt),
            "--batch", "8", "--cameras", "1", "--steps-per-epoch", "3", "--prune-pos-embed",
            "--schedule", "step"]  # extended below: a cosine schedule spans the first run's epochs only
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume", "--json", str(tmp_path / "h.json")]) == 0
    history = json.loads((tmp_path / "h.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    trained = hotpatch.load(out_pt)
    assert trained.hotpatch_config["n"] == [1, 2] and trained.hotpatch_config["f"] == [6, 3]
    assert trained.hotpatch_prune2.pruner.pos_embed.abs().sum() > 0  # the second stage's embedding trained
