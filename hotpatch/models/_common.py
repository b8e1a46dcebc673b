"""Small helpers shared by the recipe ``build`` functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def check_blocks(recipe: str, config: Mapping[str, Any], *, depth: str, dim: str | None = None,
                 heads: str | None = None) -> None:
    """``ConfigError`` naming the value and the fix if ``config`` would build no transformer block
    (``config[depth] < 1``) or heads that do not split the width evenly (``config[heads]`` not
    dividing ``config[dim]``). Keys are the constructor's; messages also give the short ``dim``/``depth``."""
    blocks = config[depth]
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
        named = "" if depth == "depth" else f" ({depth})"
        raise ConfigError(f"{recipe} with depth={blocks!r}{named} has no transformer block, so there is nothing "
                          "to run or prune; pass depth=1 or more")
    if dim is None or heads is None:
        return
    width, count = config[dim], config[heads]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"{recipe} with {heads}={count!r}: pass a positive number of attention heads")
    if isinstance(width, int) and width % count:
        fits = [h for h in range(1, min(width, 16) + 1) if width % h == 0]
        raise ConfigError(
            f"{recipe} with dim={width} ({dim}) and {heads}={count}: each attention head takes dim / {heads} "
            f"channels, so {heads} must divide dim; pass {heads} among {fits}, or a dim that is a multiple of {count} "
            f"(e.g. {count * max(1, round(width / count))})"
        )


def recipe_constant(family: str, name: str) -> dict[str, Any]:
    """A model module's ``DEFAULTS`` (clip geometry and the paper's HoT setting) or ``INPUT`` (input
    convention), read from its family's default recipe (``recipes/<family>/``): the files are their source."""
    from hotpatch import recipe

    default = recipe.find(family)
    return default.defaults() if name == "DEFAULTS" else default.convention()


def constants_getattr(family: str, module: str) -> Callable[[str], Any]:
    """A model module's ``__getattr__``: ``DEFAULTS`` (clip geometry and the paper's HoT setting) and
    ``INPUT`` (the official checkpoints' input convention), read from ``recipes/<family>/``'s default."""
    def __getattr__(name: str) -> Any:
        if name in ("DEFAULTS", "INPUT"):
            return recipe_constant(family, name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def mark_source(model: Any, recipe: str, frames: int | None, overrides: Mapping[str, Any]) -> Any:
    """Record on ``model`` how it was built (``hotpatch_source``), so ``hotpatch.load`` can rebuild it."""
    given = {"frames": frames} if frames is not None else {}
    model.hotpatch_source = {"recipe": recipe, "overrides": {**given, **overrides}}
    return model
