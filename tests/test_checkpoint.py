"""hotpatch.checkpoint: reading official layouts, readable load errors, HoT key mapping."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn as nn

from hotpatch.checkpoint import (
    LoadReport,
    load_checkpoint_file,
    load_state_dict,
    map_hot_keys,
    read_state_dict,
    strip_prefix,
)
from hotpatch.errors import CheckpointError, HotpatchError


class TinyVPT(nn.Module):
    """A (1, F, C) temporal embedding, an embedding Linear and a head: enough to load into."""

    def __init__(self, frames: int = 9, dim: int = 8):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.Temporal_pos_embed = nn.Parameter(torch.randn(1, frames, dim))
        self.blocks = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.head = nn.Linear(dim, 3)


class Opaque:
    """A pickled Python object that safe loading must refuse."""

    def __init__(self, value: int = 7):
        self.value = value


def _sd(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- reading

@pytest.mark.parametrize("layout", ["plain", "plain_module", "model_pos_module", "model_pos",
                                    "state_dict", "model", "model_module"])
def test_read_state_dict_accepts_official_layouts(layout, tmp_path):
    sd = _sd(TinyVPT())
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    payload = {
        "plain": sd,
        "plain_module": wrapped,
        "model_pos_module": {"epoch": 3, "model_pos": wrapped, "optimizer": {"state": {}}},
        "model_pos": {"model_pos": sd, "min_loss": 1.0},
        "state_dict": {"state_dict": sd},
        "model": {"model": sd},
        "model_module": {"model": wrapped, "lr": 0.1},
    }[layout]
    path = tmp_path / "ck.pth"
    torch.save(payload, path)
    read = read_state_dict(path)
    assert list(read) == list(sd)
    assert all(torch.equal(read[k], sd[k]) for k in sd)


def test_numpy_random_state_next_to_the_weights_is_allowed(tmp_path):
    path = tmp_path / "mixste.bin"
    torch.save({"random_state": np.random.RandomState(5), "history": np.arange(4),
                "model_pos": {"module.w": torch.ones(2)}}, path)
    assert list(read_state_dict(path)) == ["w"]


def test_numpy_objects_in_a_legacy_format_file_are_allowed(tmp_path):
    path = tmp_path / "legacy.bin"
    torch.save({"random_state": np.random.RandomState(5), "model_pos": {"module.w": torch.ones(2)}}, path,
               _use_new_zipfile_serialization=False)
    assert list(read_state_dict(path)) == ["w"]


def test_arbitrary_python_objects_need_allow_pickle(tmp_path):
    path = tmp_path / "opaque.bin"
    torch.save({"extra": Opaque(), "state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(CheckpointError, match="allow_pickle=True") as err:
        read_state_dict(path)
    assert "Opaque" in str(err.value)
    assert list(read_state_dict(path, allow_pickle=True)) == ["w"]
    legacy = tmp_path / "opaque_legacy.bin"
    torch.save({"extra": Opaque(), "state_dict": {"w": torch.ones(2)}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="Opaque.*allow_pickle=True"):
        read_state_dict(legacy)


@pytest.mark.parametrize("content", [b"", b"hello, I am text", b"PK\x03\x04 broken zip"])
def test_unreadable_file_is_a_checkpoint_error(content, tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, HotpatchError)


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(_sd(TinyVPT(frames=64, dim=64)), good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="cut.pth"):
        read_state_dict(cut)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.bin")


def test_dict_without_weights_lists_its_keys(tmp_path):
    path = tmp_path / "meta.bin"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="'epoch'.*model_pos"):
        read_state_dict(path)
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        read_state_dict(path)


def test_strip_prefix_only_when_every_key_has_it():
    assert list(strip_prefix({"module.a": 1, "module.b": 2})) == ["a", "b"]
    assert list(strip_prefix({"module.module.a": 1})) == ["a"]
    assert list(strip_prefix({"module.a": 1, "b": 2})) == ["module.a", "b"]


# --------------------------------------------------------------------------- loading

def test_load_state_dict_loads_and_reports():
    source, target = TinyVPT(), TinyVPT()
    report = load_state_dict(target, _sd(source), source="ck")
    assert isinstance(report, LoadReport) and report.ok
    assert len(report.loaded) == len(source.state_dict())
    assert torch.equal(target.Temporal_pos_embed, source.Temporal_pos_embed)
    assert str(report) == "loaded 9 tensors from ck"


def test_strict_errors_list_missing_unexpected_and_mismatched_keys():
    sd = _sd(TinyVPT())
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["blocks.1.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(TinyVPT(), sd, source="ck.pth")
    msg = str(err.value)
    assert "missing (in the model, not in the checkpoint): head.bias" in msg
    assert "unexpected (in the checkpoint, not in the model): extra.weight" in msg
    assert "blocks.1.bias (5,) in the checkpoint, (8,) in the model" in msg
    assert "strict=False" in msg


def test_non_strict_loads_the_matching_tensors(caplog):
    source, target = TinyVPT(), TinyVPT()
    sd = _sd(source)
    sd["blocks.1.bias"] = torch.zeros(5)
    sd.pop("head.bias")
    with caplog.at_level(logging.WARNING, logger="hotpatch.checkpoint"):
        report = load_state_dict(target, sd, strict=False)
    assert report.missing == ["head.bias"]
    assert [k for k, _, _ in report.mismatched] == ["blocks.1.bias"]
    assert torch.equal(target.head.weight, source.head.weight)
    assert not torch.equal(target.blocks[1].bias, source.blocks[1].bias)
    assert "blocks.1.bias" in caplog.text


def test_checkpoint_of_another_model_is_refused_even_when_not_strict():
    other = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(CheckpointError, match="does not look like a checkpoint of TinyVPT"):
        load_state_dict(TinyVPT(), _sd(other), strict=False)


def test_checkpoint_of_another_size_is_refused():
    with pytest.raises(CheckpointError, match="another size"):
        load_state_dict(TinyVPT(dim=8), _sd(TinyVPT(dim=16)), strict=False)


def test_checkpoint_of_another_frame_count_is_refused():
    model = TinyVPT(frames=81)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(model, _sd(TinyVPT(frames=243)), strict=False,
                        frame_keys={"Temporal_pos_embed": 1})
    assert ("checkpoint was trained with F=243 frames, model built with F=81; build with frames=243"
            in str(err.value))


def test_frame_count_found_by_name_without_frame_keys():
    with pytest.raises(CheckpointError, match="F=27 frames, model built with F=9"):
        load_state_dict(TinyVPT(frames=9), _sd(TinyVPT(frames=27)))


def test_hot_weights_into_an_unpatched_model_say_patch_first():
    sd = _sd(TinyVPT())
    sd["hotpatch_recover.recoverer.queries"] = torch.zeros(1, 9, 8)
    with pytest.raises(CheckpointError, match="patch the model first"):
        load_state_dict(TinyVPT(), sd)


# --------------------------------------------------------------------------- HoT keys

def _official_hot(frames: int = 243, f: int = 81, dim: int = 512) -> dict[str, torch.Tensor]:
    """Synthetic official HoT-MixSTE extras on top of two host keys (one clashing by suffix)."""
    return {
        "Temporal_pos_embed": torch.zeros(1, frames, dim),
        "Transformer_hypothesis.CHI_blocks.0.attn_1.linear_q.weight": torch.zeros(dim, dim),
        "pos_embed_token": torch.zeros(1, f, dim),
        "x_token": torch.zeros(1, frames, dim),
        **{f"cross_attention.linear_{n}.{p}": torch.zeros((dim, dim) if p == "weight" else (dim,))
           for n in "qkv" for p in ("weight", "bias")},
        "cross_attention.proj.weight": torch.zeros(dim, dim),
        "cross_attention.proj.bias": torch.zeros(dim),
    }


def test_map_hot_keys_renames_only_the_hot_extras():
    official = _official_hot()
    mapped = map_hot_keys(official)
    assert set(mapped) == {
        "Temporal_pos_embed",
        "Transformer_hypothesis.CHI_blocks.0.attn_1.linear_q.weight",
        "hotpatch_prune.pruner.pos_embed",
        "hotpatch_recover.recoverer.queries",
        *(f"hotpatch_recover.recoverer.{n}.{p}" for n in ("q", "k", "v", "proj") for p in ("weight", "bias")),
    }
    assert mapped["hotpatch_prune.pruner.pos_embed"].shape == (1, 81, 512)
    assert mapped["hotpatch_recover.recoverer.queries"].shape == (1, 243, 512)
    assert mapped["hotpatch_recover.recoverer.k.bias"] is official["cross_attention.linear_k.bias"]
    assert map_hot_keys({f"module.{k}": v for k, v in official.items()}).keys() == mapped.keys()


def test_map_hot_keys_leaves_a_host_model_alone_and_is_idempotent():
    host = _sd(TinyVPT())
    assert map_hot_keys(host).keys() == host.keys()
    once = map_hot_keys(_official_hot(dim=8))
    assert map_hot_keys(once).keys() == once.keys()


def test_map_hot_keys_refuses_both_spellings():
    with pytest.raises(CheckpointError, match="both"):
        map_hot_keys({"x_token": torch.zeros(1), "hotpatch_recover.recoverer.queries": torch.zeros(1)})


def test_official_hot_file_reads_into_hotpatch_names(tmp_path):
    path = tmp_path / "hot_mixste.pth"
    torch.save(_official_hot(frames=27, f=9, dim=8), path)  # HoT saves a plain state_dict
    mapped = map_hot_keys(read_state_dict(path))
    assert mapped["hotpatch_prune.pruner.pos_embed"].shape == (1, 9, 8)
    assert mapped["hotpatch_recover.recoverer.q.weight"].shape == (8, 8)


def test_pruned_token_count_mismatch_names_f(tmp_path):
    model = TinyVPT()
    model.hotpatch_prune = nn.Module()
    model.hotpatch_prune.pruner = nn.Module()
    model.hotpatch_prune.pruner.pos_embed = nn.Parameter(torch.zeros(1, 3, 8))
    sd = _sd(model)
    sd["hotpatch_prune.pruner.pos_embed"] = torch.zeros(1, 5, 8)
    path = tmp_path / "hot.pth"
    torch.save({"pos_embed_token" if k.startswith("hotpatch_prune") else k: v for k, v in sd.items()}, path)
    with pytest.raises(CheckpointError, match="f=5 representative tokens, model patched with f=3; patch with f=5"):
        load_checkpoint_file(model, path)
