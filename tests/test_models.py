"""The recipes: registry, tiny forwards, official checkpoint layouts, paper parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hotpatch.errors import CheckpointError, ConfigError
from hotpatch import models
from hotpatch.models import mhformer, mixste, motionbert

# Tiny configurations: (module, build kwargs, input channels).
TINY = {
    "mixste": (mixste, dict(frames=9, dim=16, depth=2), 2),
    "motionbert": (motionbert, dict(frames=9, dim=16, depth=2, dim_rep=16), 3),
    "mhformer": (mhformer, dict(frames=27, dim=16, d_hid=32, depth=3), 2),
}


def _tiny(name: str, seed: int = 0, **extra) -> torch.nn.Module:
    module, kwargs, _ = TINY[name]
    torch.manual_seed(seed)
    model = module.build(**{**kwargs, **extra})
    # Zero-initialised embeddings and default BatchNorm statistics would hide loading bugs.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for name_, b in model.named_buffers():
            if name_.endswith(("running_mean", "running_var")):
                b.copy_(torch.rand_like(b) + 0.5)
    return model.eval()


def _input(name: str, frames: int, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(123)
    return torch.randn(batch, frames, 17, TINY[name][2])


# --------------------------------------------------------------------------- registry

def test_names_and_get():
    assert models.names() == ["mhformer", "mixste", "motionbert"]
    for name in models.names():
        module = models.get(name)
        assert callable(module.build) and callable(module.load_checkpoint)
        assert {"frames", "joints", "channels", "n", "f", "pipeline"} <= set(module.DEFAULTS)
    assert models.get("MixSTE") is mixste


def test_models_is_reachable_after_a_bare_import_hotpatch():
    import subprocess
    import sys

    code = "import hotpatch; print(hotpatch.models.get('mixste').__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "hotpatch.models.mixste", done.stderr


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        models.get("poseformer")
    for name in models.names():
        assert name in str(err.value)


def test_defaults_are_the_papers():
    assert mixste.DEFAULTS == {"frames": 243, "joints": 17, "channels": 2, "n": 3, "f": 81,
                               "pipeline": "seq2seq", "prune": "tpc", "recover": "tra",
                               "prune_pos_embed": True}
    mb = motionbert.DEFAULTS
    assert (mb["frames"], mb["channels"], mb["n"], mb["f"], mb["pipeline"]) == (243, 3, 1, 81, "seq2seq")
    mh = mhformer.DEFAULTS
    assert (mh["frames"], mh["channels"], mh["n"], mh["f"], mh["pipeline"], mh["recover"]) == \
        (351, 2, 1, 117, "seq2frame", None)


def test_bad_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="unknown override"):
        mixste.build(9, width=3)
    with pytest.raises(ConfigError, match="variant"):
        motionbert.build(9, variant="huge")
    with pytest.raises(ConfigError, match="multiple of 9"):
        mhformer.build(20, dim=16)
    with pytest.raises(ConfigError, match="frames"):
        mixste.build(0)


# --------------------------------------------------------------------------- forwards

@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_forward_shape(name):
    model = _tiny(name)
    frames = TINY[name][1]["frames"]
    with torch.no_grad():
        out = model(_input(name, frames))
    assert out.shape == (2, frames, 17, 3)
    assert torch.isfinite(out).all()


def test_motionbert_accepts_shorter_clips_and_returns_rep():
    model = _tiny("motionbert")
    with torch.no_grad():
        assert model(_input("motionbert", 5)).shape == (2, 5, 17, 3)
        assert model(_input("motionbert", 9), return_rep=True).shape == (2, 9, 17, 16)


def test_mhformer_long_clips_embed_with_a_bare_conv():
    assert isinstance(mhformer.build(27, dim=16, d_hid=32).embedding_1, torch.nn.Sequential)
    assert isinstance(mhformer.build(36, dim=16, d_hid=32).embedding_1, torch.nn.Conv1d)


# --------------------------------------------------------------------------- official key layouts

def test_state_dict_keys_follow_the_official_trees():
    keys = set(_tiny("mixste").state_dict())
    assert {"Spatial_patch_to_embedding.weight", "Spatial_pos_embed", "Temporal_pos_embed",
            "STEblocks.1.attn.qkv.bias", "TTEblocks.0.mlp.fc2.weight", "Spatial_norm.weight",
            "Temporal_norm.bias", "head.0.weight", "head.1.bias"} <= keys
    keys = set(_tiny("motionbert").state_dict())
    assert {"joints_embed.weight", "blocks_st.0.attn_s.qkv.weight", "blocks_ts.1.mlp_t.fc1.bias",
            "blocks_st.0.norm1_t.weight", "ts_attn.1.weight", "norm.weight", "pre_logits.fc.weight",
            "head.weight", "temp_embed", "pos_embed"} <= keys
    keys = set(_tiny("mhformer").state_dict())
    assert {"norm_1.weight", "Transformer_encoder_2.pos_embed", "Transformer_encoder_3.blocks.3.attn.qkv.weight",
            "embedding_1.0.weight", "embedding_3.1.running_var", "Transformer_hypothesis.pos_embed_2",
            "Transformer_hypothesis.SHR_blocks.1.attn_3.proj.weight",
            "Transformer_hypothesis.CHI_blocks.0.attn_2.linear_k.weight",
            "Transformer_hypothesis.CHI_blocks.0.norm3_32.bias", "Transformer_hypothesis.norm.weight",
            "regression.0.running_mean", "regression.1.weight"} <= keys


def test_full_size_shapes_match_the_released_checkpoints():
    mb = motionbert.build(variant="full").state_dict()
    mx = mixste.build().state_dict()
    mh = mhformer.build().state_dict()
    assert mb["joints_embed.weight"].shape == (512, 3)
    assert mb["blocks_st.0.mlp_s.fc1.weight"].shape == (1024, 512)
    assert mb["temp_embed"].shape == (1, 243, 1, 512)
    assert mx["Temporal_pos_embed"].shape == (1, 243, 512)
    assert mx["STEblocks.0.mlp.fc1.weight"].shape == (1024, 512)
    assert mh["Transformer_encoder_1.pos_embed"].shape == (1, 34, 351)
    assert mh["Transformer_encoder_1.blocks.0.attn.qkv.weight"].shape == (1053, 351)
    assert mh["embedding_1.weight"].shape == (512, 34, 1)
    assert mh["regression.1.weight"].shape == (51, 1536, 1)


# The paper's Param (M) column: Tables 1, 6 and 10.
PAPER_PARAMS = [
    (mixste, dict(frames=243), 33.78),
    (mixste, dict(frames=147), 33.73),
    (mixste, dict(frames=81), 33.70),
    (motionbert, dict(frames=243, variant="lite"), 16.00),
    (mhformer, dict(frames=351), 31.52),
]


@pytest.mark.parametrize("module, kwargs, paper", PAPER_PARAMS,
                         ids=[f"{m.__name__.rsplit('.', 1)[-1]}-{k['frames']}" for m, k, _ in PAPER_PARAMS])
def test_full_size_param_counts_match_the_paper(module, kwargs, paper):
    model = module.build(**kwargs)  # built, never run
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - paper) / paper < 0.005, f"{count:.4f} M vs paper {paper} M"
    assert round(count, 2) == paper


# --------------------------------------------------------------------------- checkpoints

def _layouts(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    return {
        "mixste_official": {"epoch": 160, "lr": 4e-5, "random_state": np.random.RandomState(1),
                            "optimizer": {"state": {}, "param_groups": [{"lr": 4e-5}]},
                            "model_pos": wrapped},
        "motionbert_official": {"epoch": 120, "lr": 5e-4, "min_loss": 39.8, "model_pos": wrapped},
        "model_pos_plain": {"model_pos": sd},
        "plain": sd,
        "plain_module": wrapped,
        "state_dict": {"state_dict": sd},
        "model_module": {"model": wrapped},
    }


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpoint_round_trip_in_every_layout(name, tmp_path):
    module = TINY[name][0]
    source = _tiny(name, seed=0)
    frames = TINY[name][1]["frames"]
    x = _input(name, frames)
    with torch.no_grad():
        expected = source(x)
    for layout, payload in _layouts(source.state_dict()).items():
        path = tmp_path / f"{name}_{layout}.bin"
        torch.save(payload, path)
        target = _tiny(name, seed=1)
        report = module.load_checkpoint(target, path)
        assert report.ok and len(report.loaded) == len(source.state_dict()), layout
        with torch.no_grad():
            assert torch.equal(target(x), expected), layout


@pytest.mark.parametrize("saved, loader", [("mixste", "motionbert"), ("motionbert", "mhformer"),
                                           ("mhformer", "mixste")])
def test_checkpoint_of_another_recipe_is_refused(saved, loader, tmp_path):
    path = tmp_path / "other.bin"
    torch.save({"model_pos": _tiny(saved).state_dict()}, path)
    with pytest.raises(CheckpointError, match="does not look like a checkpoint of"):
        TINY[loader][0].load_checkpoint(_tiny(loader), path)


@pytest.mark.parametrize("name, trained, built", [("mixste", 27, 9), ("motionbert", 27, 9),
                                                   ("mhformer", 36, 27)])
def test_checkpoint_of_another_frame_count_is_refused(name, trained, built, tmp_path):
    path = tmp_path / "frames.bin"
    torch.save(_tiny(name, frames=trained).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        TINY[name][0].load_checkpoint(_tiny(name, frames=built), path)
    assert (f"checkpoint was trained with F={trained} frames, model built with F={built}; "
            f"build with frames={trained}") in str(err.value)


def test_motionbert_full_checkpoint_into_lite_model_names_the_variant(tmp_path):
    path = tmp_path / "mb_full.bin"
    torch.save({"model_pos": {"module.joints_embed.weight": torch.zeros(512, 3)}}, path)
    with pytest.raises(CheckpointError, match="variant='full'"):
        motionbert.load_checkpoint(motionbert.build(9, variant="lite", depth=1), path)


def test_corrupt_checkpoint_is_refused(tmp_path):
    model = _tiny("mixste")
    text = tmp_path / "notes.bin"
    text.write_text("not a checkpoint")
    good = tmp_path / "good.bin"
    torch.save(model.state_dict(), good)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (text, cut, tmp_path / "empty.bin"):
        path.touch()
        with pytest.raises(CheckpointError) as err:
            mixste.load_checkpoint(model, path)
        assert str(path) in str(err.value)


def test_strict_false_loads_what_matches(tmp_path):
    source = _tiny("mixste")
    sd = source.state_dict()
    sd.pop("head.1.bias")
    path = tmp_path / "partial.bin"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="head.1.bias"):
        mixste.load_checkpoint(_tiny("mixste", seed=3), path)
    target = _tiny("mixste", seed=3)
    report = mixste.load_checkpoint(target, path, strict=False)
    assert report.missing == ["head.1.bias"]
    assert torch.equal(target.head[1].weight, source.head[1].weight)


# --------------------------------------------------------------------------- official HoT checkpoints

def _hot_extras(frames: int, f: int, dim: int) -> dict[str, torch.Tensor]:
    """The parameters the official HoT-MixSTE / HoT-MotionBERT add to the host model."""
    torch.manual_seed(7)
    extras = {"pos_embed_token": torch.randn(1, f, dim), "x_token": torch.randn(1, frames, dim)}
    for name in ("linear_q", "linear_k", "linear_v", "proj"):
        extras[f"cross_attention.{name}.weight"] = torch.randn(dim, dim)
        extras[f"cross_attention.{name}.bias"] = torch.randn(dim)
    return extras


@pytest.mark.parametrize("name", ["mixste", "motionbert"])
def test_official_hot_checkpoint_loads_into_the_patched_recipe(name, tmp_path):
    import hotpatch

    module, kwargs, _ = TINY[name]
    frames, dim = kwargs["frames"], kwargs["dim"]
    host = _tiny(name)
    path = tmp_path / f"hot_{name}.pth"
    extras = _hot_extras(frames, 3, dim)
    torch.save({**host.state_dict(), **extras}, path)  # HoT saves a plain state_dict

    patched = [hotpatch.apply(_tiny(name, seed=s), n=1, f=3, frames=frames, prune_pos_embed=True)
               for s in (1, 2)]
    for model in patched:
        assert module.load_checkpoint(model, path).ok
    sd = patched[0].state_dict()
    assert torch.equal(sd["hotpatch_recover.recoverer.queries"], extras["x_token"])
    assert torch.equal(sd["hotpatch_prune.pruner.pos_embed"], extras["pos_embed_token"])
    assert torch.equal(sd["hotpatch_recover.recoverer.k.bias"], extras["cross_attention.linear_k.bias"])
    x = _input(name, frames)
    with torch.no_grad():
        assert torch.equal(patched[0](x), patched[1](x))

    with pytest.raises(CheckpointError, match="patch the model first"):
        module.load_checkpoint(_tiny(name), path)


def test_official_tpc_mhformer_checkpoint_loads_into_the_patched_recipe(tmp_path):
    import hotpatch

    path = tmp_path / "tpc_mhformer.pth"
    torch.save(_tiny("mhformer").state_dict(), path)  # TPC adds no parameters
    model = hotpatch.apply(_tiny("mhformer", seed=1), n=1, f=9, pipeline="seq2frame", recover=None)
    assert mhformer.load_checkpoint(model, path).ok


def test_the_former_hotpatch_recipes_imports_warn_and_name_the_new_path():
    import importlib
    import sys
    import warnings

    for name in [m for m in sys.modules if m == "hotpatch.recipes" or m.startswith("hotpatch.recipes.")]:
        del sys.modules[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("hotpatch.recipes.mixste")
        from hotpatch.recipes import get as old_get
    assert old is mixste and old_get("motionbert") is motionbert
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 1 and "hotpatch.models" in messages[0]


def test_a_model_pickled_under_the_former_module_path_loads(tmp_path, monkeypatch):
    import io
    import warnings

    model = mixste.build(9, dim=16, depth=1, num_heads=2).eval()
    for cls in {type(m) for m in model.modules() if type(m).__module__.startswith("hotpatch.models.")}:
        monkeypatch.setattr(cls, "__module__", cls.__module__.replace("hotpatch.models.", "hotpatch.recipes."))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    assert b"hotpatch.recipes.mixste" in buffer.getvalue() and b"hotpatch.models" not in buffer.getvalue()
    monkeypatch.undo()
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is mixste.MixSTE2
    x = torch.randn(1, 9, 17, 2)
    assert torch.equal(loaded(x), model(x))
