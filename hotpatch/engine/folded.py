"""Token layouts HoT cannot prune, said in words before the rewrite (issue 27 item 2).

HoT prunes tokens on a frame axis that lives between the blocks, one set of kept frames per
sample. Two layouts defeat that, and each gets a refusal that names it:

* **frames folded into one token axis with other tokens**: between blocks the tokens are
  ``(B, c + F·k, C)`` (``c`` extra tokens, e.g. a class token, before ``k`` tokens per frame; or
  ``(B, F·k, C)``), the frame axis made only inside the blocks (divided space-time attention,
  TimeSformer-style). No tensor alive at the cut has a frame axis: :func:`frames_folded`.
* **the batch folded with copies of each sample**: ``(B·S, F, C)`` where each sample's ``S`` rows
  (residual streams, heads, hypotheses) agree at the cut, so the probes cannot tell the batch
  from the copies (hyper-connection residual streams): :func:`batch_copies`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch.fx as fx

from hotpatch.engine.refusals import Listing, refusal

if TYPE_CHECKING:
    from hotpatch.engine.analyse import NodeFacts

MAX_EXTRA = 8  # extra tokens (class, register, distillation) that may sit before the frames' tokens

Facts = Callable[[Any], "NodeFacts | None"]


def token_split(size: int, frames: int) -> tuple[int, int] | None:
    """``(c, k)`` with ``size = c + frames·k``, ``c <= MAX_EXTRA`` extra tokens and ``k`` tokens per
    frame, where such a split exists and is not the frame axis itself (``size == frames``)."""
    c, k = size % frames, size // frames
    if k < 1 or c > MAX_EXTRA or (c == 0 and k == 1):
        return None
    return c, k


def _op(n: fx.Node) -> str:
    """What node ``n`` runs, for a message: ``rearrange``, ``.view``, ``net.embed``."""
    if n.op == "call_method":
        return f".{n.target}"
    return getattr(n.target, "__name__", str(n.target))


def _folded_axis(f: NodeFacts | None, frames: int) -> tuple[int, int, int] | None:
    """(size, c, k) of the first token axis of ``f`` that folds the frames with other tokens
    (not its last, channel axis; a tensor with a batch axis)."""
    if f is None or f.kind != "tensor" or not f.axes or not any(a and "B" in a for a in f.axes):
        return None
    for axis, size in zip(f.axes[:-1], f.shape[:-1]):
        split = token_split(size, frames) if axis == (size,) else None
        if split is not None:
            return size, *split
    return None


def frames_folded(live: Sequence[fx.Node], fact: Facts, cut: str, frames: int) -> str | None:
    """A refusal for a cut before ``cut`` where no tensor alive has a frame axis but the tensors
    ``live`` (value-dependent, made before the cut and used after it) fold the ``frames`` into one
    token axis with other tokens; ``None`` where none does."""
    folded = [(n, found) for n in live if (found := _folded_axis(fact(n), frames)) is not None]
    if not folded:
        return None
    size, c, k = folded[0][1]
    extra = f"{c} extra token{'s' * (c > 1)} and " if c else ""
    parts = f"{size} = {f'{c} + ' if c else ''}{frames} × {k}: {extra}{k} token{'s' * (k > 1)} per frame"
    merged = _merged_by(folded[0][0], fact, frames, k)
    return refusal(
        f"no tensor alive before `{cut}` (the cut) has an axis of the {frames} frames alone: ",
        Listing([f"`{n.name}` {fact(n).shape}" for n, _ in folded]),
        f" fold{'s' * (len(folded) == 1)} the frames into one token axis with other tokens ({parts}{merged}); "
        "the frame axis exists only inside the blocks, and HoT prunes a frame axis that lives between "
        "them. Fix: give the frames an axis of their own between the blocks, e.g. (B, F, N, C) with any "
        "extra token kept apart, or patch a model whose blocks pass the frames on an axis of their own.",
    )


def _merged_by(n: fx.Node, fact: Facts, frames: int, k: int) -> str:
    """``, merged by `rearrange``` : the first op before ``n`` that made a token axis of ``k`` tokens
    per frame from an input with a frame axis ("" if none is found)."""
    seen, todo, found = set(), [n], []
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += m.all_input_nodes
        f = _folded_axis(fact(m), frames)
        if f is not None and f[2] == k and any((a := fact(i)) is not None and a.carries_frames for i in m.all_input_nodes):
            found.append(m)
    if not found:
        return ""
    first = min(found, key=lambda m: list(m.graph.nodes).index(m))
    return f", merged by `{_op(first)}`"


def batch_copies(n: fx.Node, fact: Facts, what: str, frames: int, joints: int | None) -> str | None:
    """A refusal for tensor ``n`` (``what``: its role) whose axis doubles with the batch but reads
    neither way because each sample's rows agree (copies: residual streams, heads, hypotheses);
    ``None`` where that axis holds frames or joints (all tokens equal: another case)."""
    f = fact(n)
    for axis in f.unordered if f is not None else ():
        copies = f.shape[axis]  # the probes' first batch has one sample: its rows per sample
        if copies % frames == 0 or (joints and copies % joints == 0):
            continue
        return refusal(
            f"{what} `{n.name}` of shape {f.shape}: its axis {axis} ({copies} at batch 1, {2 * copies} at "
            f"batch 2) is the batch folded with {copies} rows per sample (residual streams, heads or "
            f"hypotheses) that agree with one another here, as copies of each sample do{_copied_by(n, axis, fact)}, "
            "so the batch cannot be told apart from them and HoT would prune each row on its own. Fix: keep "
            f"the {copies} rows on an axis of their own, e.g. (B, {copies}, F, C), or patch the model built "
            "with one stream per sample."
        )
    return None


def _copied_by(n: fx.Node, axis: int, fact: Facts) -> str:
    """`` (made by `reduce` from `embed` (1, 27, 32))``: the op that first made the copies."""
    size = fact(n).shape[axis]
    m = n
    while True:
        src = next((i for i in m.all_input_nodes if (a := fact(i)) is not None and a.kind == "tensor"
                    and len(a.shape) > axis and a.shape[axis] == size and axis in a.unordered), None)
        if src is None:
            break
        m = src
    base = next((i for i in m.all_input_nodes if (a := fact(i)) is not None and a.kind == "tensor"), None)
    if m is n or base is None:
        return ""
    return f" (made by `{_op(m)}` from `{base.name}` {fact(base).shape})"
