"""The general rule for a frame-sized layer without a gathering twin: a per-frame layer runs on
all F frame positions.

A layer whose parameter or buffer has a dim of F and that meets the frame axis (frames are its
channels: ``nn.PReLU(F)``, an ``InstanceNorm1d(F, affine=True)``, a custom per-frame scale) has
no place in a pruned sequence unless its weights can be restricted to the kept frames. Where
the layer keeps frames apart (its output at frame t depends on its input at frame t only, which
:func:`keeps_frames_apart` tests on the analysis' example), that restriction is exact whatever
the layer does: the kept tokens are put back at their frames in an F-long input (the dropped
frames zero), the layer runs as written, and the kept frames of its output are read back
(:class:`ScatterFrames`, forward hooks on the layer, so its class, name and state_dict keys stay).
A frame-sized layer that mixes frames and has no twin is refused by the analysis. A layer sized
by the length of the strided stage it runs in that keeps positions apart reads the stage's first
positions (:class:`PadPositions`), as a stage embedding does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from hotpatch.engine.frame_layers import KeptFrames, replace_module
from hotpatch.layout import Layout, gather_frames


def frame_axis(axes: tuple | None) -> int | None:
    """The axis that holds the frames alone, if there is exactly one and a batch axis elsewhere."""
    if not axes or any(a is None for a in axes) or not any("B" in a for a in axes):
        return None
    found = [i for i, a in enumerate(axes) if "F" in a]
    return found[0] if len(found) == 1 and axes[found[0]] == ("F",) else None


@torch.no_grad()
def keeps_frames_apart(module: nn.Module, x: torch.Tensor, in_axis: int, out_axis: int) -> bool:
    """Whether changing one frame of ``x`` (on ``in_axis``) changes ``module``'s output at that
    frame only (on ``out_axis``). False if the module cannot run on ``x`` alone."""
    frames = x.shape[in_axis]
    t0 = frames // 2
    gen = torch.Generator().manual_seed(0)
    bumped = x.clone()
    frame = bumped.select(in_axis, t0)
    frame.add_(torch.randn(frame.shape, generator=gen).to(x) * (1.0 + x.abs().mean()))
    try:
        y, y2 = module(x), module(bumped)
    except Exception:
        return False
    if not isinstance(y, torch.Tensor) or y.dim() <= out_axis or y.shape[out_axis] != frames:
        return False
    diff = (y - y2).abs().movedim(out_axis, 0).reshape(frames, -1).amax(dim=1)
    others = torch.cat([diff[:t0], diff[t0 + 1:]])
    return bool(others.max() <= 1e-6 * (1.0 + y.abs().max()))


@torch.no_grad()
def runs_shorter(module: nn.Module, x: torch.Tensor, axis: int) -> bool:
    """Whether ``module`` runs on ``x`` with one position fewer on ``axis`` (its size does not
    depend on that axis' length)."""
    try:
        module(x.narrow(axis, 0, x.shape[axis] - 1))
    except Exception:
        return False
    return True


class ScatterFrames:
    """Forward hooks of a per-frame layer inside a block after the cut: before it, the kept tokens
    go back to their frames in an F-long input (the others zero); after it, the kept frames of its
    output are read back. The kept index comes from the stage's :class:`KeptFrames` holder; with
    every frame kept (or before the cut) the layer runs as written."""

    def __init__(self, layout_in: Layout, layout_out: Layout, frames: int, holder: KeptFrames) -> None:
        self.layout_in, self.layout_out, self.frames, self.holder = layout_in, layout_out, frames, holder

    def _index(self, x: Any) -> torch.Tensor | None:
        index = self.holder.index
        if index is None or index.shape[1] == self.frames or not isinstance(x, torch.Tensor):
            return None
        return index

    def before(self, _module: nn.Module, args: tuple) -> tuple | None:
        index = self._index(args[0] if args else None)
        if index is None:
            return None
        kept = self.layout_in.to_canonical(args[0], index.shape[1])  # (B, f, ...)
        full = kept.new_zeros(kept.shape[0], self.frames, *kept.shape[2:])
        where = index.view(*index.shape, *([1] * (kept.dim() - 2))).expand_as(kept)
        full = full.scatter(1, where, kept)
        return (self.layout_in.from_canonical(full, self.frames), *args[1:])

    def after(self, _module: nn.Module, _args: tuple, out: Any) -> Any:
        index = self._index(out)
        if index is None:
            return None
        kept = gather_frames(self.layout_out.to_canonical(out, self.frames), index)
        return self.layout_out.from_canonical(kept, index.shape[1])


class PadPositions:
    """Forward hooks of a layer sized by a strided stage's ``length`` (its positions as channels)
    that keeps positions apart: the stage's fewer tokens are its first positions (as a stage
    embedding reads its first rows), so the input is padded with zeros to ``length`` and the
    output cut back to the tokens' count."""

    def __init__(self, axis_in: int, axis_out: int, length: int) -> None:
        self.axis_in, self.axis_out, self.length = axis_in, axis_out, length
        self.tokens: int | None = None

    def before(self, _module: nn.Module, args: tuple) -> tuple | None:
        x = args[0] if args else None
        self.tokens = x.shape[self.axis_in] if isinstance(x, torch.Tensor) else None
        if self.tokens is None or self.tokens >= self.length:
            return None
        pad = [0, 0] * (x.dim() - 1 - self.axis_in % x.dim()) + [0, self.length - self.tokens]
        return (torch.nn.functional.pad(x, pad), *args[1:])

    def after(self, _module: nn.Module, _args: tuple, out: Any) -> Any:
        if self.tokens is None or self.tokens >= self.length or not isinstance(out, torch.Tensor):
            return None
        return out.narrow(self.axis_out, 0, self.tokens)


def attach(root: nn.Module, qualname: str, hooks: ScatterFrames | PadPositions) -> None:
    """Put the hooks on a private copy of ``root``'s submodule ``qualname`` (parameters shared, the
    modules on its path copied, so the user's model keeps no hook)."""
    old = root.get_submodule(qualname)
    new = copy.copy(old)
    for attr, value in vars(old).items():
        if isinstance(value, dict) and (attr in ("_modules", "_parameters", "_buffers") or attr.startswith("_forward")):
            new.__dict__[attr] = type(value)(value)
    new.__dict__["hotpatch_owned"] = True
    new.register_forward_pre_hook(hooks.before)
    new.register_forward_hook(hooks.after)
    replace_module(root, qualname, new)
