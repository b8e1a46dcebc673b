"""Turn a command-line TARGET into a model: shared by every ``hotpatch`` subcommand.

A TARGET is, in the order they are tried:

1. a recipe (:mod:`hotpatch.recipe`): a ``.toml`` file, or the name of an installed one
   (``mixste-hot-243-81``; a family name such as ``mixste`` is its default recipe), built with
   ``--frames``, ``--joints``, ``--channels``, ``--variant`` and ``--set KEY=VALUE`` overriding the
   recipe's values; its ``[hot]`` values are the defaults of ``--n``, ``--f`` ...;
2. an existing file: a ``.pt`` written by ``hotpatch.save`` (already patched), or a whole model
   written by ``torch.save(model)`` — loading that unpickles code stored in the file, so it is
   refused unless ``--trust`` is given; a file of weights only is refused with advice; or a
   directory written by ``hotpatch.save_pretrained`` / ``hotpatch patch -o DIR/`` (JSON and
   safetensors: no ``--trust`` needed);
3. ``package.module:Class``, built as ``Class(**kwargs)`` from ``--kwargs JSON`` and ``--set``.

``--checkpoint CK`` loads weights into the model (a recipe's ``[checkpoint] loader``, else
``hotpatch.checkpoint.load_checkpoint_file``). Use::

    add_target_arguments(parser)          # in a subcommand's add_parser
    target = load_target(args)            # in its run(args)
    target.model, target.patched, target.defaults["frames"], target.example_input(batch=8)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch import recipe as recipes, saving, sources
from hotpatch.checkpoint import LoadReport, load_checkpoint_file
from hotpatch.cli._example import read_example
from hotpatch.cli._options import positive_int
from hotpatch.engine.analyse import first_line
from hotpatch.engine.inputs import call_with, clip_of, repeat_batch
from hotpatch.errors import CheckpointError, ConfigError, InputShapeError, TargetError, TraceFailure

log = logging.getLogger(__name__)

__all__ = ["Target", "add_target_arguments", "load_target", "resolve"]

#: Keys of ``Target.defaults``; a value is None when unknown.
DEFAULT_KEYS = ("frames", "joints", "channels", "n", "f", "keep", "pipeline", "prune", "recover", "k",
                "prune_pos_embed", "recover_frames")


@dataclass
class Target:
    """A model resolved from a TARGET.

    ``model`` is what the TARGET holds (a patched ``GraphModule`` when ``patched``);
    ``source`` says how to build it again (None for a pickled model of unknown origin);
    ``defaults`` holds the input geometry and HoT settings known for it (``DEFAULT_KEYS``:
    a recipe's ``[input]`` and ``[hot]``, or a saved patch's config), None where unknown; ``kind``
    is ``"recipe"``, ``"class"``, ``"pickle"`` or ``"hotpatch"``; ``recipe`` the
    :class:`~hotpatch.recipe.Recipe` when the model comes from one; ``setting``: the TARGET named a
    recipe file or a recipe's full name (not a family name), whose HoT setting ``profile`` applies.
    """

    model: nn.Module
    source: dict[str, Any] | None
    defaults: dict[str, Any]
    patched: bool
    kind: str
    name: str
    recipe: recipes.Recipe | None = None
    setting: bool = False
    pending_checkpoint: str | None = None
    example: Any = None  # --example-input: a tensor, tuple or dict of every input of forward
    _original: nn.Module | None = field(default=None, repr=False)

    def pipeline(self, given: str | None) -> str:
        """``given`` (a ``--pipeline``), else this model's own ``seq2seq`` / ``seq2frame``, else ``seq2seq``."""
        own = self.defaults.get("pipeline")
        return given or (own if own in ("seq2seq", "seq2frame") else "seq2seq")

    def input_shape(self) -> tuple[int, int, int]:
        """(F, J, C) of one clip; inferred from the model (and cached) where not known."""
        d = self.defaults
        if d.get("frames") is None or d.get("joints") is None or d.get("channels") is None:
            shape = _infer_shape(self.model, d.get("frames"), self.name)
            for key, value in zip(("frames", "joints", "channels"), shape):
                if d.get(key) is None:
                    d[key] = value
            if (d["frames"], d["joints"], d["channels"]) != shape:
                raise InputShapeError(
                    f"{self.name} accepts clips of shape {shape} (F, J, C), not "
                    f"({d['frames']}, {d['joints']}, {d['channels']}); pass --frames/--joints/--channels "
                    "that agree with the model"
                )
        return d["frames"], d["joints"], d["channels"]

    def example_input(self, batch: int = 1) -> Any:
        """A zero clip (batch, F, J, C); for a model with several inputs, the ``--example-input``
        values (or those it was patched with) with their first sample repeated to ``batch``."""
        if not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch={batch!r}; pass a positive batch size")
        if self.example is not None:
            return repeat_batch(self.example, batch)
        config = getattr(self.model, "hotpatch_config", None) or {}
        if self.patched and "inputs" in config:
            from hotpatch.patch import example_from_config

            return example_from_config(config, getattr(self.model, "hotpatch_example", None), batch=batch, zeros=True)
        return torch.zeros(batch, *self.input_shape())

    @property
    def several_inputs(self) -> bool:
        """Whether the model takes several inputs (given by ``--example-input``, or recorded by its patch)."""
        if self.example is not None:
            return not isinstance(self.example, torch.Tensor)
        return "inputs" in (getattr(self.model, "hotpatch_config", None) or {})

    def original(self) -> nn.Module:
        """The unpatched model: ``model`` itself, or for a patched target the model rebuilt
        from ``source`` with the host weights of the patched one (its ``hotpatch_*`` ones dropped)."""
        if not self.patched:
            return self.model
        if self._original is None:
            if self.source is None:
                raise TargetError(
                    f"{self.name} is a patched model with no hotpatch_source, so its original cannot be "
                    "rebuilt; profile the original model itself instead"
                )
            original = sources.build(self.source)
            host = {k: v for k, v in self.model.state_dict().items() if not k.startswith("hotpatch_")}
            result = original.load_state_dict(host, strict=False)
            if result.missing_keys:
                log.warning("the original of %s: %d tensors not in the patched model keep their initial "
                            "values: %s", self.name, len(result.missing_keys), result.missing_keys[:8])
            self._original = original.train(self.model.training)
        return self._original

    def patch(self, n: int | None = None, f: int | None = None, *, keep: float | list[float] | None = None,
              pipeline: str | None = None,
              prune: str | None = None, recover: str | None = None, k: int | None = None,
              prune_pos_embed: bool | None = None, recover_frames: int | None = None,
              leaf_modules: Sequence[type] = ()) -> fx.GraphModule:
        """``hotpatch.apply`` on ``model`` with ``defaults`` filling every setting left None (f and keep
        together: a given one replaces the target's), on a zero clip of ``input_shape()``; then loads
        ``pending_checkpoint`` (official HoT weights)."""
        if self.patched:
            cfg = self.model.hotpatch_config
            raise TargetError(
                f"{self.name} is already patched (n={cfg.get('n')}, f={cfg.get('f')}); pass the original model "
                "as TARGET to patch it with other settings"
            )
        from hotpatch.patch import apply

        d = self.defaults
        n = d.get("n") if n is None else n
        if f is None and keep is None:  # the target's own (a recipe's f or keep)
            f, keep = d.get("f"), d.get("keep")
        if n is None or (f is None and keep is None):
            raise ConfigError(f"{self.name} has no default HoT settings; pass n and f (--n N --f F, or --keep K)")
        with self.diagnosed():
            patched = apply(
                self.model, n, f, keep=keep, example_input=self.example_input(1),
                pipeline=pipeline or d.get("pipeline") or "auto",
                prune=prune or d.get("prune") or "tpc",
                recover=recover or d.get("recover") or "tra",
                k=k if k is not None else d.get("k") or 2,
                prune_pos_embed=bool(d.get("prune_pos_embed")) if prune_pos_embed is None else prune_pos_embed,
                recover_frames=recover_frames if recover_frames is not None else d.get("recover_frames"),
                leaf_modules=leaf_modules,
            )
        if self.pending_checkpoint is not None:
            log.info("%s", self.load_checkpoint(self.pending_checkpoint, patched))
        return patched

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """Errors of tracing, analysing or profiling the model, explained when the model itself
        fails on a zero clip of its input shape (as it is built, before any patch)."""
        try:
            yield
        except (InputShapeError, TraceFailure) as err:
            own = self._forward_error()
            if own is None:
                raise
            raise InputShapeError(
                f"{describe(self)} fails on a clip of shape {(1, *self.input_shape())} as it is built, before any "
                f"patch: {type(own).__name__}: {first_line(own)}. Check the settings it is built with (--set/--kwargs, "
                "e.g. a head count that divides the width, depth 1 or more) and --frames/--joints/--channels"
            ) from own

    def _forward_error(self) -> Exception | None:
        example, training = self.example_input(1), self.model.training
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                call_with(self.model.eval(), example)
        except Exception as err:  # noqa: BLE001 - any failure of the model's own forward is the answer
            return err
        finally:
            self.model.train(training)
        return None

    def load_checkpoint(self, path: str | Path, model: nn.Module | None = None, *, strict: bool = True,
                        allow_pickle: bool = False) -> LoadReport:
        """Load checkpoint ``path`` into ``model`` (default ``self.model``) with the recipe's loader
        where there is one; official HoT weights (pruner/recoverer) need a patched model."""
        model = self.model if model is None else model
        if self.recipe is not None:
            return self.recipe.load_checkpoint(model, path, strict=strict, allow_pickle=allow_pickle)
        return load_checkpoint_file(model, path, strict=strict, allow_pickle=allow_pickle)


# ----------------------------------------------------------------------------- argparse


def add_target_arguments(parser: argparse.ArgumentParser, *, geometry: bool = True) -> None:
    """Add TARGET and the options that build or load it (``--frames/--joints/--channels`` only
    if ``geometry``; a subcommand that reads them elsewhere may leave them out)."""
    parser.add_argument(
        "target", metavar="TARGET",
        help="a recipe: its name (mixste, mixste-hot-243-81 ...; hotpatch recipes lists them) or a .toml file; "
             "package.module:Class; a model file written by torch.save (needs --trust); or a .pt written by "
             "hotpatch.save / hotpatch patch")
    group = parser.add_argument_group("target")
    if geometry:
        group.add_argument("--frames", type=positive_int, metavar="F", help="clip length F (a recipe is built for it)")
        group.add_argument("--joints", type=positive_int, metavar="J", help="joints J (a recipe is built for it)")
        group.add_argument("--channels", type=positive_int, metavar="C",
                           help="input channels C, 2 or 3 (a recipe is built for it)")
    group.add_argument("--variant", help="recipe variant (motionbert: lite or full)")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a recipe's [architecture.args] value or a constructor keyword of module:Class, e.g. "
                            "--set dim=32 --set depth=2; VALUE is JSON if it parses, else a string")
    group.add_argument("--kwargs", metavar="JSON", help="constructor keywords of module:Class as a JSON object")
    group.add_argument("--checkpoint", metavar="CK", help="weights to load (official layouts are read)")
    group.add_argument("--trust", action="store_true",
                       help="allow loading a torch.save'd model file (this runs code stored in the file)")
    group.add_argument("--example-input", metavar="IN.pt",
                       help="inputs of a model whose forward takes several (a diffusion denoiser's x_2d, y_noisy, t): "
                            "torch.save of a tensor, a tuple of tensors or a dict by name, batch on axis 0")


def load_target(args: argparse.Namespace, *, checkpoint: bool = True) -> Target:
    """``resolve`` with the options ``add_target_arguments`` added. With ``checkpoint=False``
    ``args.checkpoint`` is left for the caller (e.g. to load HoT weights after patching)."""
    example = read_example(args.example_input) if getattr(args, "example_input", None) else None
    clip = clip_of(example) if example is not None else None
    geometry = tuple(clip.shape[1:]) if clip is not None and clip.dim() == 4 else (None, None, None)
    target = resolve(
        args.target,
        frames=getattr(args, "frames", None) or geometry[0],
        joints=getattr(args, "joints", None) or geometry[1],
        channels=getattr(args, "channels", None) or geometry[2],
        variant=getattr(args, "variant", None),
        overrides=parse_overrides(getattr(args, "overrides", None) or [], getattr(args, "kwargs", None)),
        checkpoint=getattr(args, "checkpoint", None) if checkpoint else None,
        trust=bool(getattr(args, "trust", False)),
    )
    if example is not None:
        if target.patched:
            raise TargetError(f"{target.name} is already patched: it records its inputs; drop --example-input")
        if clip is None or clip.dim() != 4:
            raise InputShapeError(f"--example-input {args.example_input!r} has no clip (B, F, J, C) (the first input "
                                  "of rank 3 or more); the command line handles models whose clip is (B, F, J, C)")
        target.example = example
    return target


def parse_overrides(pairs: list[str], kwargs_json: str | None = None) -> dict[str, Any]:
    """``--kwargs '{"a": 1}'`` merged with ``--set KEY=VALUE`` pairs (VALUE as JSON, else a string)."""
    out: dict[str, Any] = {}
    if kwargs_json:
        try:
            parsed = json.loads(kwargs_json)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--kwargs {kwargs_json!r} is not JSON ({err}); expected an object such as "
                              "'{\"dim\": 32, \"depth\": 2}'") from err
        if not isinstance(parsed, dict):
            raise ConfigError(f"--kwargs {kwargs_json!r} is a JSON {type(parsed).__name__}; expected an object "
                              "such as '{\"dim\": 32}'")
        out.update(parsed)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set dim=32")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


# ----------------------------------------------------------------------------- resolving


def resolve(target: str, *, frames: int | None = None, joints: int | None = None, channels: int | None = None,
            variant: str | None = None, overrides: dict[str, Any] | None = None,
            checkpoint: str | Path | None = None, trust: bool = False) -> Target:
    """The model TARGET names (see the module docstring); raises ``TargetError`` and friends."""
    overrides = dict(overrides or {})
    for name, value in (("frames", frames), ("joints", joints), ("channels", channels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"--{name} {value!r}: expected a positive int")
    path = Path(target)
    if recipes.is_reference(target):
        result = _from_recipe(target, frames, joints, channels, variant, overrides)
    elif path.is_file() or (path.is_dir() and saving.is_directory(path)):
        result = _from_file(path, trust)
        if overrides or variant:
            raise TargetError(
                f"{target} is a model file, so --set/--kwargs/--variant cannot change how it is built; "
                "use them with a recipe name or module:Class"
            )
        _merge_geometry(result, frames, joints, channels)
    elif sources.is_import_path(target):
        if variant is not None:
            raise TargetError(f"--variant is a recipe option; for {target} pass constructor keywords with --set")
        result = _from_class(target, overrides)
        _merge_geometry(result, frames, joints, channels)
    elif path.exists():
        raise TargetError(f"{target} is a directory without a hotpatch config.json; expected a directory written by "
                          "hotpatch.save_pretrained (or hotpatch patch -o DIR/), or a model file")
    else:
        raise TargetError(
            f"{target!r} is not a file, a recipe name or an import path; expected an existing model file, "
            f"one of the recipes {recipes.names()} (or a .toml recipe file), or package.module:Class. Check the "
            "path or the spelling."
        )
    if checkpoint is not None:
        if not result.patched and _has_hot_keys(checkpoint, trust):
            result.pending_checkpoint = str(checkpoint)  # official HoT weights: loaded by Target.patch
            log.info("%s holds HoT weights (pruner/recoverer): it is loaded after patching", checkpoint)
        else:
            log.info("%s", result.load_checkpoint(checkpoint, allow_pickle=trust))
    return result


def _has_hot_keys(path: str | Path, trust: bool) -> bool:
    from hotpatch.checkpoint import map_hot_keys, read_state_dict

    return any(k.startswith("hotpatch_") for k in map_hot_keys(read_state_dict(path, allow_pickle=trust)))


def _from_recipe(name: str, frames, joints, channels, variant, overrides) -> Target:
    recipe = recipes.find(name)
    given = {k: v for k, v in (("frames", frames), ("joints", joints), ("channels", channels),
                               ("variant", variant)) if v is not None}
    changes = {**given, **overrides}
    model = recipe.build(changes)  # it records its source (and a user's recipe its input convention)
    if name.lower() in recipes.families():  # a family name is rebuilt by models.get(family).build, as before
        model.hotpatch_source = sources.recipe_source(name.lower(), changes)
    defaults = _blank_defaults()
    defaults.update({k: v for k, v in recipe.defaults().items() if k in DEFAULT_KEYS})
    defaults.update({k: v for k, v in given.items() if k in DEFAULT_KEYS})
    for key in ("frames", "joints", "channels"):  # geometry given with --set
        if key in given:
            continue
        if key in overrides:
            defaults[key] = overrides[key]
        elif any(k in overrides for k in _GEOMETRY_NAMES[key]):  # the constructor's own name
            defaults[key] = None  # inferred from the model when needed
    return Target(model=model, source=model.hotpatch_source, defaults=defaults, patched=False,
                  kind="recipe", name=name, recipe=recipe, setting=name.lower() not in recipes.families())


_GEOMETRY_NAMES = {"frames": ("num_frame", "maxlen"), "joints": ("num_joints", "n_joints"),
                   "channels": ("in_chans", "dim_in")}


def _from_class(path: str, kwargs: dict[str, Any]) -> Target:
    source = sources.class_source(path, kwargs)
    model = sources.build(source)
    return Target(model=model, source=source, defaults=_blank_defaults(), patched=False, kind="class", name=path)


def _from_file(path: Path, trust: bool) -> Target:
    obj = saving.read_directory(path) if path.is_dir() else _read_file(path, trust)
    if saving.is_model_payload(obj):  # an unpatched model written by hotpatch train / save_model
        model = saving.model_from_payload(obj, str(path))
        return _unpatched_target(model, model.hotpatch_source, "hotpatch-model", str(path))
    if saving.is_payload(obj):
        payload = saving.check_payload(obj, str(path))
        model = saving.from_payload(payload, str(path))
        return _patched_target(model, "hotpatch", str(path))
    if isinstance(obj, nn.Module):
        if hasattr(obj, "hotpatch_config"):
            return _patched_target(obj, "pickle", str(path))
        return _unpatched_target(obj, getattr(obj, "hotpatch_source", None), "pickle", str(path))
    if isinstance(obj, dict) and _looks_like_weights(obj):
        raise TargetError(
            f"{path} holds weights only (a state_dict or checkpoint dict), not a model; pass a recipe name or "
            f"package.module:Class as TARGET and --checkpoint {path}"
        )
    raise TargetError(
        f"{path} holds a {type(obj).__name__}, not a model; expected a model saved with torch.save(model) "
        "or a file written by hotpatch.save"
    )


def _unpatched_target(model: nn.Module, source: Any, kind: str, name: str) -> Target:
    recipe = _recipe_of(source)
    defaults = _blank_defaults()
    if recipe is not None:  # the paper's settings; geometry is read from the model itself
        defaults.update({k: v for k, v in recipe.defaults().items()
                         if k in DEFAULT_KEYS and k not in ("frames", "joints", "channels")})
    return Target(model=model, source=source, defaults=defaults, patched=False, kind=kind, name=name, recipe=recipe)


def _patched_target(model: nn.Module, kind: str, name: str) -> Target:
    cfg = dict(model.hotpatch_config)
    source = getattr(model, "hotpatch_source", None)
    defaults = _blank_defaults()
    defaults.update({k: v for k, v in cfg.items() if k in DEFAULT_KEYS})
    frames, joints, channels = (list(cfg.get("input_shape") or []) + [None, None, None])[:3]
    defaults.update(frames=frames, joints=joints, channels=channels)
    return Target(model=model, source=source, defaults=defaults, patched=True, kind=kind, name=name,
                  recipe=_recipe_of(source))


def _recipe_of(source: Any) -> recipes.Recipe | None:
    if isinstance(source, dict) and isinstance(source.get("recipe"), str):
        return recipes.lookup(source["recipe"])
    return None


def _blank_defaults() -> dict[str, Any]:
    return dict.fromkeys(DEFAULT_KEYS)


def _merge_geometry(target: Target, frames, joints, channels) -> None:
    d = target.defaults
    for key, value in (("frames", frames), ("joints", joints), ("channels", channels)):
        if value is None:
            continue
        if target.patched and d.get(key) is not None and d[key] != value:
            raise TargetError(
                f"{target.name} was patched for clips with {key}={d[key]}, got --{key} {value}; drop --{key} "
                "or patch the original again for that size"
            )
        d[key] = value


def _looks_like_weights(obj: dict) -> bool:
    from hotpatch.checkpoint import CONTAINER_KEYS

    def is_sd(x: Any) -> bool:
        return isinstance(x, dict) and bool(x) and all(isinstance(v, torch.Tensor) for v in x.values())

    return is_sd(obj) or any(is_sd(obj.get(k)) for k in CONTAINER_KEYS)


def _read_file(path: Path, trust: bool) -> Any:
    """The object in ``path``: loaded safely, or by full unpickling when ``trust``."""
    from hotpatch.checkpoint import load_object

    try:
        return load_object(path, allow_pickle=False)
    except CheckpointError as err:
        safe_error: CheckpointError = err
    try:  # tell "pickled objects" (refused by weights_only) from "not a torch file at all"
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise TargetError(
                f"{path} is not a model file: torch.load cannot read it (UnpicklingError); expected a file "
                "written by torch.save(model) or hotpatch.save"
            ) from err
    except Exception as err:  # noqa: BLE001 - any other failure means the file is unreadable
        raise TargetError(
            f"{path} is not a model file: torch.load cannot read it ({type(err).__name__}); expected a file "
            "written by torch.save(model) or hotpatch.save"
        ) from err
    else:
        raise TargetError(f"{path} is not a model file: {safe_error}") from safe_error
    if not trust:
        raise TargetError(
            f"{path} is a pickled Python object: loading it runs code stored in the file, which can do "
            "anything. Pass --trust only if you made the file or trust its author; or save the weights "
            "with torch.save(model.state_dict()) and pass a recipe or module:Class with --checkpoint"
        )
    log.warning("loading %s by full unpickling (--trust): this runs code stored in the file", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - missing classes, damaged data ...
        raise TargetError(
            f"{path} could not be unpickled: {type(err).__name__}: {err}; the classes it was saved from must "
            "be importable (run from the project that defines the model)"
        ) from err


def _infer_shape(model: nn.Module, frames: int | None, name: str) -> tuple[int, int, int]:
    """(F, J, C) that ``model`` accepts, found by ``hotpatch.prepare``'s input inference."""
    from hotpatch.patch import candidate_shapes, prepare

    try:
        example = prepare(model, frames=frames).example
    except (InputShapeError, TraceFailure) as err:
        if frames is not None:
            try:
                fits = prepare(model).example.shape[1]
            except Exception:  # noqa: BLE001 - the hint is optional
                fits = None
            if fits is not None and fits != frames:
                raise InputShapeError(
                    f"could not find an input that {name} accepts: the model accepts F={fits} frames, not --frames "
                    f"{frames}; pass --frames {fits}, or --frames F --joints J --channels C that it was built for"
                ) from err
        shapes = candidate_shapes(model, frames)
        own = _fails_on_all(model, shapes)
        if own is not None:
            raise InputShapeError(
                f"{name} fails on every clip shape tried ({', '.join(map(str, shapes))}) as it is built: "
                f"{type(own).__name__}: {first_line(own)}. Check the settings it is built with (--set/--kwargs, e.g. "
                "a head count that divides the width, depth 1 or more), or pass --frames F --joints J --channels C "
                "that it was built for"
            ) from err
        if isinstance(err, TraceFailure):
            raise
        tried = f" (tried {', '.join(map(str, shapes))})" if shapes else ""
        raise InputShapeError(
            f"could not find an input that {name} accepts{tried}; pass --frames F --joints J --channels C that "
            "the model was built for"
        ) from err
    if example.dim() != 4:
        raise InputShapeError(
            f"{name} takes inputs of shape {tuple(example.shape)}; the command line handles (B, F, J, C) clips"
        )
    return tuple(int(s) for s in example.shape[1:])  # type: ignore[return-value]


def _fails_on_all(model: nn.Module, shapes: Sequence[tuple[int, ...]]) -> Exception | None:
    """The model's own error on the first of ``shapes`` if it fails on every one (None if one runs)."""
    first = None
    training = model.training
    try:
        for shape in shapes:
            try:
                with torch.no_grad(), torch.random.fork_rng(devices=[]):
                    model.eval()(torch.zeros(shape))
                return None
            except Exception as err:  # noqa: BLE001 - the model's own failure is the answer
                first = first or err
    finally:
        model.train(training)
    return first


def describe(target: Target) -> str:
    """One line: what the target is and how it was built."""
    if target.kind == "recipe":
        recipe = target.recipe
        name = (target.name if recipe is None or not target.setting else recipe.name if recipe.installed
                else str(recipe.path))
        overrides = (target.source or {}).get("overrides") if recipe is None or recipe.installed else None
        return f"recipe {name}" + (f" {json.dumps(overrides)}" if overrides else "")
    if target.kind == "class":
        return f"{target.name}(**{json.dumps(target.source['kwargs'])})" if target.source else target.name
    state = "patched model" if target.patched else "model"
    return f"{state} from {target.name}"

