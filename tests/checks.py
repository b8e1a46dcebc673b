"""Helpers shared by the tests that check patched models (not a test module)."""

from __future__ import annotations


def frames_seen(shape, axes, batch: int, joints: int = 17) -> int:
    """Frames in a block input of layout ``axes`` (from the plan) at batch size ``batch``."""
    i = next(i for i, a in enumerate(axes) if a is not None and "F" in a)
    size = shape[i]
    if "B" in axes[i]:
        size //= batch
    if "J" in axes[i]:
        size //= joints
    return size
