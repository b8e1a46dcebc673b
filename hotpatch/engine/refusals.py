"""Readable refusals: block names as ranges, what mixes frames outside the blocks, and raw
torch errors said in words, so that every refusal stays one line of a few hundred characters.

Every ``HotpatchError`` that refuses a model is at most :data:`LIMIT` characters, the whole
message. A message with lists in it is built by :func:`refusal` from fixed text and
:class:`Listing` s: the lists give way (whole items dropped, "and N more") so that what was
found, the reason and the fix stay whole. ``prepare`` and ``Prepared.patch`` pass every error
through :func:`capped`, which shortens any other message that is too long with :func:`cap`
(its first sentence and its last, the fix, kept).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from hotpatch.errors import HotpatchError

if TYPE_CHECKING:  # analyse, opaque and patch use this module: no import of them here
    from hotpatch.engine.analyse import Plan

LIMIT = 600  # characters a refusal may take, the whole message
NOTE_LIMIT = 280  # a plan note that a refusal may quote
#: ``BlockInfo.why`` of blocks that a plan note explains (they need not be listed again).
SIZED_BY_FRAMES = "not temporal for HoT: a layer inside is sized by the frame count"
ON_COEFFICIENTS = "not temporal for HoT: works on what an opaque call made of all frames"
ELLIPSIS = "…"
_RESAMPLERS = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample)
_RESAMPLING_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.interpolate,
    F.avg_pool1d, F.avg_pool2d, F.max_pool1d, F.max_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
}


def block_ranges(names: Sequence[str]) -> str:
    """``encoder.layers.0``..``3`` and ``decoder.layers.0`` as ``encoder.layers.0–3, decoder.layers.0``:
    runs of consecutive indices under one parent are joined."""
    return ", ".join(range_items(names))


def range_items(names: Sequence[str]) -> list[str]:
    """The parts of :func:`block_ranges`, one per run (for a :class:`Listing`)."""
    runs: list[list] = []  # [parent, first, last] or [name]
    for name in names:
        parent, _, last = name.rpartition(".")
        if last.isdigit() and runs and len(runs[-1]) == 3 and runs[-1][0] == parent and runs[-1][2] + 1 == int(last):
            runs[-1][2] = int(last)
        elif last.isdigit():
            runs.append([parent, int(last), int(last)])
        else:
            runs.append([name])
    parts = []
    for run in runs:
        if len(run) == 1:
            parts.append(run[0])
        else:
            prefix = f"{run[0]}." if run[0] else ""
            parts.append(f"{prefix}{run[1]}" + (f"–{run[2]}" if run[2] > run[1] else ""))
    return parts


def blocks_by_kind(plan: Plan) -> str:
    """The plan's blocks grouped by kind: ``encoder.layers.0–3 (spatial), decoder.layers.0–3 (static)``."""
    return ", ".join(block_groups(plan))


def block_groups(plan: Plan) -> list[str]:
    """The parts of :func:`blocks_by_kind`, one per run of blocks of one kind (for a :class:`Listing`)."""
    return [f"{block_ranges(names)} ({kind})" for kind, names in kind_runs(plan)]


def kind_runs(plan: Plan, skip_why: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """The plan's blocks as runs of one kind, in order: ``[("spatial", ["encoder.layers.0", ...]), ...]``
    (without the blocks whose ``why`` is in ``skip_why``)."""
    groups: list[tuple[str, list[str]]] = []
    for b in plan.blocks:
        if b.why in skip_why:
            continue
        if groups and groups[-1][0] == b.kind:
            groups[-1][1].append(b.name)
        else:
            groups.append((b.kind, [b.name]))
    return groups


def listed_blocks(runs: Sequence[tuple[str, Sequence[str]]]) -> list[str | Listing]:
    """``runs`` as parts of a :func:`refusal`: each run's names a :class:`Listing` followed by its kind,
    ``a.0–3, b.0 (spatial), c.0–1 (static)``; a long run shortens to ``a.0–3, and 4 more (spatial)``."""
    parts: list[str | Listing] = []
    for i, (kind, names) in enumerate(runs):
        parts += [", " if i else "", Listing(range_items(names)), f" ({kind})"]
    return parts


def frame_resamplers(gm: fx.GraphModule, plan: Plan) -> list[str]:
    """Layers outside the blocks that change the length of a frame axis (strided or
    up/down-sampling convolutions, pooling, interpolation), each as ``name (Type, 27 → 9 frames)``."""
    blocks = {b.node for b in plan.blocks}
    found = []
    for n in gm.graph.nodes:
        if n.name in blocks or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        if n.op == "call_module":
            module = gm.get_submodule(n.target)
            if not isinstance(module, _RESAMPLERS):
                continue
            what = f"`{n.target}` ({type(module).__name__}"
        elif n.op == "call_function" and n.target in _RESAMPLING_FUNCTIONS:
            what = f"{n.target.__name__}(...) ("
        else:
            continue
        src, out = plan.facts.get(n.args[0].name), plan.facts.get(n.name)
        if src is None or out is None or src.kind != "tensor" or out.kind != "tensor" or len(src.shape) != len(out.shape):
            continue
        for ax in range(2, len(src.shape)):  # the length axes of (B, C, L...) layers
            frames_here = ax in src.frame_axes or ax in out.frame_axes or ax in src.reduced or ax in out.reduced
            if frames_here and src.shape[ax] != out.shape[ax]:
                found.append(f"{what}, {src.shape[ax]} → {out.shape[ax]} frames)")
                break
    return found


_TORCH_ERRORS = (
    (re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)"),
     lambda m: f"a linear layer expects {m[3]} input features but got {m[2]}"),
    (re.compile(r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)"),
     lambda m: f"two tensors combined element-wise disagree on axis {m[3]} ({m[1]} against {m[2]})"),
    (re.compile(r"shape '(\[[^\]]*\])' is invalid for input of size (\d+)"),
     lambda m: f"a reshape to {m[1]} does not fit a tensor of {m[2]} elements"),
    (re.compile(r"expected input\[([^\]]*)\] to have (\d+) channels, but got (\d+) channels"),
     lambda m: f"a convolution expects {m[2]} channels but got {m[3]} (input [{m[1]}])"),
    (re.compile(r"running_mean should contain (\d+) elements not (\d+)"),
     lambda m: f"a batch norm has {m[2]} features but got {m[1]}"),
)


def in_words(exc: BaseException) -> str:
    """A torch error as a short sentence (known messages are rephrased; others keep their first line)."""
    text = str(exc)
    for pattern, say in _TORCH_ERRORS:
        m = pattern.search(text)
        if m:
            return say(m)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def one_line(text: str, limit: int = LIMIT) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ one cap for the whole message


class Listing(NamedTuple):
    """A list inside a :func:`refusal` that may be shortened: whole items dropped from the end and
    counted ("and 3 more"); an item longer than the room left is cut with an ellipsis."""

    items: Sequence[str]
    sep: str = ", "
    floor: int = 24  # the width it keeps while longer lists give way (then it is shortened too)


def shortened(items: Sequence[str], width: int, sep: str = ", ") -> str:
    """``items`` joined by ``sep`` in at most ``width`` characters (at least the start of the first item)."""
    items = [" ".join(str(i).split()) for i in items]
    full = sep.join(items)
    if len(full) <= width:
        return full
    for keep in range(len(items) - 1, 0, -1):
        text = sep.join(items[:keep]) + f"{sep}and {len(items) - keep} more"
        if len(text) <= width:
            return text
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    room = max(1, width - len(more) - len(ELLIPSIS))
    return items[0][:room].rstrip() + ELLIPSIS + more if items else ""


def refusal(*parts: str | Listing, limit: int = LIMIT) -> str:
    """One line from fixed text and :class:`Listing` s, at most ``limit`` characters: the fixed text
    (what was found, the reason, the fix) stays whole; the lists share the room left (a short
    list keeps its width, the long ones get equal shares). Text that is too long even with every
    list at its shortest is shortened by :func:`cap`."""
    fixed = [re.sub(r"\s+", " ", p) if isinstance(p, str) else None for p in parts]
    lists = [p for p in parts if isinstance(p, Listing)]
    full = [len(p.sep.join(" ".join(str(x).split()) for x in p.items)) for p in lists]
    widths = iter(_share(full, limit - sum(len(p) for p in fixed if p is not None), [p.floor for p in lists]))
    out = "".join(p if p is not None else shortened(part.items, next(widths), part.sep)
                  for p, part in zip(fixed, parts))
    return cap(out, limit)


def _share(widths: list[int], room: int, floors: list[int]) -> list[int]:
    """Widths that add up to at most ``room`` where possible: lists narrower than an equal share keep
    their width, the others share what is left, none below its floor (or its own width)."""
    if sum(widths) <= room:
        return widths
    out = [min(w, f) for w, f in zip(widths, floors)]  # floors first: kept whatever the others need
    left = room - sum(out)
    order = sorted(range(len(widths)), key=lambda i: widths[i] - out[i])
    for k, i in enumerate(order):  # then the room left, in equal shares
        share = max(0, left) // (len(order) - k)
        extra = min(widths[i] - out[i], share)
        out[i] += extra
        left -= extra
    return out


_FIX_START = re.compile(r"(?:(?<=[.;:,]\s)|(?<=\()|^)"  # a clause that starts with what to do
                        r"(?:[Pp]ass |[Cc]hoose |[Uu]se |[Gg]ive |[Ii]f your|[Pp]ut |[Mm]ake |[Dd]rop |[Aa]dd |"
                        r"[Pp]atch |[Ff]ix )")


def cap(text: str, limit: int = LIMIT) -> str:
    """``text`` in at most ``limit`` characters, the whole message. A message of several lines
    (a trace failure: the error, where, the fix) has its longest line shortened first. A line
    keeps its start (what was found) and its fix (from its last "Fix:", else its last
    "pass ..." / "choose ..." / "use ..." clause, else its last sentence, else its last quarter);
    what lies between is cut at a word boundary and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    while len(lines) > 1 and sum(map(len, lines)) + len(lines) - 1 > limit:
        i = max(range(len(lines)), key=lambda j: len(lines[j]))
        over = sum(map(len, lines)) + len(lines) - 1 - limit
        width = max(len(lines[i]) - over, 60)
        if width >= len(lines[i]):
            return _cap_line(" ".join(" ".join(lines).split()), limit)
        lines[i] = _cap_line(lines[i], width)
    return "\n".join(lines) if len(lines) > 1 else _cap_line(lines[0], limit)


def _cap_line(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    fix = line.rfind("Fix:")
    if fix <= 0:
        starts = [m.start() for m in _FIX_START.finditer(line) if m.start() > 0]
        fix = starts[-1] if starts else -1
    if fix <= 0:
        ends = [m.end() for m in re.finditer(r"[.;!?]\s+(?=\S)", line)]
        fix = ends[-1] if ends else len(line)
    if fix >= len(line) - 1:  # no fix or last sentence to keep: the last quarter, from a word
        fix = line.find(" ", len(line) - limit // 4) + 1 or len(line)
    head, tail = line[:fix].rstrip(), line[fix:].strip()
    room = (limit * 2) // 3
    if len(tail) > room:
        tail = tail[: room - len(ELLIPSIS)].rsplit(" ", 1)[0] + ELLIPSIS
    head_room = limit - len(tail) - len(ELLIPSIS) - 1
    if len(head) > head_room:
        head = head[:head_room].rsplit(" ", 1)[0].rstrip(" ,;:(") + ELLIPSIS
    return f"{head} {tail}"[:limit] if tail else head[:limit]


@contextlib.contextmanager
def capped(limit: int = LIMIT) -> Iterator[None]:
    """Re-raise any ``HotpatchError`` of the block with its whole message at most ``limit`` characters."""
    try:
        yield
    except HotpatchError as exc:
        text = str(exc)
        if len(text) > limit and len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (cap(text, limit),)
        raise
