"""Recipes: TOML files that say how to build a model, how to feed it and how to patch it.

A recipe is one file in the repository's top-level ``recipes/<family>/<setting>.toml``, installed
with the package (``hotpatch/recipe_files/`` in a wheel), or any file of a user's. Its name is
``<family>-<setting>`` (``mixste-hot-243-81``); a family name (``mixste``) means the family's
default recipe (``default = true``). Sections:

* ``[architecture]``: ``build`` (``package.module:Callable``: an ``nn.Module`` class, or a function
  annotated ``-> nn.Module``), ``args`` (its keyword arguments) and ``input_args`` (which keyword
  receives ``[input]``'s frames, joints, channels);
* ``[input]``: the clip (frames, joints, channels) and its convention (layout, normalize, scores);
* ``[hot]``: the HoT setting (n, f or keep, pipeline, prune, recover, k, prune_pos_embed);
* ``[checkpoint]``: the official weights' key layout, loader and where users get them;
* ``[finetune]``: the paper's schedule (for reference; ``hotpatch finetune`` takes flags);
* ``[paper]``: the paper's numbers (params, FLOPs, MPJPE ...), never measured by hotpatch.

``find(name_or_path)`` reads and checks one (an unknown key, a wrong type, an import path that
does not resolve: a one-line ``ConfigError`` naming the key and the fix); ``Recipe.build()``
builds its model. TOML: the standard library reads it (``tomllib``), it has comments, and it
has no code or anchors, so a recipe is data that a user can read, copy and edit.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import torch.nn as nn

from hotpatch.errors import ConfigError
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS

__all__ = ["Recipe", "families", "find", "import_builder", "installed", "lookup", "names", "recipe_dir"]

PIPELINES = ("auto", "seq2seq", "seq2frame")
NORMALIZATIONS = ("screen", "box")
GEOMETRY = ("frames", "joints", "channels")

# Value kinds: a Python type (float also takes an int), a tuple of allowed strings, or one of these.
INTS, FRACTIONS, NUMBERS, TABLE = "int or list of ints", "fraction or list of fractions", "list of numbers", "table"
_NUMBERS = {"params_m": float, "flops_g": float, "mpjpe_mm": float, "pck": float, "auc": float, "fps": float}
SCHEMA: dict[str, dict[str, Any]] = {
    "recipe": {"name": str, "family": str, "default": bool, "summary": str},
    "architecture": {"build": str, "args": TABLE, "input_args": dict.fromkeys(GEOMETRY, str)},
    "input": {"frames": int, "joints": int, "channels": int, "layout": str, "normalize": NORMALIZATIONS,
              "scores": bool, "detector": str},
    "checkpoint": {"loader": str, "layout": str, "weights": str, "hot_weights": str},
    "hot": {"n": INTS, "f": INTS, "keep": FRACTIONS, "pipeline": PIPELINES, "prune": tuple(PRUNERS),
            "recover": tuple(RECOVERERS), "k": int, "prune_pos_embed": bool, "recover_frames": int},
    "finetune": {"source": str, "epochs": int, "batch": int, "optimizer": str, "amsgrad": bool, "lr": float,
                 "weight_decay": float, "schedule": ("cosine", "step", "constant"), "gamma": float,
                 "large_decay": float, "large_decay_every": int, "seed": int, "joint_weights": NUMBERS,
                 "loss": {"mpjpe": float, "weighted_mpjpe": float, "tcloss": float, "mpjve": float,
                          "velocity": float, "scale": float}},
    "paper": {"source": str, "dataset": str, **_NUMBERS, "original": _NUMBERS},
}
REQUIRED = {"architecture": ("build",), "input": GEOMETRY, "hot": ("n",)}


# ----------------------------------------------------------------------------- finding recipes


def recipe_dir() -> Path:
    """The folder of the installed recipes: ``hotpatch/recipe_files`` in an installed wheel, else the
    checkout's top-level ``recipes/`` (their only source)."""
    package = Path(__file__).resolve().parent
    installed_dir = package / "recipe_files"
    if installed_dir.is_dir():
        return installed_dir
    checkout = package.parent / "recipes"
    if checkout.is_dir() and (package.parent / "pyproject.toml").is_file():
        return checkout
    raise ConfigError(f"hotpatch's recipe files are missing (neither {installed_dir} nor {checkout} exists); "
                      "reinstall hotpatch")


@lru_cache(maxsize=None)
def installed() -> dict[str, Recipe]:
    """Every installed recipe by name (``family-setting``), sorted."""
    root = recipe_dir()
    found = {}
    for path in sorted(root.glob("*/*.toml")):
        recipe = load(path, name=f"{path.parent.name}-{path.stem}", family=path.parent.name, installed=True)
        found[recipe.name] = recipe
    return found


def families() -> list[str]:
    """The model families with a default recipe (``mixste``, ``motionbert``, ``mhformer``)."""
    return sorted(_defaults())


def names() -> list[str]:
    """The names ``find`` accepts: every installed recipe and every family (its default recipe)."""
    return sorted({*installed(), *_defaults()})


@lru_cache(maxsize=None)
def _defaults() -> dict[str, str]:
    """Family -> its default recipe's name."""
    out: dict[str, str] = {}
    for recipe in installed().values():
        if recipe.section("recipe").get("default"):
            if recipe.family in out:
                raise ConfigError(f"recipes {out[recipe.family]} and {recipe.name} are both the default of "
                                  f"{recipe.family}; set default = true in one of them only")
            out[recipe.family] = recipe.name
    return out


def lookup(name: str) -> Recipe | None:
    """The installed recipe called ``name`` (a family name gives its default), or None."""
    if not isinstance(name, str):
        return None
    key = name.lower()
    return installed().get(_defaults().get(key, key))


def find(name_or_path: str | Path) -> Recipe:
    """A recipe by name (``mixste``, ``mixste-hot-243-81``) or by the path of a ``.toml`` file."""
    text = str(name_or_path)
    recipe = lookup(text)
    if recipe is not None:
        return recipe
    path = Path(text)
    if path.suffix.lower() == ".toml":
        if not path.is_file():
            raise ConfigError(f"recipe file {text} does not exist; check the path (hotpatch recipes lists the "
                              "installed ones)")
        own = installed().get(f"{path.parent.name}-{path.stem}")
        if own is not None and own.path.resolve() == path.resolve():
            return own  # an installed recipe given by its path
        return load(path)
    close = difflib.get_close_matches(text.lower(), names(), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"unknown recipe {text!r}{hint} Expected one of {names()} or the path of a .toml recipe file")


def is_reference(text: str) -> bool:
    """True if ``text`` names an installed recipe or a ``.toml`` file."""
    return lookup(text) is not None or str(text).lower().endswith(".toml")


def load(path: str | Path, *, name: str | None = None, family: str | None = None, installed: bool = False) -> Recipe:
    """Read and check the recipe file ``path`` (``installed``: one of hotpatch's own, named ``name``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read recipe {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix the line it names") from err
    check(data, str(path))
    head = data.get("recipe", {})
    family = head.get("family", family)
    if name is not None:
        given = head.get("name")
        if given is not None and given != name:
            raise ConfigError(f"{path}: [recipe] name = {given!r}, but an installed recipe is named after its "
                              f"file ({name!r}); remove the name key")
    else:
        name = head.get("name") or path.stem
    return Recipe(name=name, family=family, path=path, data=data, installed=installed)


# ----------------------------------------------------------------------------- checking


def check(data: Mapping[str, Any], where: str) -> None:
    """``ConfigError`` naming the first unknown key, wrong type or unresolvable import path."""
    _check_table(data, SCHEMA, where, "")
    for section, keys in REQUIRED.items():
        for key in keys:
            if key not in data.get(section, {}):
                raise ConfigError(f"{where}: [{section}] needs {key}; add it (see recipes/ for examples)")
    hot, inp = data["hot"], data["input"]
    if ("f" in hot) == ("keep" in hot):
        raise ConfigError(f"{where}: [hot] needs exactly one of f (frames kept) and keep (a fraction of "
                          f"F={inp['frames']}); {'remove one' if 'f' in hot else 'add f = ... or keep = ...'}")
    for key in ("f", "keep"):
        if key in hot and isinstance(hot["n"], list) != isinstance(hot[key], list):
            raise ConfigError(f"{where}: [hot] n and {key} must both be numbers or both lists (one per stage)")
    for key in GEOMETRY:
        if inp[key] < 1:
            raise ConfigError(f"{where}: [input] {key} = {inp[key]}; expected a positive int")
    if inp.get("scores") is not None and inp["scores"] != (inp["channels"] == 3):
        raise ConfigError(f"{where}: [input] scores = {str(inp['scores']).lower()} but channels = {inp['channels']}; "
                          "a score is the third channel: use channels = 3 with scores = true, 2 with false")
    import_builder(data["architecture"]["build"], f"{where}: [architecture] build")
    loader = data.get("checkpoint", {}).get("loader")
    if loader is not None:
        _import(loader, f"{where}: [checkpoint] loader")


def _check_table(table: Mapping[str, Any], schema: Mapping[str, Any], where: str, prefix: str) -> None:
    for key, value in table.items():
        label = f"[{prefix}] {key}" if prefix else f"[{key}]"
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key {label}; {hint}expected one of {', '.join(schema)}")
        kind = schema[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {label} must be a table ({'[' + key + ']' if not prefix else '{ ... }'})")
            _check_table(value, kind, where, f"{prefix}.{key}" if prefix else key)
        else:
            problem = _kind_problem(value, kind)
            if problem:
                raise ConfigError(f"{where}: {label} = {_show(value)} {problem}")


def _kind_problem(value: Any, kind: Any) -> str | None:
    """Why ``value`` is not of ``kind`` (None if it is)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if kind is TABLE:
        return None if isinstance(value, dict) else "must be a table of keyword arguments"
    if kind is INTS:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        return None if ok else "must be an int or a list of ints, one per stage (e.g. 81 or [121, 61])"
    if kind is FRACTIONS:
        values = value if isinstance(value, list) else [value]
        ok = bool(values) and all(number(v) and 0 < v <= 1 for v in values)
        return None if ok else "must be a fraction of F in (0, 1] or a list of them (e.g. 0.333 or [0.5, 0.25])"
    if kind is NUMBERS:
        return None if isinstance(value, list) and all(number(v) for v in value) else "must be a list of numbers"
    if isinstance(kind, tuple):
        return None if value in kind else f"is not one of {', '.join(map(repr, kind))}"
    if kind is float:
        return None if number(value) else "must be a number"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an int"
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    return None if isinstance(value, kind) else f"must be a {kind.__name__}"


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def _import(path: str, label: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{label} = {path!r} is not an import path; write 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{label} = {path!r} does not resolve: cannot import {module_name!r} ({err}); install the "
                          "package or put its folder on PYTHONPATH") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{label} = {path!r} does not resolve: {module_name!r} has no {attr!r}; check the "
                              "name after the ':'")
        obj = getattr(obj, part)
    return obj


def returns_module(obj: Any) -> bool:
    """True for a function annotated to return an ``nn.Module`` subclass (``def build(...) -> MyVPT``)."""
    if not inspect.isfunction(obj):
        return False
    try:
        returns = typing.get_type_hints(obj).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation is no annotation
        return False
    return isinstance(returns, type) and issubclass(returns, nn.Module)


def import_builder(path: str, label: str = "architecture") -> Callable[..., nn.Module]:
    """The builder ``package.module:Name`` names: an ``nn.Module`` subclass, or a function whose return
    annotation is one (so a file naming ``os:system`` is refused, not called)."""
    obj = _import(path, label)
    if (isinstance(obj, type) and issubclass(obj, nn.Module)) or returns_module(obj):
        return obj
    if inspect.isfunction(obj):
        raise ConfigError(f"{label} = {path!r} is a function without a '-> nn.Module' return annotation; annotate "
                          "it (def build(...) -> nn.Module) or name the model class itself")
    raise ConfigError(f"{label} = {path!r} is a {type(obj).__name__}, not an nn.Module class or a function "
                      "returning one; name the model class (package.module:Class)")


# ----------------------------------------------------------------------------- a recipe


@dataclass(frozen=True)
class Recipe:
    """A checked recipe file (see the module docstring). ``installed``: one of hotpatch's own."""

    name: str
    family: str | None
    path: Path
    data: Mapping[str, Any]
    installed: bool = False

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.data.get(name, {}))

    @property
    def input(self) -> dict[str, Any]:
        return self.section("input")

    @property
    def architecture(self) -> dict[str, Any]:
        return {"build": self.data["architecture"]["build"], "args": dict(self.data["architecture"].get("args", {}))}

    def settings(self) -> dict[str, Any]:
        """The ``[hot]`` values as keyword arguments of ``hotpatch.apply`` (lists for several stages)."""
        return self.section("hot")

    def defaults(self) -> dict[str, Any]:
        """Geometry and HoT setting in the form of the former ``DEFAULTS`` constants."""
        hot, inp = self.settings(), self.input
        out = {k: inp[k] for k in GEOMETRY}
        out.update(n=hot["n"], **({"f": hot["f"]} if "f" in hot else {"keep": hot["keep"]}),
                   pipeline=hot.get("pipeline", "seq2seq"), prune=hot.get("prune", "tpc"),
                   recover=hot.get("recover"), prune_pos_embed=hot.get("prune_pos_embed", False))
        out.update({k: hot[k] for k in ("k", "recover_frames") if k in hot})
        if "variant" in self.architecture["args"]:
            out["variant"] = self.architecture["args"]["variant"]
        return out

    def convention(self) -> dict[str, Any]:
        """The input convention (:mod:`hotpatch.conventions`) as plain data."""
        inp = self.input
        return {"normalize": inp.get("normalize", "screen"), "scores": bool(inp.get("scores", inp["channels"] == 3)),
                "joints": inp.get("layout", "h36m17")}

    def build_args(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The builder's keyword arguments: ``[architecture.args]``, ``[input]``'s geometry through
        ``input_args``, then ``overrides`` (geometry by its short name, the rest by the builder's names)."""
        arch = self.data["architecture"]
        mapping = dict(arch.get("input_args", {}))
        args = {mapping[k]: self.input[k] for k in GEOMETRY if k in mapping}
        args.update(arch.get("args", {}))
        for key, value in (overrides or {}).items():
            if key in GEOMETRY and key not in mapping:
                if value != self.input[key]:
                    raise ConfigError(
                        f"recipe {self.name} builds its model for {key}={self.input[key]} only: [architecture] "
                        f"input_args names no argument that takes {key}; add one (e.g. {key} = \"num_{key}\") "
                        f"or drop --{key} {value}")
                continue
            args[mapping.get(key, key)] = value
        return args

    def build(self, overrides: Mapping[str, Any] | None = None) -> nn.Module:
        """The recipe's (unpatched) model; ``overrides`` as in :meth:`build_args`. It records how to
        build it again (``hotpatch_source``: this installed recipe's name and ``overrides``, else the
        builder's own record or ``{"class": build, "kwargs": args}``) and, for a recipe of your own,
        its input convention (``hotpatch_input``), so ``hotpatch.save`` / ``save_pretrained`` need
        nothing more."""
        label = f"{self.path}: [architecture] build"
        builder = import_builder(self.data["architecture"]["build"], label)
        args = self.build_args(overrides)
        try:
            model = builder(**args)
        except TypeError as err:
            raise ConfigError(f"recipe {self.name}: {self.data['architecture']['build']}(**{args}) failed: {err}; "
                              "check [architecture.args] (and --set) against its keyword arguments") from err
        if not isinstance(model, nn.Module):
            raise ConfigError(f"recipe {self.name}: {self.data['architecture']['build']} returned a "
                              f"{type(model).__name__}, not an nn.Module")
        overrides = dict(overrides or {})
        if self.installed:
            model.hotpatch_source = {"recipe": self.name, "overrides": overrides}
            return model
        if getattr(model, "hotpatch_source", None) is None:
            model.hotpatch_source = {"class": self.data["architecture"]["build"], "kwargs": args}
        scores = {"scores": overrides["channels"] == 3} if "channels" in overrides else {}
        model.hotpatch_input = {**self.convention(), **scores}
        return model

    def load_checkpoint(self, model: nn.Module, path: str | Path, *, strict: bool = True,
                        allow_pickle: bool = False) -> Any:
        """Load weights with the recipe's ``[checkpoint] loader`` (else the generic reader of official layouts)."""
        loader = self.section("checkpoint").get("loader")
        if loader is None:
            from hotpatch.checkpoint import load_checkpoint_file

            return load_checkpoint_file(model, path, strict=strict, allow_pickle=allow_pickle)
        return _import(loader, f"{self.path}: [checkpoint] loader")(model, path, strict=strict)

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")
