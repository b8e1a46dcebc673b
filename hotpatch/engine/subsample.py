"""A model that subsamples its own clip on the frame axis (part of the analysis).

Some lifters read every k-th frame of the clip before the embedding (``x = x[:, ::4]``,
``x[:, s::k]``): the clip has F frames, the tokens F/k. Each token is still one frame of the
clip (frame s + k·i), so the tokens are the frames HoT prunes: the analysis then labels axes by
the token count T = len(range(s, F, k)) instead of F (F, the clip's length, stays the input's
guard), the cut keeps f of the T tokens, and the recovery gives all T back, so the output keeps
its frames whatever the model makes of them. A strided slice after some blocks have seen the
full clip is not this: those blocks come first, and the slice is a later stage.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch.fx as fx


@dataclass(frozen=True)
class Subsample:
    """``node`` keeps every ``step``-th of the clip's ``frames`` frames from ``start``: ``tokens`` of them."""

    node: str
    start: int
    step: int
    frames: int
    tokens: int

    def describe(self) -> str:
        return (f"`{self.node}` keeps one in {self.step} of the {self.frames} input frames, from frame "
                f"{self.start}: its {self.tokens} tokens are the frames HoT prunes (F = {self.tokens}; f counts "
                f"kept tokens among them, the recovery gives all {self.tokens} back)")


def find_subsample(graph: fx.Graph, facts: dict, block_nodes: set[str], frames: int) -> Subsample | None:
    """The strided slice of the clip's frame axis the blocks' tokens come from, if no block sees
    the full clip (``facts`` labelled with F frames)."""
    for n in graph.nodes:
        if n.name in block_nodes and any(_live(facts.get(a.name)) for a in n.all_input_nodes):
            return None  # a block sees all F frames: a later slice is a stage, not a subsample
    for n in graph.nodes:
        if n.op != "call_function" or n.target is not operator.getitem or not isinstance(n.args[0], fx.Node):
            continue
        src, out = facts.get(n.args[0].name), facts.get(n.name)
        if not _live(src) or out is None or out.kind != "tensor":
            continue
        found = _strided(n.args[1], src, out, frames)
        if found is not None:
            start, step, tokens = found
            return Subsample(n.name, start, step, frames, tokens)
    return None


def _live(f: Any) -> bool:
    return f is not None and f.carries_frames and f.data_dependent


def _strided(index: Any, src: Any, out: Any, frames: int) -> tuple[int, int, int] | None:
    """``(start, step, tokens)`` if ``index`` slices ``src``'s plain frame axis with a step > 1."""
    entries = list(index) if isinstance(index, tuple) else [index]
    if any(e is None for e in entries) or entries.count(Ellipsis) > 1:
        return None
    if Ellipsis in entries:
        i = entries.index(Ellipsis)
        entries[i:i + 1] = [slice(None)] * (len(src.shape) - len(entries) + 1)
    dropped = 0
    for axis, e in enumerate(entries):
        if isinstance(e, int):
            dropped += 1
            continue
        if not isinstance(e, slice) or src.axes[axis] != ("F",):
            continue
        if not all(v is None or type(v) is int for v in (e.start, e.stop, e.step)) or (e.step or 1) <= 1:
            return None
        start, stop, step = e.indices(frames)
        tokens = len(range(start, stop, step))
        return (start, step, tokens) if out.shape[axis - dropped] == tokens and tokens > 1 else None
    return None
