"""hotpatch.save_pretrained / from_pretrained: config.json + model.safetensors + README.md, exact
round trips for every recipe and every kind of patched test model, no pickles, atomic writes;
and files of the earlier format (hotpatch.save) still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import author_vpts
import frame_use_vpts
import gated_vpts
import hotpatch
import layerscale_vpt
import skip_vpts
import wild_vpts
from checks import call_with
from denoiser_vpts import DiffusionDenoiser, MaskedSeqVPT, denoiser_inputs, masked_inputs
from hotpatch import recipe, saving
from hotpatch.cli import main
from hotpatch.errors import CheckpointError, ConfigError, OutputError, TargetError
from hotpatch.pretrained import card_accuracy

# Each recipe at a small width, its own F and HoT setting (n needs depth > n temporal levels).
SMALL = {"mixste": {"dim": 16, "num_heads": 2}, "motionbert": {"dim_feat": 16, "dim_rep": 16, "num_heads": 2, "depth": 3},
         "mhformer": {"dim": 16, "d_hid": 32}}


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    """As if trained: TRA queries, embeddings and all move off their initial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _round_trip(patched, inputs, tmp_path, source=None):
    directory = hotpatch.save_pretrained(patched, tmp_path / "saved", source=source)
    assert sorted(os.listdir(directory)) == ["README.md", "config.json", "model.safetensors"]
    loaded = hotpatch.from_pretrained(directory)
    with torch.no_grad():
        assert torch.equal(call_with(loaded, inputs), call_with(patched.eval(), inputs))
    assert loaded.hotpatch_config == patched.hotpatch_config
    return directory, loaded


@pytest.mark.parametrize("name", sorted(recipe.installed()))
def test_every_recipe_round_trips_exactly(name, tmp_path):
    r = recipe.find(name)
    torch.manual_seed(0)
    model = r.build(SMALL[r.family]).eval()
    model.hotpatch_source = {"recipe": name, "overrides": SMALL[r.family]}  # as the command line records it
    _perturb(model, 1)
    patched = hotpatch.apply(model, example_input=torch.randn(1, *(r.input[k] for k in ("frames", "joints", "channels"))),
                             **r.settings())
    _perturb(patched, 2)
    x = torch.randn(2, *(r.input[k] for k in ("frames", "joints", "channels")))
    directory, loaded = _round_trip(patched, x, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    assert config["architecture"] == {"recipe": name, "overrides": SMALL[r.family]}
    assert config["input"]["joints"] == r.input["layout"] and config["patch"]["n"] == r.settings()["n"]


def _author(name):
    model, x = author_vpts.build(name)
    return model, x, {"n": 1, "f": 9}, f"author_vpts:{type(model).__name__}"


def _family(module, name, f=9):
    model, x = module.build(name)
    return model, x, {"n": 1, "f": f}, f"{module.__name__}:{type(model).__name__}"


def _layerscale(cls, **kwargs):
    torch.manual_seed(0)
    model = getattr(layerscale_vpt, cls)(**kwargs).eval()
    _perturb(model, 1, 0.05)  # zero scales and embeddings that a fresh model would hide
    return model, torch.randn(2, 27, 17, 2), {"n": 1, "f": 9}, (f"layerscale_vpt:{cls}", kwargs)


def _several(cls, inputs):
    torch.manual_seed(0)
    model = cls().eval()
    return model, inputs(), {"n": 1, "f": 9}, f"denoiser_vpts:{cls.__name__}"


KINDS = {
    **{f"author-{n}": (lambda n=n: _author(n)) for n in author_vpts.ALL},
    **{f"frame-use-{n}": (lambda n=n: _family(frame_use_vpts, n, 18 if "strided" in n or "avgpool" in n else 9))
       for n in frame_use_vpts.ALL},
    **{f"gated-{n}": (lambda n=n: _family(gated_vpts, n)) for n in gated_vpts.ALL},
    **{f"wild-{n}": (lambda n=n: _family(wild_vpts, n)) for n in wild_vpts.PATCHABLE},
    "skip-reinject": lambda: (*skip_vpts.build(), {"n": 1, "f": 9}, "skip_vpts:ReinjectFormer"),
    "layer-scale-0": lambda: _layerscale("LayerScaleVPT", init_values=0.0),
    "zero-embed-joint-major": lambda: _layerscale("TrajectoryVPT", zero_embed=True, joint_major=True),
    "denoiser-several-inputs": lambda: _several(DiffusionDenoiser, denoiser_inputs),
    "masked-several-inputs": lambda: _several(MaskedSeqVPT, masked_inputs),
}
SETTINGS = {
    "": {},
    "multistage": {"n": [1, 2], "f": [13, 7]},
    "merge-unmerge": {"prune": "merge", "recover": "unmerge"},
    "seq2frame": {"pipeline": "seq2frame"},
    "linear-tra-pos-embed": {"recover": "linear-tra", "prune_pos_embed": True},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_test_model_round_trips_exactly(kind, tmp_path):
    model, inputs, settings, source = KINDS[kind]()
    cls, kwargs = source if isinstance(source, tuple) else (source, {})
    first = {k: v[:1] for k, v in inputs.items()} if isinstance(inputs, dict) else (
        tuple(v[:1] for v in inputs) if isinstance(inputs, tuple) else inputs[:1])
    patched = hotpatch.apply(model, example_input=first, **settings)
    _perturb(patched, 2, 0.01)
    _round_trip(patched, inputs, tmp_path, source={"class": cls, "kwargs": kwargs})


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s])
def test_every_patch_setting_round_trips_exactly(setting, tmp_path):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, **{"n": 1, "f": 9, **SETTINGS[setting]})
    _perturb(patched, 3, 0.01)
    _, loaded = _round_trip(patched, x, tmp_path, source={"class": "author_vpts:MixSTELike", "kwargs": {}})
    assert loaded.hotpatch_config["pipeline"] == patched.hotpatch_config["pipeline"]


def test_unpatched_models_round_trip_and_the_card_says_what_it_knows(tmp_path):
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    _perturb(model, 1)
    directory = hotpatch.save_pretrained(model, tmp_path / "base", accuracy={"mpjpe_mm": 52.3, "data": "my test set"})
    loaded = hotpatch.from_pretrained(directory)
    x = torch.randn(2, 27, 17, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    card = (directory / "README.md").read_text()
    assert "none (unpatched)" in card and "mpjpe_mm 52.3 on my test set (measured" in card
    assert json.loads((directory / "config.json").read_text())["card"]["accuracy"]["kind"] == "measured"


def test_random_weights_and_an_accuracy_are_not_saved_together(tmp_path):
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    with pytest.raises(ConfigError, match="random model has no accuracy"):
        hotpatch.save_pretrained(model, tmp_path / "x", accuracy={"mpjpe_mm": 50.0}, random_weights=True)
    assert not (tmp_path / "x").exists()


def test_the_card_counts_params_and_flops_before_and_after(tmp_path):
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    directory = hotpatch.save_pretrained(hotpatch.apply(model, n=1, f=9, prune_pos_embed=True), tmp_path / "a")
    card, record = (directory / "README.md").read_text(), json.loads((directory / "config.json").read_text())["card"]
    assert record["flops_paper"]["after"] < record["flops_paper"]["before"]
    assert record["params"]["after"] > record["params"]["before"]  # TRA and the pruned-token embedding
    assert "| HoT setting | n=1 f=9 F=27 seq2seq tpc+tra pos-embed |" in card
    assert "counted by hotpatch on one clip" in card and "| architecture | recipe `mixste` (hotpatch.models.mixste:build)" in card
    assert "not measured (the paper's numbers in recipe mixste-hot-243-81 are for another architecture)" in card


CONFIG = {"n": 3, "f": 81, "frames": 243, "pipeline": "seq2seq", "prune": "tpc", "recover": "tra", "k": 2,
          "prune_pos_embed": True, "recover_frames": None, "input_shape": [243, 17, 2]}


def test_the_card_quotes_the_papers_accuracy_only_for_the_recipes_own_model_and_setting():
    paper = card_accuracy({"recipe": "mixste-hot-243-81", "overrides": {}}, CONFIG)
    assert paper["kind"] == "paper" and paper["mpjpe_mm"] == 41.0
    assert "41.0 mm on Human3.6M, CPN detections: the paper's number for recipe mixste-hot-243-81" in paper["text"]
    assert "not measured on these weights" in paper["text"]
    assert card_accuracy({"recipe": "mixste", "overrides": {}}, CONFIG)["mpjpe_mm"] == 41.0  # the family's default
    assert card_accuracy({"recipe": "mixste", "overrides": {}}, None)["mpjpe_mm"] == 40.9  # unpatched: the original's
    tpc = {**CONFIG, "n": 7, "f": 61, "pipeline": "seq2frame", "recover": None, "prune_pos_embed": False}
    assert card_accuracy({"recipe": "mixste-tpc-243-61", "overrides": {}}, tpc)["mpjpe_mm"] == 39.9
    for overrides, changed, what in [({"depth": 4}, {}, "architecture"), ({"frames": 27}, {}, "architecture"),
                                     ({}, {"recover": "linear"}, "setting"), ({}, {"f": 61}, "setting"),
                                     ({}, {"prune_pos_embed": False}, "setting")]:
        text = card_accuracy({"recipe": "mixste", "overrides": overrides}, {**CONFIG, **changed})["text"]
        assert text.endswith(f"are for another {what})"), text
    assert card_accuracy({"class": "author_vpts:MixSTELike", "kwargs": {}}, CONFIG)["kind"] is None
    measured = card_accuracy({"recipe": "mixste", "overrides": {}}, CONFIG, {"mpjpe_mm": 40.1, "data": "S9, S11"})
    assert measured["kind"] == "measured" and measured["text"] == "mpjpe_mm 40.1 on S9, S11 (measured; given to save_pretrained)"


def test_writing_is_atomic_and_replaces_only_its_own_kind_of_directory(tmp_path, monkeypatch):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9)
    source = {"class": "author_vpts:MixSTELike", "kwargs": {}}
    target = hotpatch.save_pretrained(patched, tmp_path / "out", source=source)
    first = (target / "model.safetensors").read_bytes()
    _perturb(patched, 5)

    import safetensors.torch

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        hotpatch.save_pretrained(patched, target, source=source)
    assert (target / "model.safetensors").read_bytes() == first  # the older directory, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left
    monkeypatch.undo()
    hotpatch.save_pretrained(patched, target, source=source)  # an older save is replaced
    assert (target / "model.safetensors").read_bytes() != first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="already holds other files"):
        hotpatch.save_pretrained(patched, tmp_path / "mine", source=source)


def test_loading_runs_no_pickled_code_and_refuses_non_module_builders(tmp_path):
    model, _ = author_vpts.build("mixste")
    directory = hotpatch.save_pretrained(hotpatch.apply(model, n=1, f=9), tmp_path / "d",
                                         source={"class": "author_vpts:MixSTELike", "kwargs": {}})
    config = json.loads((directory / "config.json").read_text())
    config["architecture"] = {"class": "os:system", "kwargs": {"command": "echo pwned"}}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetError, match="not an nn.Module subclass"):
        hotpatch.from_pretrained(directory)
    (directory / "model.safetensors").write_bytes(b"\x80\x04pickle?")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        hotpatch.from_pretrained(directory)
    (directory / "config.json").write_text('{"format": "hotpatch-pretrained/9"}')
    with pytest.raises(CheckpointError, match="hotpatch-pretrained/9"):
        hotpatch.from_pretrained(directory)
    with pytest.raises(CheckpointError, match="no config.json"):
        hotpatch.from_pretrained(tmp_path)


def test_files_of_the_earlier_format_still_load(tmp_path):
    """A ``hotpatch/1`` file as the release before save_pretrained wrote it (and one from before the
    analysis and input records existed): ``hotpatch.load`` and every command still read them."""
    torch.manual_seed(0)
    model = hotpatch.models.get("mixste").build(27, dim=16, depth=2, num_heads=2)
    patched = hotpatch.apply(model, n=1, f=9, recover="linear")
    config = {k: patched.hotpatch_config[k] for k in ("n", "f", "frames", "pipeline", "prune", "recover", "k",
                                                      "input_shape")}
    old = {"format": "hotpatch/1", "hotpatch_version": "0.1.0", "torch_version": "2.13.0+cpu", "config": config,
           "source": {"recipe": "mixste", "overrides": {"frames": 27, "dim": 16, "depth": 2, "num_heads": 2}},
           "state_dict": {k: v.clone() for k, v in patched.state_dict().items()}}
    torch.save(old, tmp_path / "old.pt")
    loaded = hotpatch.load(tmp_path / "old.pt")
    x = torch.randn(2, 27, 17, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), patched.eval()(x))
    assert main(["--quiet", "patch", "mixste", "--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set",
                 "num_heads=2", "--n", "1", "--f", "9", "-o", str(tmp_path / "new") + "/"]) == 0
    assert main(["--quiet", "profile", str(tmp_path / "old.pt"), "--counters", "paper", "--no-fps"]) == 0


def test_cli_patch_to_a_directory_then_use_it_as_target_without_trust(capsys, tmp_path):
    out = str(tmp_path / "hot_mixste") + "/"
    tiny = ["mixste", "--frames", "27", "--set", "dim=16", "--set", "depth=2", "--set", "num_heads=2"]
    assert main(["--quiet", "patch", *tiny, "--n", "1", "--f", "9", "-o", out]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'hot_mixste'}/: recipe mixste" in printed
    assert saving.is_directory(tmp_path / "hot_mixste")
    assert main(["--quiet", "profile", out, "--counters", "paper", "--no-fps", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["f"] == 9 and data["target"] == f"patched model from {tmp_path / 'hot_mixste'}"
    assert main(["--quiet", "patch", out, "-o", out]) == 2
    assert "overwrite its own input" in capsys.readouterr().err


def test_a_fresh_process_loads_a_users_model_without_trust(tmp_path):
    pkg = tmp_path / "freshlifters"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from author_vpts import MixSTELike as Lifter\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(author_vpts.__file__).parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    sys.path.insert(0, str(tmp_path))
    try:
        import freshlifters

        torch.manual_seed(0)
        patched = hotpatch.apply(freshlifters.Lifter(depth=2), n=1, f=9)
        _perturb(patched, 1)
        directory = hotpatch.save_pretrained(patched, tmp_path / "lifter",
                                             source={"class": "freshlifters:Lifter", "kwargs": {"depth": 2}})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("freshlifters", None)
    x = torch.randn(2, 27, 17, 2)
    torch.save(x, tmp_path / "x.pt")
    code = ("import torch, hotpatch; m = hotpatch.from_pretrained(r'%s'); "
            "torch.save(m(torch.load(r'%s')), r'%s')" % (directory, tmp_path / "x.pt", tmp_path / "y.pt"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), patched.eval()(x))
