"""How a model was built, as plain data, so that ``hotpatch.load`` can build it again.

A *source* is one of two JSON-like dicts:

* ``{"recipe": "mixste", "overrides": {"frames": 27, "dim": 32}}`` — for a family name,
  ``hotpatch.models.get("mixste").build(**overrides)`` (every ``build`` there sets it on the model
  it returns); for the name of an installed recipe file (``mixste-tpc-243-61``), that recipe's
  model with ``overrides`` (:meth:`hotpatch.recipe.Recipe.build`);
* ``{"class": "package.module:Class", "kwargs": {...}}`` — ``Class(**kwargs)``; the class must
  be an ``nn.Module`` subclass, or a function annotated to return one (a file naming, say,
  ``os:system`` is refused, not called).

Models carry their source in a ``hotpatch_source`` attribute, which ``hotpatch.apply`` copies
onto the patched GraphModule.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from hotpatch import recipe as recipes
from hotpatch.errors import ConfigError, TargetError

__all__ = ["build", "check", "class_source", "import_class", "recipe_source"]

_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def recipe_source(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The source of ``hotpatch.models.get(name).build(**overrides)``."""
    return {"recipe": name, "overrides": dict(overrides)}


def class_source(path: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The source of ``Class(**kwargs)`` for ``path = "package.module:Class"``."""
    return {"class": path, "kwargs": dict(kwargs or {})}


def is_import_path(text: str) -> bool:
    """True for text shaped like ``package.module:Class``."""
    return bool(_IMPORT_PATH.fullmatch(text))


def import_class(path: str) -> Any:
    """The ``nn.Module`` subclass, or function annotated ``-> nn.Module``, named by ``package.module:Name``
    (imports the module)."""
    if not isinstance(path, str) or not is_import_path(path):
        raise TargetError(
            f"{path!r} is not an import path; expected 'package.module:Class', e.g. "
            "'mymodels.vpt:MyVPT' (the module must be importable from the current directory or sys.path)"
        )
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise TargetError(
            f"cannot import module {module_name!r} of {path!r}: {err}; expected an importable module. "
            "Install the package or run from the directory that holds it."
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(
                f"module {module_name!r} has no attribute {attr!r}; expected the model class there. "
                "Check the spelling after the ':'."
            )
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)) and not recipes.returns_module(obj):
        raise TargetError(
            f"{path!r} is a {type(obj).__name__}, not an nn.Module subclass; expected the model class "
            "(hotpatch builds it as Class(**kwargs))."
        )
    return obj


def check(source: Any) -> dict[str, Any]:
    """``source`` validated (kind, names, plain JSON-like values); raises ``ConfigError``."""
    if not isinstance(source, Mapping):
        raise ConfigError(f"source must be a dict, got {type(source).__name__}; {_EXPECTED}")
    keys = set(source)
    if keys == {"recipe", "overrides"} and isinstance(source["recipe"], str):
        args = source["overrides"]
    elif keys == {"class", "kwargs"} and isinstance(source["class"], str):
        args = source["kwargs"]
    else:
        raise ConfigError(f"source {dict(source)!r} is not understood; {_EXPECTED}")
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"source {dict(source)!r}: its arguments must be a dict with str keys; {_EXPECTED}")
    try:
        plain = json.loads(json.dumps(dict(args)))
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"source {dict(source)!r} holds a value that is not plain data ({err}); expected only "
            "numbers, strings, bools, None, lists and dicts, so the file loads without unpickling code. "
            "Build the model from plain arguments, or give it a source that does."
        ) from err
    if plain != dict(args):  # tuples became lists, int keys ... : keep exactly what rebuilds
        raise ConfigError(
            f"source {dict(source)!r} holds values that do not survive JSON (tuples, non-str keys, NaN); "
            "use lists and str keys."
        )
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in source.items()}


_EXPECTED = ("expected {'recipe': 'mixste', 'overrides': {...}} or "
             "{'class': 'package.module:Class', 'kwargs': {...}}")


def build(source: Mapping[str, Any]) -> nn.Module:
    """Build the (unpatched) model ``source`` describes; it carries ``hotpatch_source``."""
    source = check(source)
    if "recipe" in source:
        from hotpatch import models

        name = source["recipe"]
        if name.lower() in models.names():
            model = models.get(name).build(**source["overrides"])
        else:
            recipe = recipes.lookup(name)
            if recipe is None:
                raise TargetError(f"the model was built from recipe {name!r}, which this hotpatch does not have; "
                                  f"expected one of {recipes.names()}. Install the hotpatch version it was made with")
            model = recipe.build(source["overrides"])  # records the same source
    else:
        cls = import_class(source["class"])
        try:
            model = cls(**source["kwargs"])
        except TypeError as err:
            raise TargetError(
                f"{source['class']}(**{source['kwargs']!r}) failed: {err}; pass the constructor's "
                "keyword arguments (--kwargs '{\"name\": value}' on the command line)."
            ) from err
        model.hotpatch_source = source
    return model
