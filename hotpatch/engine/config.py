"""The user's patch settings as the engine sees them (validated by :func:`hotpatch.apply`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PatchConfig:
    """The user's choices, validated by :func:`hotpatch.apply`.

    ``n`` and ``f`` are ints for one cut, or equally long tuples for several (multi-stage
    pruning: stage s prunes after block ``n[s]`` to ``f[s]`` frames).
    """

    n: int | tuple[int, ...]
    f: int | tuple[int, ...]
    frames: int
    pipeline: str  # "seq2seq" or "seq2frame"
    prune: str = "tpc"
    recover: str | None = "tra"
    k: int = 2
    prune_pos_embed: bool = False
    recover_frames: int | None = None

    @property
    def center(self) -> int | None:
        return self.frames // 2 if self.pipeline == "seq2frame" else None

    @property
    def cuts(self) -> tuple[int, ...]:
        """The n of every stage, in order."""
        return self.n if isinstance(self.n, tuple) else (self.n,)

    @property
    def keeps(self) -> tuple[int, ...]:
        """The f of every stage, in order."""
        return self.f if isinstance(self.f, tuple) else (self.f,)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

