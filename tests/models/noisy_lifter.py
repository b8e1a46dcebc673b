"""A lifter whose output changes on every call (noise added in ``forward``): no export of it can
match the eager model, so it drives the "export failed its check" paths of the CLI tests."""

from __future__ import annotations

import torch
import torch.nn as nn


class NoisyLifter(nn.Module):
    def __init__(self, joints: int = 17, channels: int = 2) -> None:
        super().__init__()
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        return y + torch.rand_like(y)
