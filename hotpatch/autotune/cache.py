"""Patched models of a search, built once and kept while they fit in memory."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import torch.nn as nn


class ModelCache:
    """``get(key)`` builds ``build(key)`` once and keeps it while at most ``room`` models are kept
    (a later round asks for the same finalists again); ``keep_only(keys)`` frees the others."""

    def __init__(self, build: Callable[[Hashable], nn.Module], room: int) -> None:
        self.build, self.room = build, max(1, room)
        self.models: dict[Hashable, nn.Module] = {}
        self.builds = 0  # how many models were built (for the tests: none twice while kept)

    @classmethod
    def for_model(cls, build: Callable[[Hashable], nn.Module], model: nn.Module,
                  budget_bytes: int = 1 << 30) -> ModelCache:
        """Room for as many patched copies of ``model`` as fit in ``budget_bytes`` (1 GiB)."""
        size = sum(p.numel() * p.element_size() for p in model.parameters()) or 1
        return cls(build, budget_bytes // size)

    def get(self, key: Hashable) -> nn.Module:
        if key in self.models:
            return self.models[key]
        model = self.build(key)
        self.builds += 1
        if len(self.models) < self.room:
            self.models[key] = model
        return model

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        wanted = set(keys)
        self.models = {k: m for k, m in self.models.items() if k in wanted}
