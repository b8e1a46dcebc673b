"""``hotpatch.save_pretrained(model, DIR)`` / ``hotpatch.from_pretrained(DIR)``: a shareable directory.

``DIR/config.json`` holds how to build the model (``"architecture"``: a recipe name and overrides,
or ``package.module:Class`` and its arguments), the patch (``"patch"``: n, f, pipeline ...; and
``"analysis"``: what the analysis decided), the input convention and the hotpatch and torch
versions; ``DIR/model.safetensors`` the weights; ``DIR/README.md`` a model card (architecture, HoT
setting, parameters and FLOPs before and after, and the accuracy: measured, if given, or the
paper's for the recipe, saying which). Loading reads JSON and safetensors only: no pickled code
runs, so no ``--trust`` is needed; the architecture's module is imported as for ``module:Class``.
The model rebuilt is the saved one exactly (:func:`hotpatch.saving.from_payload`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch import saving, sources
from hotpatch.errors import CheckpointError, ConfigError, HotpatchError
from hotpatch.keep import frames_for
from hotpatch.recipe import lookup

log = logging.getLogger(__name__)

__all__ = ["card_accuracy", "describe_setting", "from_pretrained", "save_pretrained"]


def save_pretrained(model: nn.Module, directory: str | os.PathLike, *, source: Mapping[str, Any] | None = None,
                    accuracy: Mapping[str, Any] | None = None, random_weights: bool = False) -> Path:
    """Write ``model`` (patched by ``hotpatch.apply``, or not) to ``directory``; returns its path.

    ``source`` as in ``hotpatch.save`` (default: the model's ``hotpatch_source``). ``accuracy``: what
    you measured, e.g. ``{"mpjpe_mm": 41.2, "data": "Human3.6M S9, S11"}``, for the model card (which
    otherwise quotes the paper's numbers for the model's recipe and setting, and says so).
    ``random_weights=True``: no checkpoint was loaded; the card says the weights are random and
    quotes no accuracy.
    """
    if random_weights and accuracy:
        raise ConfigError("accuracy= was given for a model saved with random_weights=True; a random model has no "
                          "accuracy to report: drop one of them")
    patched = getattr(model, "hotpatch_config", None) is not None
    payload = saving.patched_payload(model, source) if patched else saving.model_payload(model, source)
    card = model_card(payload, model, accuracy, random_weights)
    return saving.write_directory(payload, directory, card["text"], extra={"card": card["record"]})


def from_pretrained(directory: str | os.PathLike) -> nn.Module | fx.GraphModule:
    """The model :func:`save_pretrained` wrote to ``directory`` (in eval mode)."""
    if not Path(directory).is_dir():
        raise CheckpointError(f"{str(directory)!r} is not a directory; expected one written by "
                              "hotpatch.save_pretrained (for a file, use hotpatch.load)")
    return saving.load(directory)


def describe_setting(cfg: Mapping[str, Any]) -> str:
    """``n=3 f=81 F=243 seq2seq tpc+tra pos-embed`` from a ``hotpatch_config``."""
    from hotpatch.patch import stage_text

    parts = [f"n={stage_text(cfg['n'])}", f"f={stage_text(cfg['f'])}", f"F={cfg['frames']}", cfg["pipeline"],
             cfg["prune"] + (f"+{cfg['recover']}" if cfg.get("recover") else "")]
    if cfg.get("prune_pos_embed"):
        parts.append("pos-embed")
    if cfg.get("recover_frames"):
        parts.append(f"recover_frames={cfg['recover_frames']}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- the model card


#: The model card's accuracy row for a model saved without trained weights.
RANDOM_WEIGHTS = ("none: the weights are random (no checkpoint was loaded); the model is fit for measuring speed "
                  "and size, not for poses")


def model_card(payload: Mapping[str, Any], model: nn.Module, accuracy: Mapping[str, Any] | None,
               random_weights: bool = False) -> dict[str, Any]:
    """The README.md text and its numbers as plain data (``record``, also written to config.json)."""
    from hotpatch._version import __version__

    source, cfg = payload["source"], payload.get("config")
    recipe = lookup(source.get("recipe")) if "recipe" in source else None
    original = _original(source) if cfg else None
    params = sum(p.numel() for p in model.parameters())
    flops = _flops(source, payload, model, original)
    record: dict[str, Any] = {
        "params": ({"before": sum(p.numel() for p in original.parameters()), "after": params} if original is not None
                   else None) if cfg else {"model": params},
        "flops_paper": flops,
        "accuracy": {"kind": "random weights", "text": RANDOM_WEIGHTS} if random_weights
        else card_accuracy(source, cfg, accuracy),
    }
    built = (f"recipe `{source['recipe']}`" + (f" ({recipe.architecture['build']})" if recipe else "")
             if "recipe" in source else f"`{source['class']}`")
    rows = [("architecture", f"{built} with {_args(source)}"),
            ("HoT setting", describe_setting(cfg) if cfg else "none (unpatched)"),
            ("input", _input_text(payload)),
            ("parameters", _pair(record["params"])),
            ("FLOPs (paper convention: 2 x MACs of Linear/Conv)",
             _pair(flops) + ", counted by hotpatch on one clip" if flops else "not counted"),
            ("accuracy", record["accuracy"]["text"])]
    title = type(original if original is not None else model).__name__ + (
        " patched with HoT (Hourglass Tokenizer)" if cfg else "")
    text = "\n".join([
        f"# {title}", "",
        f"Saved by hotpatch {__version__} (torch {torch.__version__}) with `hotpatch.save_pretrained`. Load it with",
        "`hotpatch.from_pretrained(DIR)`, or pass the directory as TARGET to any `hotpatch` command: it is",
        "`config.json` (how to build it, the patch, the input convention) and `model.safetensors` (the weights),",
        "so loading runs no pickled code.", "",
        "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
    ])
    return {"text": text, "record": record}


def _args(source: Mapping[str, Any]) -> str:
    args = source.get("overrides", source.get("kwargs")) or {}
    return ", ".join(f"{k}={v!r}" for k, v in args.items()) or "its defaults"


def _input_text(payload: Mapping[str, Any]) -> str:
    cfg, conv = payload.get("config") or {}, payload.get("input")
    shape = f"(F, J, C) = {tuple(cfg['input_shape'])}" if cfg.get("input_shape") else "clip shape not recorded"
    if not conv:
        return f"{shape}; input convention not recorded"
    from hotpatch.conventions import InputConvention

    return f"{shape}; {InputConvention.from_dict(conv).describe()}"


def _amount(value: float) -> str:
    """``277.25 G``, ``33.78 M``, ``42.64 K``, ``512``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:g}"


def _pair(numbers: Mapping[str, Any] | None) -> str:
    if not numbers:
        return "not counted"
    if "model" in numbers:
        return _amount(numbers["model"])
    before, after = numbers["before"], numbers["after"]
    change = f" ({(after - before) / before:+.1%})" if before else ""
    return f"{_amount(before)} -> {_amount(after)}{change}"


def _original(source: Mapping[str, Any]) -> nn.Module | None:
    """The unpatched model rebuilt from ``source`` (its numbers only: weights do not matter here)."""
    try:
        with torch.random.fork_rng(devices=[]):
            return sources.build(source).eval()
    except HotpatchError as err:
        log.warning("model card: the original could not be rebuilt (%s); its numbers are left out", err)
        return None


def _flops(source: Mapping[str, Any], payload: Mapping[str, Any], model: nn.Module,
           original: nn.Module | None) -> dict[str, int] | None:
    """Paper-convention FLOPs of one batch-1 clip: before and after a patch, or of the model alone."""
    from hotpatch.profile import profile

    cfg = payload.get("config")
    try:
        if cfg is None:
            shape = _recipe_shape(source)
            if shape is None:
                return None
            return {"model": profile(model, torch.zeros(1, *shape), counters=("paper",), fps=False,
                                     memory=False).flops["paper"].value}
        example = saving.example_inputs(payload, "the model")
        if original is None:
            return None
        before, after = (profile(m, example, counters=("paper",), fps=False, memory=False).flops["paper"].value
                         for m in (original, model))
        return {"before": before, "after": after}
    except (HotpatchError, RuntimeError, TypeError, ValueError) as err:
        log.warning("model card: FLOPs not counted (%s: %s)", type(err).__name__, err)
        return None


def _recipe_shape(source: Mapping[str, Any]) -> tuple[int, int, int] | None:
    recipe = lookup(source.get("recipe")) if "recipe" in source else None
    if recipe is None:
        return None
    overrides = source.get("overrides") or {}
    return tuple(int(overrides.get(k, recipe.input[k])) for k in ("frames", "joints", "channels"))  # type: ignore


def card_accuracy(source: Mapping[str, Any], cfg: Mapping[str, Any] | None,
                  given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model card's accuracy: ``given`` (measured), else the paper's numbers of the model's recipe
    when the model is that recipe's (its architecture unchanged, and patched with its setting, or not
    patched: the paper's original), else none; ``text`` says which."""
    if given:
        numbers = ", ".join(f"{k} {v}" for k, v in given.items() if k != "data")
        where = f" on {given['data']}" if given.get("data") else ""
        return {"kind": "measured", **dict(given), "text": f"{numbers}{where} (measured; given to save_pretrained)"}
    recipe = lookup(source.get("recipe")) if "recipe" in source else None
    if recipe is None:
        return {"kind": None, "text": "not measured (pass accuracy= to save_pretrained)"}
    paper = recipe.section("paper")
    numbers = paper.get("original", {}) if cfg is None else paper
    shown = {k: numbers[k] for k in ("mpjpe_mm", "pck", "auc") if k in numbers}
    differs = ("architecture" if recipe.build_args(source.get("overrides")) != recipe.build_args()
               else "setting" if cfg is not None and _setting(cfg) != _setting(recipe.settings(), recipe.input["frames"])
               else None if shown else "quantities")
    if differs:
        return {"kind": None, "text": f"not measured (the paper's numbers in recipe {recipe.name} are for another "
                                      f"{differs})"}
    text = ", ".join(f"{k.replace('_mm', '')} {v}{' mm' if k.endswith('_mm') else ''}" for k, v in shown.items())
    return {"kind": "paper", **shown, "source": paper.get("source"), "data": paper.get("dataset"),
            "text": f"{text} on {paper.get('dataset', '?')}: the paper's number for recipe {recipe.name} "
                    f"({paper.get('source', '?')}), not measured on these weights"}


def _setting(hot: Mapping[str, Any], frames: int | None = None) -> tuple:
    """What makes two HoT settings the same patch: from a ``hotpatch_config`` or (with ``frames``) a recipe's ``[hot]``."""
    frames = hot["frames"] if frames is None else frames
    f = hot["f"] if "f" in hot else frames_for(hot["keep"], frames)
    pipeline = "seq2frame" if hot.get("pipeline") == "seq2frame" else "seq2seq"
    recover = None if pipeline == "seq2frame" else hot.get("recover", "tra")
    as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)  # noqa: E731
    return (as_list(hot["n"]), as_list(f), frames, pipeline, hot.get("prune", "tpc"), recover,
            bool(hot.get("prune_pos_embed", False)), hot.get("k", 2), hot.get("recover_frames"))
