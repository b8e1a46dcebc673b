"""Recipes on the command line: ``hotpatch recipes``, and a recipe name or file as TARGET."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import hotpatch
from hotpatch import saving
from hotpatch.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--counters", "paper", "--no-fps"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def small_recipe(tmp_path: Path, **replace: str) -> Path:
    """recipes/mixste/hot-243-81.toml, copied and made small (F=27, C=32, 2 block pairs, n=1, f=9)."""
    text = (ROOT / "recipes" / "mixste" / "hot-243-81.toml").read_text()
    for old, new in {"embed_dim_ratio = 512": "embed_dim_ratio = 32", "depth = 8": "depth = 2",
                     "frames = 243 ": "frames = 27 ", "n = 3 ": "n = 1 ", "f = 81 ": "f = 9 ", **replace}.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


def test_recipes_lists_every_recipe_with_the_papers_numbers(capsys):
    rc, out, _ = run(capsys, "recipes")
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith(("mixste", "motion", "mhformer"))}
    assert len(rows) == 9 and all(len(line) <= 120 for line in out.splitlines()[:-1])
    assert "mixste-hot-243-81 *" in rows["mixste-hot-243-81"] and "*" not in rows["mixste-tpc-243-61"]
    for name, numbers in {"mixste-hot-243-81": ("33.78 → 35.00", "277.25 → 167.52", "40.9 → 41.0", "H36M"),
                          "motionbert-hot-243-81": ("16.00 → 16.35", "131.09 → 63.21", "39.8 → 39.8"),
                          "mhformer-tpc-351-117": ("n=1 f=117 seq2frame tpc ", "14.15 → 8.22"),
                          "mixste-hot-27-9": ("n=3 f=9 seq2seq tpc+tra", "54.9 → 53.2", "3DHP")}.items():
        assert all(number in rows[name] for number in numbers), rows[name]


def test_recipes_name_prints_the_file_and_json_holds_the_values(capsys):
    rc, out, _ = run(capsys, "recipes", "motionbert")
    text = (ROOT / "recipes" / "motionbert" / "hot-243-81.toml").read_text()
    assert rc == 0 and out.splitlines()[0].startswith("# motionbert-hot-243-81: ") and text.strip() in out
    rc, out, _ = run(capsys, "recipes", "--json", "-")
    data = {r["name"]: r for r in json.loads(out)}
    assert data["mhformer-tpc-351-117"]["hot"] == {"n": 1, "f": 117, "pipeline": "seq2frame", "prune": "tpc"}
    assert data["mixste-tpc-243-61"]["paper"]["flops_g"] == 251.29


def test_profile_of_a_recipe_file_applies_its_setting_and_flags_override_it(capsys, tmp_path):
    path = small_recipe(tmp_path)
    rc, out, _ = run(capsys, "profile", str(path), *QUICK, "--json", "-")
    data = json.loads(out)
    assert rc == 0 and data["input_shape"] == [1, 27, 17, 2]
    assert (data["config"]["n"], data["config"]["f"], data["config"]["prune_pos_embed"]) == (1, 9, True)
    assert data["after"]["flops"]["paper"]["value"] < data["before"]["flops"]["paper"]["value"]
    rc, out, _ = run(capsys, "profile", str(path), *QUICK, "--n", "1", "--f", "5", "--no-prune-pos-embed", "--json", "-")
    assert rc == 0 and (json.loads(out)["config"]["f"], json.loads(out)["config"]["prune_pos_embed"]) == (5, False)
    rc, out, _ = run(capsys, "profile", str(path), *QUICK, "--original", "--json", "-")
    assert rc == 0 and json.loads(out)["config"] is None
    rc, out, _ = run(capsys, "profile", str(path), *QUICK, "--set", "depth=3", "--frames", "9", "--f", "3", "--n", "2",
                     "--json", "-")
    data = json.loads(out)
    assert rc == 0 and data["input_shape"] == [1, 9, 17, 2] and data["config"]["n"] == 2
    assert data["source"] == {"recipe": "mixste", "overrides": {
        "frames": 9, "joints": 17, "channels": 2, "embed_dim_ratio": 32, "depth": 3, "num_heads": 8,
        "mlp_ratio": 2.0, "qkv_bias": True, "drop_path_rate": 0.1}}


def test_an_installed_recipe_by_full_name_keeps_its_pipeline(capsys):
    rc, out, _ = run(capsys, "profile", "mixste-tpc-243-61", "--frames", "27", "--set", "dim=16", "--set", "depth=2",
                     "--set", "num_heads=2", "--n", "1", "--f", "9", *QUICK, "--json", "-")
    data = json.loads(out)
    assert rc == 0 and data["target"].startswith("recipe mixste-tpc-243-61 ")
    assert (data["config"]["pipeline"], data["config"]["recover"], data["config"]["prune_pos_embed"]) == \
        ("seq2frame", None, False)
    assert data["source"]["recipe"] == "mixste-tpc-243-61"


def test_a_family_name_still_profiles_the_model_as_it_is(capsys):
    rc, out, _ = run(capsys, "profile", "mixste", "--frames", "27", "--set", "dim=16", "--set", "depth=2", *QUICK,
                     "--json", "-")
    assert rc == 0 and json.loads(out)["config"] is None


def test_a_users_recipe_patches_saves_and_loads_a_model_defined_outside_hotpatch(capsys, tmp_path):
    path = small_recipe(tmp_path, **{'build = "hotpatch.models.mixste:build"': 'build = "author_vpts:MixSTELike"',
                                     'frames = "frames", joints = "joints", channels = "channels"':
                                         'frames = "num_frame", joints = "num_joints", channels = "in_chans"',
                                     "embed_dim_ratio = 32": "dim = 32", "num_heads = 8": "heads = 4",
                                     "mlp_ratio = 2.0\n": "", "qkv_bias = true\n": "",
                                     'normalize = "screen"': 'normalize = "box"'})
    out_pt = tmp_path / "hot.pt"
    rc, out, _ = run(capsys, "patch", str(path), "-o", str(out_pt))
    assert rc == 0 and f"recipe {path}" in out and "n=1 f=9 F=27" in out
    raw = saving.read(out_pt)
    assert raw["source"] == {"class": "author_vpts:MixSTELike", "kwargs": {
        "num_frame": 27, "num_joints": 17, "in_chans": 2, "dim": 32, "depth": 2, "heads": 4, "drop_path_rate": 0.1}}
    assert raw["input"] == {"normalize": "box", "scores": False, "joints": "h36m17"}
    loaded = hotpatch.load(out_pt)
    assert loaded.hotpatch_config["prune_pos_embed"] is True and loaded.hotpatch_input["normalize"] == "box"


def test_a_bad_recipe_file_is_one_line(capsys, tmp_path):
    path = small_recipe(tmp_path, **{"prune_pos_embed = true": "prune_pos_embed = yes"})
    rc, out, err = run(capsys, "profile", str(path))
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "is not valid TOML" in err and str(path) in err
    path = small_recipe(tmp_path, **{'pipeline = "seq2seq"': 'pipelines = "seq2seq"'})
    rc, _, err = run(capsys, "patch", str(path), "-o", str(tmp_path / "x.pt"))
    assert rc == 2 and "unknown key [hot] pipelines; did you mean 'pipeline'?" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", ["mixste", "mixste-hot-243-81"])
def test_checkpoints_load_through_the_recipes_loader(capsys, tmp_path, name):
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    ck = tmp_path / "ck.bin"
    torch.save({"model_pos": {f"module.{k}": v for k, v in model.state_dict().items()}}, ck)  # the official layout
    rc, _, _ = run(capsys, "patch", name, "--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2",
                   "--n", "1", "--f", "9", "--checkpoint", str(ck), "-o", str(tmp_path / "p.pt"))
    saved = saving.read(tmp_path / "p.pt")["state_dict"]
    assert rc == 0 and all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_a_model_patched_without_a_checkpoint_is_said_to_have_random_weights(capsys, tmp_path, caplog):
    small = ["--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2", "--n", "1", "--f", "9"]
    rc, _, _ = run(capsys, "patch", "mixste", *small, "-o", f"{tmp_path / 'random'}/")
    card = (tmp_path / "random" / "README.md").read_text()
    config = json.loads((tmp_path / "random" / "config.json").read_text())
    assert rc == 0 and "no trained weights (no --checkpoint)" in caplog.text
    assert "the weights are random" in card and "paper" not in card.split("| accuracy |")[1].splitlines()[0]
    assert config["card"]["accuracy"]["kind"] == "random weights"
    caplog.clear()
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    ck = tmp_path / "ck.bin"
    torch.save({"model_pos": {f"module.{k}": v for k, v in model.state_dict().items()}}, ck)
    rc, _, _ = run(capsys, "patch", "mixste", *small, "--checkpoint", str(ck), "-o", f"{tmp_path / 'trained'}/")
    assert rc == 0 and "no trained weights (no --checkpoint)" not in caplog.text
    assert "the weights are random" not in (tmp_path / "trained" / "README.md").read_text()


def test_patching_a_checkpoint_without_tra_weights_says_the_tra_is_untrained(capsys, tmp_path, caplog):
    small = ["--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2", "--n", "1", "--f", "9"]
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    ck = tmp_path / "ck.bin"
    torch.save({"model_pos": {f"module.{k}": v for k, v in model.state_dict().items()}}, ck)  # no TRA weights
    rc, _, _ = run(capsys, "patch", "mixste", *small, "--checkpoint", str(ck), "-o", str(tmp_path / "tra.pt"))
    assert rc == 0 and "tra.pt: the TRA has no trained weights" in caplog.text and "--recover linear" in caplog.text
    caplog.clear()
    rc, _, _ = run(capsys, "patch", "mixste", *small, "--recover", "linear", "--checkpoint", str(ck),
                   "-o", str(tmp_path / "linear.pt"))
    assert rc == 0 and "no trained weights" not in caplog.text
