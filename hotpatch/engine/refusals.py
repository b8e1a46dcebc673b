"""Readable refusals: block names as ranges, what mixes frames outside the blocks, and raw
torch errors said in words, so that every refusal stays one line of a few hundred characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:  # analyse, opaque and patch use this module: no import of them here
    from hotpatch.engine.analyse import Plan

LIMIT = 600  # characters a refusal may take
_RESAMPLERS = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample)
_RESAMPLING_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.interpolate,
    F.avg_pool1d, F.avg_pool2d, F.max_pool1d, F.max_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
}


def block_ranges(names: Sequence[str]) -> str:
    """``encoder.layers.0``..``3`` and ``decoder.layers.0`` as ``encoder.layers.0–3, decoder.layers.0``:
    runs of consecutive indices under one parent are joined."""
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
    return ", ".join(parts)


def blocks_by_kind(plan: Plan) -> str:
    """The plan's blocks grouped by kind: ``encoder.layers.0–3 (spatial), decoder.layers.0–3 (static)``."""
    groups: list[tuple[str, list[str]]] = []
    for b in plan.blocks:
        if groups and groups[-1][0] == b.kind:
            groups[-1][1].append(b.name)
        else:
            groups.append((b.kind, [b.name]))
    return ", ".join(f"{block_ranges(names)} ({kind})" for kind, names in groups)


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
