"""hotpatch.save / hotpatch.load: plain-data files, exact round trips, clear errors."""

from __future__ import annotations

import pytest
import torch

import hotpatch
import author_vpts
from hotpatch import saving
from hotpatch.errors import CheckpointError, ConfigError, TargetError
from hotpatch.models import mixste, motionbert


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere (zero-initialised TRA queries would hide loading bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _out(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_recipes_record_their_source():
    assert mixste.build(9, dim=16, depth=2).hotpatch_source == \
        {"recipe": "mixste", "overrides": {"frames": 9, "dim": 16, "depth": 2}}
    assert motionbert.build(dim=16).hotpatch_source == \
        {"recipe": "motionbert", "overrides": {"variant": "lite", "dim": 16}}


def test_round_trip_recipe_is_exact_also_after_training_tra(tmp_path):
    torch.manual_seed(0)
    model = mixste.build(27, dim=32, depth=2)
    _perturb(model, 1)
    patched = hotpatch.apply(model, n=1, f=9, prune_pos_embed=True)
    _perturb(patched.hotpatch_recover, 2)  # as if TRA had been fine-tuned
    _perturb(patched.hotpatch_prune, 3)
    path = hotpatch.save(patched, tmp_path / "hot.pt")

    raw = torch.load(path, weights_only=True)  # plain data: no code is unpickled
    assert raw["format"] == "hotpatch/1" and raw["config"] == patched.hotpatch_config
    assert raw["source"] == {"recipe": "mixste", "overrides": {"frames": 27, "dim": 32, "depth": 2}}

    loaded = hotpatch.load(path)
    assert isinstance(loaded, torch.fx.GraphModule) and not loaded.training
    assert loaded.hotpatch_config == patched.hotpatch_config
    assert loaded.hotpatch_source == raw["source"]
    a, b = patched.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 27, 17, 2)
    assert torch.equal(_out(patched, x), _out(loaded, x))


def test_round_trip_user_class_needs_a_source(tmp_path):
    torch.manual_seed(0)
    model = author_vpts.MixSTELike(depth=4)
    _perturb(model, 4)
    patched = hotpatch.apply(model, n=2, f=9, recover="linear")
    with pytest.raises(ConfigError, match="source="):
        hotpatch.save(patched, tmp_path / "x.pt")
    source = {"class": "author_vpts:MixSTELike", "kwargs": {"depth": 4}}
    path = hotpatch.save(patched, tmp_path / "x.pt", source=source)
    loaded = hotpatch.load(path)
    assert loaded.hotpatch_source == source and loaded.hotpatch_config["recover"] == "linear"
    x = torch.randn(1, 27, 17, 2)
    assert torch.equal(_out(patched, x), _out(loaded, x))


def test_save_refuses_unpatched_models_and_unplain_sources(tmp_path):
    model = author_vpts.MixSTELike()
    with pytest.raises(ConfigError, match="hotpatch.apply"):
        hotpatch.save(model, tmp_path / "x.pt")
    patched = hotpatch.apply(model, n=1, f=9)
    with pytest.raises(ConfigError, match="plain data"):
        hotpatch.save(patched, tmp_path / "x.pt", source={"class": "author_vpts:MixSTELike", "kwargs": {"w": torch.ones(1)}})
    with pytest.raises(TargetError, match="has no attribute"):
        hotpatch.save(patched, tmp_path / "x.pt", source={"class": "author_vpts:NoSuchModel", "kwargs": {}})
    assert not list(tmp_path.iterdir())  # nothing half-written


def _payload(**changes):
    payload = {"format": "hotpatch/1", "hotpatch_version": "0", "torch_version": "0",
               "config": {"n": 1, "f": 9, "frames": 27, "pipeline": "seq2seq", "prune": "tpc",
                          "recover": "tra", "k": 2, "input_shape": [27, 17, 2]},
               "source": {"class": "os:system", "kwargs": {"command": "echo pwned"}},
               "state_dict": {}}
    payload.update(changes)
    return payload


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("corrupt", "cannot read"),
    ("state_dict", "not a hotpatch file"),
    ("pickled", "pickled Python objects"),
    ("future", "hotpatch/9"),
    ("incomplete", "incomplete"),
    ("not_a_module_class", "not an nn.Module subclass"),
])
def test_bad_files_are_checkpoint_errors(tmp_path, case, match):
    path = tmp_path / "f.pt"
    if case == "corrupt":
        torch.save({"a": torch.ones(3)}, path)
        path.write_bytes(path.read_bytes()[:40])
    elif case == "state_dict":
        torch.save(author_vpts.MixSTELike().state_dict(), path)
    elif case == "pickled":
        torch.save(author_vpts.MixSTELike(), path)
    elif case == "future":
        torch.save(_payload(format="hotpatch/9"), path)
    elif case == "incomplete":
        torch.save(_payload(config={"n": 1}), path)
    elif case == "not_a_module_class":
        torch.save(_payload(), path)  # names os:system: must be refused, never called
    error = TargetError if case == "not_a_module_class" else CheckpointError
    with pytest.raises(error, match=match):
        hotpatch.load(path)


def test_read_returns_the_contents_without_building(tmp_path):
    patched = hotpatch.apply(mixste.build(27, dim=16, depth=2), n=1, f=3)
    path = hotpatch.save(patched, tmp_path / "m.pt")
    payload = saving.read(path)
    assert payload["config"]["f"] == 3 and set(payload["state_dict"]) == set(patched.state_dict())
