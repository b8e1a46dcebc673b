"""The keep-ratio knob: ``hotpatch.apply(model, n=3, keep=1/3)`` keeps ``f = keep · F`` frames.

``keep`` is a fraction of the clip length F in (0, 1] (a list: one per pruning stage, each a
fraction of F). f is ``keep · F`` rounded (halves up, at least 1); where the model's strided
stages or frame splits do not take that f, the engine refuses it with the valid values and
:func:`refit` moves it to the valid f nearest ``keep · F`` (the larger on a tie).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hotpatch.errors import ConfigError

__all__ = ["describe", "frames_for", "parse", "refit", "resolve"]

Frames = int | tuple[int, ...]


def _fractions(keep: float | Sequence[float]) -> list[float]:
    values = list(keep) if isinstance(keep, (list, tuple)) else [keep]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1) or math.isnan(v):
            raise ConfigError(f"keep={keep!r}: pass the fraction of the F frames to keep, 0 < keep <= 1 (e.g. 1/3), "
                              "or one per stage (e.g. [0.5, 0.25])")
    if not values:
        raise ConfigError("keep=[]: pass one fraction per pruning stage")
    return values


def frames_for(keep: float | Sequence[float], frames: int) -> Frames:
    """f for ``keep`` of ``frames``: ``keep · F`` rounded, halves up, at least 1 (a tuple for a list)."""
    fs = [max(1, min(frames, math.floor(v * frames + 0.5))) for v in _fractions(keep)]
    return tuple(fs) if isinstance(keep, (list, tuple)) and len(fs) > 1 else fs[0]


def resolve(f: Frames | Sequence[int] | None, keep: float | Sequence[float] | None, frames: int) -> Frames:
    """``f`` as given, or computed from ``keep``; exactly one of them must be given."""
    if (f is None) == (keep is None):
        raise ConfigError(f"pass exactly one of f (the frames kept, e.g. f=81) and keep (the fraction of the F "
                          f"frames kept, e.g. keep=1/3); got f={f!r}, keep={keep!r}")
    return frames_for(keep, frames) if keep is not None else f  # type: ignore[return-value]


def refit(f: Frames, keep: float | Sequence[float], frames: int, err: ConfigError) -> Frames | None:
    """``f`` with the value the engine refused (``err.requested``) moved to the valid f (``err.valid``)
    nearest ``keep · F``; None if ``err`` lists no valid values or nothing changes."""
    valid, requested = getattr(err, "valid", None), getattr(err, "requested", None)
    if not valid or requested is None:
        return None
    fs = list(f) if isinstance(f, tuple) else [f]
    wanted = [v * frames for v in _fractions(keep)]
    out = [min(valid, key=lambda g: (abs(g - w), -g)) if got == requested else got for got, w in zip(fs, wanted)]
    if out == fs:
        return None
    return tuple(out) if isinstance(f, tuple) else out[0]


def describe(keep: float | Sequence[float], frames: int, f: Frames) -> str:
    """``keep=0.333 of F=243 frames: f=81`` (what ``apply`` logs)."""
    text = ",".join(f"{v:.3g}" for v in _fractions(keep))
    kept = ",".join(map(str, f)) if isinstance(f, tuple) else str(f)
    return f"keep={text} of F={frames} frames: f={kept}"


def parse(text: str) -> float | list[float]:
    """``"0.33"`` -> 0.33, ``"0.5,0.25"`` -> [0.5, 0.25] (the command line's ``--keep``); checked."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{text!r} is not a number or a comma-separated list of numbers (e.g. 0.33, or "
                          "0.5,0.25 for two stages)") from None
    _fractions(values)
    return values[0] if len(values) == 1 else values
