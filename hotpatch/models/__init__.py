"""Faithful re-implementations of published video pose transformers (installed as ``hotpatch.models``).

Each recipe module offers ``build(frames=None, **overrides)``, ``load_checkpoint(model, path)``
``DEFAULTS`` (input geometry and the HoT paper's settings for that model) and ``INPUT`` (the
input convention of its official checkpoints, :mod:`hotpatch.conventions`).
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
