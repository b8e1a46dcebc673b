"""Multi-stage pruning on the command line: --n 1,3 --f 121,61 on patch, profile, eval, finetune."""

from __future__ import annotations

import pytest

import hotpatch
import author_vpts

MODELS = list(author_vpts.ALL)
F, CUTS, KEEPS = 27, [1, 2], [15, 7]


TINY = ["mixste", "--frames", "9", "--set", "dim=16", "--set", "depth=3", "--set", "num_heads=2"]


def patch(name: str, **kw):
    model, x = author_vpts.build(name)
    kw.setdefault("n", CUTS)
    kw.setdefault("f", KEEPS)
    return model, x, hotpatch.apply(model, example_input=x[:1], **kw)


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
