"""``hotpatch.save`` / ``hotpatch.load``: a patched model as weights + patch config + source.

The file is ``torch.save`` of a plain dict, readable with ``torch.load(weights_only=True)``
(no pickled code)::

    {"format": "hotpatch/1",
     "hotpatch_version": "0.1.0", "torch_version": "2.13.0",
     "config": patched.hotpatch_config,      # n, f, frames, pipeline, prune, recover, k, ...
     "source": {"recipe": ..., "overrides": {...}} or {"class": "pkg.mod:Class", "kwargs": {...}},
     "analysis": {"blocks": [[name, kind, level], ...],   # what the analysis decided at patch time
                  "axes": {node: [[atom, ...] | None, ...]}},  # layouts of merged batch axes
     "input": {"normalize": "screen", "scores": False, "joints": "h36m17", "extent"?: [lo, hi]} or None,
     "state_dict": {name: tensor}}           # the patched model's, strict

The same payload, as a directory without pickles (``config.json`` + ``model.safetensors`` + a
``README.md`` model card): :func:`write_directory` / :func:`read_directory`, used by
``hotpatch.save_pretrained`` / ``hotpatch.from_pretrained``; :func:`load` reads either.

``input`` is the model's input convention (:mod:`hotpatch.conventions`); loading sets it back as
the model's ``hotpatch_input``. Files without it (older ones) load as before.

A model patched with several inputs (``example_input=(x_2d, y_noisy, t)``) also has
``config["inputs"]`` (``[{"name", "shape", "dtype", "frame_axis"}, ...]`` in ``forward``'s order)
and ``"example": {name: tensor}``, the example's integer and bool inputs (a timestep, a mask),
which cannot be drawn at random; its float inputs are drawn from their recorded shapes. Files
without them (older ones, one input) load as before.

``load`` builds the original from ``source`` (without touching the global RNG), loads the saved
weights into it, analyses it with a clip of the saved input shape, replaces the analysis'
weight-dependent decisions (block kinds and levels, the order of merged batch axes) by the
recorded ones, patches it with ``config`` and loads ``state_dict`` strictly: the rebuilt patch
is the saved one whatever the weights' values (a zero-initialised layer scale or embedding
cannot change it), so outputs match the saved model exactly. Files without ``analysis``
(written before it existed) are rebuilt from the analysis of the loaded weights.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch import sources
from hotpatch.atomic import atomic_directory, atomic_write, check_writable  # noqa: F401  (check_writable: re-exported)
from hotpatch.errors import CheckpointError, ConfigError, OutputError
from hotpatch.layout import atom_from_plain, atom_to_plain

log = logging.getLogger(__name__)

__all__ = ["DIRECTORY_FORMAT", "FORMAT", "MODEL_FORMAT", "load", "read", "read_directory", "save", "save_model",
           "write_directory"]

FORMAT = "hotpatch/1"
#: An unpatched model (``hotpatch train`` writes it): ``{"format", "hotpatch_version",
#: "torch_version", "source", "state_dict"}``, plain data like ``FORMAT``.
MODEL_FORMAT = "hotpatch-model/1"
_CONFIG_KEYS = ("n", "f", "frames", "pipeline", "prune", "recover", "k", "input_shape")


def save(patched: nn.Module, path: str | os.PathLike, *, source: Mapping[str, Any] | None = None) -> Path:
    """Write ``patched`` (from ``hotpatch.apply``) to ``path``; returns the path.

    ``source`` says how to build the unpatched model again; by default the model's
    ``hotpatch_source`` (set by the recipes' ``build``). For a model of your own pass
    ``source={"class": "package.module:Class", "kwargs": {...}}``.
    """
    payload = patched_payload(patched, source)
    path = _write(payload, path)
    log.info("saved patched model (n=%s, f=%s) to %s", payload["config"].get("n"), payload["config"].get("f"), path)
    return path


def patched_payload(patched: nn.Module, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plain-data contents :func:`save` writes for ``patched`` (see the module docstring)."""
    from hotpatch._version import __version__

    config = getattr(patched, "hotpatch_config", None)
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"{type(patched).__name__} has no hotpatch_config: it was not patched by hotpatch.apply; "
            "expected the GraphModule apply returns. Patch it first, or save its state_dict with torch.save."
        )
    source = source if source is not None else getattr(patched, "hotpatch_source", None)
    if source is None:
        raise ConfigError(
            "the patched model does not say how to build the original (no hotpatch_source), so the file could not be "
            "loaded again; pass source={'class': 'package.module:Class', 'kwargs': {...}} (the class "
            "and constructor arguments of the model you patched), or build it with a hotpatch recipe."
        )
    source = _plain(sources.check(source), "source")
    if "class" in source:
        sources.import_class(source["class"])  # fail now, not when loading
    plan = getattr(patched, "hotpatch_plan", None)
    return {
        "format": FORMAT,
        "hotpatch_version": __version__,
        "torch_version": str(torch.__version__),  # a TorchVersion, which weights_only refuses
        "config": _plain(dict(config), "hotpatch_config"),
        "source": source,
        "analysis": _plain(plan_record(plan), "analysis") if plan is not None else None,
        "input": input_record(patched),
        **({"example": _example_record(patched)} if "inputs" in config else {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in patched.state_dict().items()},
    }


def _write(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` ``payload`` to ``path`` through a temp file beside it (see ``hotpatch.atomic``)."""
    with atomic_write(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as err:  # torch's writer reports a full disk as a RuntimeError
            raise OutputError(f"cannot write {str(path)!r}: {err}; check the path and free disk space") from err
    return Path(path)


def _plain(value: Any, where: str) -> Any:
    """``value`` as builtin types only (str subclasses become str), so weights_only can read it."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise ConfigError(f"{where} holds {value!r} ({type(value).__name__}); expected plain data "
                      "(numbers, strings, lists, dicts) so the file loads without unpickling code")


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of a file written by ``save`` (no model is built)."""
    return check_payload(_read_raw(path), str(path))


def _read_raw(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{str(path)!r} does not exist or is not a file; expected a file written by hotpatch.save. "
            "Check the path."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{str(path)!r} holds pickled Python objects, not a hotpatch file; expected a file written by "
            "hotpatch.save (plain data only). A torch.save'd model is loaded with torch.load (it runs code "
            "from the file: only for files you trust)."
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError ... on bad files
        detail = (str(err).strip().splitlines() or ["no detail"])[0][:200]
        raise CheckpointError(
            f"cannot read {str(path)!r}: {type(err).__name__}: {detail}; expected a file written by "
            "hotpatch.save. The file is damaged, truncated or of another kind."
        ) from err
    return payload


def is_payload(obj: Any) -> bool:
    """True if ``obj`` looks like the dict ``save`` writes (any version)."""
    return isinstance(obj, Mapping) and str(obj.get("format", "")).startswith("hotpatch/")


def check_payload(payload: Any, where: str) -> dict[str, Any]:
    """``payload`` if it is a complete ``hotpatch/1`` dict, else ``CheckpointError``."""
    if not is_payload(payload):
        found = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(
            f"{where} is not a hotpatch file (found {found}); expected a dict with format {FORMAT!r} "
            "written by hotpatch.save. For a plain state_dict build the model and use load_checkpoint."
        )
    if payload["format"] != FORMAT:
        raise CheckpointError(
            f"{where} has format {payload['format']!r}; this hotpatch reads {FORMAT!r}. "
            "Upgrade hotpatch to load it."
        )
    config, state = payload.get("config"), payload.get("state_dict")
    missing = [k for k in _CONFIG_KEYS if not isinstance(config, Mapping) or k not in config]
    if missing or not isinstance(state, Mapping) or "source" not in payload:
        raise CheckpointError(
            f"{where} is an incomplete hotpatch file (config lacks {missing}, state_dict "
            f"{'present' if isinstance(state, Mapping) else 'missing'}); expected config, source and "
            "state_dict. Save the model again with hotpatch.save."
        )
    return dict(payload)


def load(path: str | os.PathLike, *, leaf_modules: Sequence[type] = ()) -> fx.GraphModule:
    """Rebuild the patched model saved at ``path`` (a file, or a directory written by
    ``hotpatch.save_pretrained``); it is returned in eval mode.

    The original is built from the saved source (a recipe, or ``Class(**kwargs)`` after
    importing ``package.module``: only modules you have installed run), patched again with
    the saved config, and the saved weights are loaded with strict key and shape matching.
    ``leaf_modules`` is passed to ``hotpatch.apply`` if the model needed it when patched.
    A file written by :func:`save_model` gives the unpatched model it holds.
    """
    raw = read_directory(path) if Path(path).is_dir() else _read_raw(path)
    if is_model_payload(raw):
        return model_from_payload(raw, str(path))
    return from_payload(check_payload(raw, str(path)), str(path), leaf_modules=leaf_modules)


def from_payload(payload: Mapping[str, Any], where: str, *, leaf_modules: Sequence[type] = ()) -> fx.GraphModule:
    """``load`` for contents already read (see ``read``). Leaves the global RNG as it was."""
    from hotpatch.checkpoint import load_state_dict
    from hotpatch.patch import prepare

    payload = check_payload(payload, where)
    try:
        source = sources.check(payload["source"])
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from err
    cfg, state = payload["config"], payload["state_dict"]
    with torch.random.fork_rng(devices=[]):  # building the model draws its initial weights
        model = sources.build(source).eval()
    _load_matching(model, state)  # analyse the saved weights, not a fresh initialisation
    example = example_inputs(payload, where)
    prepared = prepare(model, example_input=example, leaf_modules=leaf_modules, inplace=True)
    record = payload.get("analysis")
    if record is not None:
        restore_plan(prepared.plan, record, where)
    patched = prepared.patch(
        cfg["n"], cfg["f"], pipeline=cfg["pipeline"], prune=cfg["prune"], recover=cfg["recover"], k=cfg["k"],
        prune_pos_embed=bool(cfg.get("prune_pos_embed", False)), recover_frames=cfg.get("recover_frames"),
        copy_modules=False,
    )
    load_state_dict(patched, state, strict=True, source=where)
    patched.hotpatch_source = source
    set_input_record(patched, payload)
    return patched.eval()


def _example_record(patched: nn.Module) -> dict[str, torch.Tensor]:
    saved = getattr(patched, "hotpatch_example", None) or {}
    return {str(k): v.detach().cpu().clone() for k, v in saved.items() if isinstance(v, torch.Tensor)}


def example_inputs(payload: Mapping[str, Any], where: str) -> torch.Tensor | dict[str, torch.Tensor]:
    """The example (batch 1) a saved patch is rebuilt with (see :func:`hotpatch.patch.example_from_config`)."""
    from hotpatch.patch import example_from_config

    try:
        return example_from_config(payload["config"], payload.get("example"))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{where} has a malformed config['inputs'] ({err}); save the model again with hotpatch.save") from err


def _load_matching(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the saved tensors whose name and shape the unpatched ``model`` shares."""
    own = model.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if name in own and own[name].shape == value.shape:
                own[name].copy_(value)


# ----------------------------------------------------------------------------- analysis record


def plan_record(plan: Any) -> dict[str, Any]:
    """The weight-dependent decisions of ``plan`` as plain data: every block's kind and
    temporal level, and the layout of every tensor axis that merges the batch with another
    factor ((B·F) or (F·B) ...: read from values, so zero weights could flip it)."""
    axes = {}
    for name, fact in getattr(plan, "facts", {}).items():
        ax = getattr(fact, "axes", None)
        if fact.kind == "tensor" and ax and any(a is not None and len(a) > 1 for a in ax):
            axes[name] = [[atom_to_plain(x) for x in a] if a is not None else None for a in ax]
    return {
        "input_shape": list(plan.input_shape[1:]),
        "blocks": [[b.name, b.kind, b.level] for b in plan.blocks],
        "axes": axes,
    }


def restore_plan(plan: Any, record: Mapping[str, Any], where: str) -> None:
    """Overwrite ``plan``'s weight-dependent decisions with ``record`` (from :func:`plan_record`)."""
    blocks = record.get("blocks") or []
    saved = [b[0] for b in blocks]
    found = [b.name for b in plan.blocks]
    if saved != found:
        raise CheckpointError(
            f"{where} was saved from a model with blocks {saved}, but the model built from its source has "
            f"{found}: the model's code changed since it was saved. Load it with the code it was saved with, "
            "or patch the new model again with hotpatch.apply and load the weights with load_checkpoint."
        )
    for info, (_, kind, level) in zip(plan.blocks, blocks):
        info.kind, info.level = str(kind), int(level)
    plan.levels = max((b.level for b in plan.blocks), default=0)
    restored = 0
    for name, axes in (record.get("axes") or {}).items():
        fact = plan.facts.get(name)
        if fact is None or fact.kind != "tensor" or fact.axes is None or len(fact.axes) != len(axes):
            log.debug("analysis record: node %s not found or of another rank; kept the analysis' layout", name)
            continue
        fact.axes = tuple(tuple(atom_from_plain(x) for x in a) if a is not None else None for a in axes)
        restored += 1
    plan.note(f"block kinds/levels and {restored} batch-axis layouts read from {where} (as decided when patched)")


# ----------------------------------------------------------------------------- unpatched models


def save_model(model: nn.Module, path: str | os.PathLike, *, source: Mapping[str, Any] | None = None) -> Path:
    """Write an unpatched ``model`` (weights and how to build it) to ``path``; returns the path.

    Every ``hotpatch`` command accepts the file as TARGET, and :func:`load` rebuilds the model.
    ``source`` as in :func:`save` (default: the model's ``hotpatch_source``).
    """
    return _write(model_payload(model, source), path)


def model_payload(model: nn.Module, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plain-data contents :func:`save_model` writes for the unpatched ``model``."""
    from hotpatch._version import __version__

    if getattr(model, "hotpatch_config", None) is not None:
        raise ConfigError("the model is patched; write it with hotpatch.save (save_model is for unpatched models)")
    source = source if source is not None else getattr(model, "hotpatch_source", None)
    if source is None:
        raise ConfigError(
            "the model does not say how to build it (no hotpatch_source); pass source={'class': "
            "'package.module:Class', 'kwargs': {...}}, or build it with a hotpatch recipe."
        )
    source = _plain(sources.check(source), "source")
    if "class" in source:
        sources.import_class(source["class"])  # fail now, not when loading
    return {
        "format": MODEL_FORMAT,
        "hotpatch_version": __version__,
        "torch_version": str(torch.__version__),
        "source": source,
        "input": input_record(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def is_model_payload(obj: Any) -> bool:
    """True if ``obj`` is the dict :func:`save_model` writes."""
    return isinstance(obj, Mapping) and obj.get("format") == MODEL_FORMAT


def model_from_payload(payload: Mapping[str, Any], where: str) -> nn.Module:
    """The unpatched model of a :func:`save_model` file, weights loaded strictly, in eval mode."""
    from hotpatch.checkpoint import load_state_dict

    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or "source" not in payload:
        raise CheckpointError(f"{where} is an incomplete hotpatch model file (needs source and state_dict); "
                              "write it again with hotpatch.saving.save_model or hotpatch train.")
    try:
        source = sources.check(payload["source"])
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from err
    with torch.random.fork_rng(devices=[]):  # building the model draws its initial weights
        model = sources.build(source)
    load_state_dict(model, state, strict=True, source=where)
    model.hotpatch_source = source
    set_input_record(model, payload)
    return model.eval()


# ----------------------------------------------------------------------------- input convention


def input_record(model: nn.Module) -> dict[str, Any] | None:
    """The model's input convention as plain data (its ``hotpatch_input``, else its recipe's), or None."""
    from hotpatch.conventions import convention_of

    conv, _ = convention_of(model)
    return None if conv is None else _plain(conv.to_dict(), "input")


def set_input_record(model: nn.Module, payload: Mapping[str, Any]) -> None:
    """Set ``model.hotpatch_input`` from a file's ``input`` (absent in older files: left unset)."""
    if isinstance(payload.get("input"), Mapping):
        model.hotpatch_input = dict(payload["input"])


# ----------------------------------------------------------------------------- directories (save_pretrained)

#: ``DIR/config.json`` (plain JSON) + ``DIR/model.safetensors`` (the tensors) + ``DIR/README.md`` (a model card).
DIRECTORY_FORMAT = "hotpatch-pretrained/1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
_EXAMPLE = "hotpatch_example::"  # weights-file prefix of the example inputs a several-input patch keeps


def write_directory(payload: Mapping[str, Any], directory: str | os.PathLike, card: str,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``payload`` (:func:`patched_payload` or :func:`model_payload`) as a directory: the tensors
    to ``model.safetensors``, the rest to ``config.json`` (with ``extra``), ``card`` to ``README.md``;
    through a temp directory renamed into place (an older one of these directories is replaced)."""
    from safetensors.torch import save_file

    patched = payload["format"] == FORMAT
    config = {"format": DIRECTORY_FORMAT, "patched": patched, "hotpatch_version": payload["hotpatch_version"],
              "torch_version": payload["torch_version"], "architecture": payload["source"],
              **({"patch": payload["config"], "analysis": payload.get("analysis")} if patched else {}),
              "input": payload.get("input"), **_plain(dict(extra or {}), "extra")}
    tensors = {**payload["state_dict"], **{_EXAMPLE + k: v for k, v in (payload.get("example") or {}).items()}}
    with atomic_directory(directory, replaceable=is_directory) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
    log.info("saved %s model to %s", "patched" if patched else "unpatched", Path(directory))
    return Path(directory)


def is_directory(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory :func:`write_directory` wrote (its config.json says so)."""
    try:
        return json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == DIRECTORY_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_directory(directory: str | os.PathLike) -> dict[str, Any]:
    """The payload a directory of :func:`write_directory` holds (what :func:`load` rebuilds), read
    without unpickling anything: JSON and safetensors."""
    from safetensors.torch import load_file

    directory = Path(directory)
    where = f"{str(directory)!r}"
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{where} has no {CONFIG_FILE}: it is not a directory written by "
                              "hotpatch.save_pretrained; pass that directory, or a model file") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {directory / CONFIG_FILE}: {err}; save the model again") from err
    if not isinstance(config, dict) or config.get("format") != DIRECTORY_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{where}: {CONFIG_FILE} has format {found!r}; this hotpatch reads "
                              f"{DIRECTORY_FORMAT!r} (upgrade hotpatch, or save the model again)")
    try:
        tensors = load_file(str(directory / WEIGHTS_FILE))
    except FileNotFoundError as err:
        raise CheckpointError(f"{where} has no {WEIGHTS_FILE}; save the model again") from err
    except Exception as err:  # noqa: BLE001 - safetensors raises its own errors on damaged files
        raise CheckpointError(f"cannot read {directory / WEIGHTS_FILE}: {type(err).__name__}: {err}; the file is "
                              "damaged or truncated: save the model again") from err
    patched = bool(config.get("patched"))
    payload: dict[str, Any] = {
        "format": FORMAT if patched else MODEL_FORMAT, "hotpatch_version": config.get("hotpatch_version"),
        "torch_version": config.get("torch_version"), "source": config.get("architecture"),
        "input": config.get("input"),
        "state_dict": {k: v for k, v in tensors.items() if not k.startswith(_EXAMPLE)},
    }
    if patched:
        payload.update(config=config.get("patch"), analysis=config.get("analysis"))
        example = {k[len(_EXAMPLE):]: v for k, v in tensors.items() if k.startswith(_EXAMPLE)}
        if example:
            payload["example"] = example
    return payload
