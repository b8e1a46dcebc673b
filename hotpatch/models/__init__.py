"""Faithful re-implementations of published video pose transformers (installed as ``hotpatch.models``).

Each module offers ``build(frames=None, **overrides)`` and ``load_checkpoint(model, path)``, plus
``DEFAULTS`` (input geometry and the HoT paper's settings for that model) and ``INPUT`` (the input
convention of its official checkpoints, :mod:`hotpatch.conventions`), both read from the family's
default recipe in the top-level ``recipes/`` (:mod:`hotpatch.recipe`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hotpatch.errors import ConfigError

_RECIPES = ("mhformer", "mixste", "motionbert")


def names() -> list[str]:
    """The names ``get`` accepts, sorted."""
    return list(_RECIPES)


def get(name: str) -> ModuleType:
    """The recipe module called ``name`` (case-insensitive), e.g. ``get("mixste").build()``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; expected one of {names()}")
    return importlib.import_module(f"{__name__}.{key}")
