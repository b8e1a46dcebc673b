"""Small helpers shared by the recipe ``build`` functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotpatch.errors import ConfigError


def apply_overrides(recipe: str, config: dict[str, Any], aliases: Mapping[str, str],
                    frames: int | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` updated with ``frames`` and ``overrides``.

    ``aliases`` maps short, recipe-independent names (``frames``, ``joints``, ``channels``,
    ``dim``) onto the constructor's own argument names; both spellings are accepted.
    """
    config = dict(config)
    if frames is not None:
        overrides = {"frames": frames, **overrides}
    for key, value in overrides.items():
        target = aliases.get(key, key)
        if target not in config:
            known = sorted(set(config) | set(aliases))
            raise ConfigError(
                f"{recipe}.build() got an unknown override {key!r}; expected one of {known}"
            )
        config[target] = value
    frames_key = aliases["frames"]
    if not isinstance(config[frames_key], int) or config[frames_key] < 1:
        raise ConfigError(
            f"{recipe}.build() got frames={config[frames_key]!r}; expected a positive int such as 243"
        )
    return config


def mark_source(model: Any, recipe: str, frames: int | None, overrides: Mapping[str, Any]) -> Any:
    """Record on ``model`` how it was built (``hotpatch_source``), so ``hotpatch.load`` can rebuild it."""
    given = {"frames": frames} if frames is not None else {}
    model.hotpatch_source = {"recipe": recipe, "overrides": {**given, **overrides}}
    return model
