"""Calibration windows of a search and the error of a model on a prefix of them.

The windows are non-overlapping F-frame windows of the calibration sequences, at most
``max_windows`` of them, evenly spread and ordered so that every prefix is spread too. Each
model's predictions are kept by key, so a later round predicts only the windows it adds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import torch.nn as nn

from hotpatch.autotune.halving import spread_order


class Calibration:
    """The windows, and each scored model's predictions on the prefix it was scored on."""

    def __init__(self, sequences: Sequence[Any], frames: int, *, pipeline: str, confidence: bool,
                 batch_size: int, max_windows: int | None) -> None:
        from hotpatch.data import WindowDataset

        self.dataset = WindowDataset(list(sequences), frames, mode=pipeline, confidence=confidence)
        self.order = spread_order(len(self.dataset), max_windows)
        self.batch_size = batch_size
        self.chunks: dict[Hashable, list[Any]] = {}
        self.eval_seconds = 0.0

    def __len__(self) -> int:
        return len(self.order)

    def error(self, key: Hashable, model: nn.Module, windows: int) -> float:
        """MPJPE (mm) of ``model`` on the first ``windows`` windows (inf if it is not finite)."""
        from hotpatch.evaluate import score

        t0 = time.perf_counter()
        err = float(score(self.dataset, self._predictions(key, model, windows))["mpjpe"])
        self.eval_seconds += time.perf_counter() - t0
        return err if math.isfinite(err) else math.inf

    def window_errors(self, key: Hashable, model: nn.Module) -> np.ndarray:
        """MPJPE (mm) of ``model`` on each window, in window order."""
        from hotpatch.evaluate import Predictions, score

        t0 = time.perf_counter()
        p = self._predictions(key, model, len(self))
        out = np.array([score(self.dataset, Predictions(p.poses[k:k + 1], None if p.selected is None
                                                        else p.selected[k:k + 1], p.windows[k:k + 1], p.mode))["mpjpe"]
                        for k in range(len(p.windows))])
        self.eval_seconds += time.perf_counter() - t0
        return out

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget the predictions of every other model."""
        wanted = set(keys)
        self.chunks = {k: v for k, v in self.chunks.items() if k in wanted}

    def _predictions(self, key: Hashable, model: nn.Module, windows: int) -> Any:
        from hotpatch.evaluate import Predictions, predict

        chunks = self.chunks.setdefault(key, [])
        seen = sum(len(ch.windows) for ch in chunks)
        if windows > seen:
            chunks.append(predict(model, self.dataset, batch_size=self.batch_size, windows=self.order[seen:windows]))
        sel = [ch.selected for ch in chunks]
        merged = Predictions(poses=np.concatenate([ch.poses for ch in chunks])[:windows],
                             selected=None if any(s is None for s in sel) else np.concatenate(sel)[:windows],
                             windows=np.concatenate([ch.windows for ch in chunks])[:windows], mode=self.dataset.mode)
        return merged
