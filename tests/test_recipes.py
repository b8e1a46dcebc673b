"""Recipe files (recipes/, hotpatch.recipe): found by name or path, checked key by key, built."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from hotpatch import models, recipe
from hotpatch.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
MIXSTE = (ROOT / "recipes" / "mixste" / "hot-243-81.toml").read_text()

# The paper's settings of each installed recipe: (n, f, pipeline, F), from the HoT paper's tables.
PAPER = {
    "mixste-hot-243-81": (3, 81, "seq2seq", 243),
    "mixste-tpc-243-61": (7, 61, "seq2frame", 243),
    "mixste-hot-27-9": (3, 9, "seq2seq", 27),
    "motionbert-hot-243-81": (1, 81, "seq2seq", 243),
    "motionbert-tpc-243-121": (2, 121, "seq2frame", 243),
    "motionbert-full-hot-243-81": (1, 81, "seq2seq", 243),
    "motionbert-full-tpc-243-121": (2, 121, "seq2frame", 243),
    "mhformer-tpc-351-117": (1, 117, "seq2frame", 351),
    "mhformer-tpc-9-3": (1, 3, "seq2frame", 9),
}


def test_every_recipe_file_is_installed_under_its_name():
    files = sorted(f"{p.parent.name}-{p.stem}" for p in (ROOT / "recipes").glob("*/*.toml"))
    assert sorted(recipe.installed()) == files == sorted(PAPER)
    assert set(recipe.names()) == set(PAPER) | {"mixste", "motionbert", "mhformer"}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipes_hold_the_papers_settings(name):
    r = recipe.find(name)
    hot = r.settings()
    assert (hot["n"], hot["f"], hot.get("pipeline"), r.input["frames"]) == PAPER[name]
    assert r.family == name.split("-")[0] and r.installed
    assert "source" in r.section("paper") and "source" in r.section("finetune")


def test_family_names_give_the_default_recipe_and_the_former_constants():
    assert [recipe.find(f).name for f in ("mixste", "MotionBERT", "mhformer")] == [
        "mixste-hot-243-81", "motionbert-hot-243-81", "mhformer-tpc-351-117"]
    for family in models.names():
        module, default = models.get(family), recipe.find(family)
        assert module.DEFAULTS == default.defaults() and module.INPUT == default.convention()
    assert recipe.find("recipes/mixste/tpc-243-61.toml") is recipe.installed()["mixste-tpc-243-61"]


@pytest.mark.parametrize("family", ["mixste", "motionbert", "mhformer"])
def test_default_recipe_builds_the_model_build_gives(family):
    ours, theirs = recipe.find(family).build(), models.get(family).build()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert repr(ours) == repr(theirs)  # dropout, drop-path and norm settings too


def test_overrides_reach_the_builder_through_input_args():
    r = recipe.find("mixste-tpc-243-61")
    model = r.build({"frames": 27, "dim": 16, "depth": 2, "num_heads": 2})
    assert model.Temporal_pos_embed.shape == (1, 27, 16) and len(model.STEblocks) == 2
    with pytest.raises(ConfigError, match="input_args names no argument that takes channels"):
        recipe.find("mhformer").build({"channels": 3})


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="did you mean mixste") as err:
        recipe.find("mixtse")
    assert "mhformer-tpc-351-117" in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        recipe.find("no/such/recipe.toml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("n = 3  ", "nn = 3 "), r"unknown key \[hot\] nn; did you mean 'n'\?"),
    (lambda t: t.replace("[paper]", "[papers]"), r"unknown key \[papers\]; did you mean 'paper'\?"),
    (lambda t: t.replace("f = 81 ", 'f = "81"'), r"\[hot\] f = '81' must be an int or a list of ints"),
    (lambda t: t.replace("prune_pos_embed = true", "prune_pos_embed = 1"), r"\[hot\] prune_pos_embed = 1 must be true or false"),
    (lambda t: t.replace('prune = "tpc"', 'prune = "tcp"'), r"\[hot\] prune = 'tcp' is not one of 'tpc'"),
    (lambda t: t.replace("epochs = 160", "epochs = 1.5"), r"\[finetune\] epochs = 1.5 must be an int"),
    (lambda t: t.replace("tcloss = 0.5", "tc = 0.5"), r"unknown key \[finetune.loss\] tc"),
    (lambda t: t.replace("hotpatch.models.mixste:build", "hotpatch.models.mixste:bild"),
     r"\[architecture\] build = 'hotpatch.models.mixste:bild' does not resolve: 'hotpatch.models.mixste' has no 'bild'"),
    (lambda t: t.replace("hotpatch.models.mixste:build", "no_such_pkg.models:Lifter"),
     r"\[architecture\] build = 'no_such_pkg.models:Lifter' does not resolve: cannot import 'no_such_pkg.models'"),
    (lambda t: t.replace("hotpatch.models.mixste:build", "os:system"), r"\[architecture\] build = 'os:system' is a builtin"),
    (lambda t: t.replace("hotpatch.models.mixste:build", "hotpatch.models:names"), r"without a '-> nn.Module' return annotation"),
    (lambda t: t.replace("hotpatch.models.mixste:load_checkpoint", "hotpatch.models.mixste:load"), r"\[checkpoint\] loader"),
    (lambda t: t.replace("f = 81 ", "keep = 0.5\nf = 81"), r"exactly one of f .* and keep"),
    (lambda t: t.replace("f = 81 ", "keep = 1.5"), r"\[hot\] keep = 1.5 must be a fraction of F in \(0, 1\]"),
    (lambda t: t.replace("n = 3  ", "n = [1, 3]"), r"n and f must both be numbers or both lists"),
    (lambda t: t.replace("scores = false", "scores = true"), r"scores = true but channels = 2"),
    (lambda t: t.replace("frames = 243 ", "# no frames"), r"\[input\] needs frames"),
    (lambda t: t.replace("[hot]", "[hot"), r"is not valid TOML"),
], ids=["unknown-key", "unknown-section", "f-str", "bool", "choice", "int", "nested-key", "no-attr", "no-module",
        "not-a-model", "unannotated", "loader", "f-and-keep", "keep-range", "stage-lists", "scores", "required", "toml"])
def test_bad_recipe_files_are_one_line_errors_naming_the_key(tmp_path, edit, message):
    text = edit(MIXSTE)
    assert text != MIXSTE
    with pytest.raises(ConfigError, match=message) as err:
        recipe.find(_write(tmp_path, text))
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_a_users_recipe_builds_a_model_defined_outside_hotpatch(tmp_path, monkeypatch):
    pkg = tmp_path / "mylifters"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(
        "import torch.nn as nn\n"
        "class Lifter(nn.Module):\n"
        "    def __init__(self, num_frames=27, width=8):\n"
        "        super().__init__()\n"
        "        self.num_frames, self.proj = num_frames, nn.Linear(2, width)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, """
[architecture]
build = "mylifters.models:Lifter"
input_args = { frames = "num_frames" }
args = { width = 4 }
[input]
frames = 27
joints = 17
channels = 2
[hot]
n = 1
keep = 0.334
""")
    try:
        r = recipe.find(path)
        assert (r.name, r.installed, r.settings()) == ("mine", False, {"n": 1, "keep": 0.334})
        model = r.build({"frames": 9, "width": 6})
        assert (model.num_frames, model.proj.out_features) == (9, 6)
        with pytest.raises(ConfigError, match="builds its model for joints=17 only"):
            r.build({"joints": 16})
    finally:  # no other test may find this package under its name
        for name in ("mylifters.models", "mylifters"):
            sys.modules.pop(name, None)


def test_installed_files_are_the_checkouts_recipes():
    """pyproject installs recipes/ as hotpatch/recipe_files and lists every package of hotpatch/."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hotpatch").rglob("__init__.py"))
    assert sorted(project["packages"]) == sorted([*found, "hotpatch.recipe_files"])
    assert project["package-dir"] == {"hotpatch.recipe_files": "recipes"}
    assert project["package-data"] == {"hotpatch.recipe_files": ["*/*.toml"]}
    assert recipe.recipe_dir().resolve() == (ROOT / "recipes").resolve()


def test_sources_build_annotated_factories_and_installed_recipe_names():
    from hotpatch import sources
    from hotpatch.errors import TargetError

    model = sources.build({"class": "hotpatch.models.mixste:build", "kwargs": {"frames": 9, "dim": 16, "depth": 1}})
    assert model.Temporal_pos_embed.shape == (1, 9, 16)
    with pytest.raises(TargetError, match="not an nn.Module subclass"):
        sources.build({"class": "hotpatch.models:names", "kwargs": {}})  # a function, but not annotated -> nn.Module
    model = sources.build({"recipe": "mhformer-tpc-9-3", "overrides": {"dim": 16, "d_hid": 32}})
    assert model.hotpatch_source == {"recipe": "mhformer-tpc-9-3", "overrides": {"dim": 16, "d_hid": 32}}
    assert model.Transformer_hypothesis.pos_embed_1.shape[1] == 9
    with pytest.raises(TargetError, match="does not have"):
        sources.build({"recipe": "mixste-hot-999-1", "overrides": {}})


def test_built_models_record_how_to_build_them_again(tmp_path):
    from hotpatch import sources

    model = recipe.find("mhformer-tpc-9-3").build({"dim": 16, "d_hid": 32})
    assert model.hotpatch_source == {"recipe": "mhformer-tpc-9-3", "overrides": {"dim": 16, "d_hid": 32}}
    assert not hasattr(model, "hotpatch_input")  # an installed recipe's convention is found by its name
    text = MIXSTE.replace("hotpatch.models.mixste:build", "author_vpts:MixSTELike").replace(
        'frames = "frames", joints = "joints", channels = "channels"', 'frames = "num_frame"').replace(
        "embed_dim_ratio = 512", "dim = 16").replace("num_heads = 8", "heads = 2").replace(
        "mlp_ratio = 2.0\n", "").replace("qkv_bias = true\n", "").replace("depth = 8", "depth = 2")
    model = recipe.find(_write(tmp_path, text)).build({"frames": 27})
    assert model.hotpatch_source == {"class": "author_vpts:MixSTELike", "kwargs": {
        "num_frame": 27, "dim": 16, "depth": 2, "heads": 2, "drop_path_rate": 0.1}}
    assert model.hotpatch_input == {"normalize": "screen", "scores": False, "joints": "h36m17"}
    assert type(sources.build(model.hotpatch_source)) is type(model)
