"""Modules and functions the rewrite inserts into the patched graph.

Each adapts one tensor's layout to the canonical (B, F, ..., C) view that pruners and
recoverers work on: :class:`PruneAtCut` / :class:`PruneAgain` prune every frame-carrying
tensor alive at a cut with one set of indices, :class:`GatherAt` prunes one more tensor,
:class:`GatherConstant` gathers a frame-indexed constant (a positional embedding),
:class:`GatherPairs` a mask over pairs of frames (an ``attn_mask``), :class:`GatherOwnShape` a
per-frame constant passed to a block (a rotary table) in its own shape,
:class:`RecoverAt` recovers all frames, :class:`CenterSelect` picks the centre frame
(seq2frame). ``check_frames`` guards the input and ``rescale_count`` rescales frame counts at
run time. :func:`make_pruner` / :func:`make_recoverer` build the token modules of a config.
"""

from __future__ import annotations

import logging

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import Plan
from hotpatch.engine.config import PatchConfig
from hotpatch.errors import HotpatchError, RewriteError
from hotpatch.layout import Extra, Layout, gather_frames
from hotpatch.prune import PRUNERS, TPC, Clusters, FramePruner, merge_tokens, pool_tokens
from hotpatch.recover import (
    TRA, UNMERGE_BLENDS, LinearRecover, LinearTRA, NearestRecover, UnmergeRecover, reads_assignment,
)

log = logging.getLogger(__name__)


def rescale_count(value: int, old: int, new: int) -> int:
    """Turn a frame count (F or B·F) measured with ``old`` frames into one with ``new``."""
    return value // old * new


def check_frames(x: torch.Tensor, frames: int | None, axis: int = 1, name: str = "") -> torch.Tensor:
    """Guard at a model input: the patch was built for ``frames`` frames on ``axis`` (None: the
    input has no frame axis, it only has to be a tensor). ``name`` names the input of a model
    with several."""
    which = f"input {name}" if name else "the input"
    if not isinstance(x, torch.Tensor):
        raise HotpatchError(
            f"this model was patched with a tensor as {which}, got {type(x).__name__}; pass a tensor "
            "shaped like the example_input it was patched with."
        )
    if frames is not None and (x.dim() <= axis or x.shape[axis] != frames):
        raise HotpatchError(
            f"this model was patched for clips of F={frames} frames (axis {axis} of {which}), "
            f"got {'input ' + name if name else 'an input'} of shape {tuple(x.shape)}; pad or window the clip to {frames} frames "
            "or patch again with frames= set to the clip length."
        )
    return x


torch.fx.wrap("rescale_count")
torch.fx.wrap("check_frames")


class PruneAtCut(nn.Module):
    """Prunes every frame-carrying tensor alive at the cut with one set of indices.

    The pruner sees the tensors' pooled features concatenated along channels; each tensor
    is gathered (a merging pruner: its token tensors merged) in its own layout. Returns
    ``(*pruned, index)``, or ``(*pruned, assign, index)`` with ``assignment`` set: ``assign``
    (B, F) every frame's cluster among the kept tokens (the index stays last).
    """

    def __init__(self, pruner: FramePruner, layouts: list[Layout], frames: int, assignment: bool = False) -> None:
        super().__init__()
        self.pruner = pruner
        self.layouts = layouts
        self.frames = frames
        self.assignment = assignment

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        canon = [lay.to_canonical(x, self.frames) for lay, x in zip(self.layouts, xs)]
        if not self.assignment:
            index = self.pruner.select(features(canon))
            return (*keep_frames(self.pruner, self.layouts, canon, index), index)
        c = self.pruner.cluster(features(canon))
        return (*keep_frames(self.pruner, self.layouts, canon, c.index, c), c.assign, c.index)

    def extra_repr(self) -> str:
        return (f"frames={self.frames}, layouts=[{', '.join(l.describe() for l in self.layouts)}]"
                + (", assignment=True" if self.assignment else ""))


class PruneAgain(nn.Module):
    """A later pruning stage: selects among the tokens an earlier stage kept.

    Called as ``(*xs, index)`` with ``index`` (B, f_prev) the original frames of ``xs``'s
    tokens; returns ``(*pruned, index')`` with ``index'`` (B, f) the original frames of the
    tokens it keeps (the composed indices). With ``center`` set (seq2frame), the token of
    that original frame is always kept. With ``assignment`` set it is called as
    ``(*xs, assign, index)`` and returns ``(*pruned, assign', index')``: ``assign'`` (B, F) each
    original frame's cluster among this stage's tokens; a merging pruner weights each token by
    the number of original frames it stands for.
    """

    def __init__(self, pruner: FramePruner, layouts: list[Layout], center: int | None = None,
                 assignment: bool = False) -> None:
        super().__init__()
        self.pruner, self.layouts, self.center, self.assignment = pruner, layouts, center, assignment

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *xs, before = args
        if self.assignment:
            *xs, assign = xs
        canon = [lay.to_canonical(x, before.shape[1]) for lay, x in zip(self.layouts, xs)]
        center = None if self.center is None else (before < self.center).sum(dim=1)  # its position
        if not self.assignment:
            local = self.pruner.select(features(canon), center)
            return (*keep_frames(self.pruner, self.layouts, canon, local), before.gather(1, local))
        slots = torch.arange(before.shape[1], device=assign.device)
        sizes = (assign.unsqueeze(-1) == slots).sum(dim=1)  # original frames per token (>= 1)
        c = self.pruner.cluster(features(canon), center, sizes.double().log())
        kept = keep_frames(self.pruner, self.layouts, canon, c.index, c)
        return (*kept, c.assign.gather(1, assign), before.gather(1, c.index))

    def extra_repr(self) -> str:
        return (f"center={self.center}, layouts=[{', '.join(l.describe() for l in self.layouts)}]"
                + (", assignment=True" if self.assignment else ""))


def is_token(c: torch.Tensor) -> bool:
    """A canonical (B, F, ..., C) tensor of float features; a (B, F) mask or index is not one."""
    return c.dim() >= 3 and c.is_floating_point()


def features(canon: list[torch.Tensor]) -> torch.Tensor:
    """The pruner's input: every token tensor's pooled per-frame features, side by side (masks
    and other per-frame values alive at the cut are pruned with them but do not choose)."""
    tokens = [c for c in canon if is_token(c)] or [c if c.dim() >= 3 else c.unsqueeze(-1) for c in canon]
    return torch.cat([pool_tokens(c).float() for c in tokens], dim=-1)


def keep_frames(pruner: FramePruner, layouts: list[Layout], canon: list[torch.Tensor], index: torch.Tensor,
                clusters: Clusters | None = None) -> list[torch.Tensor]:
    """Each canonical tensor's frames ``index`` (plus TPC's optional embedding), in its own layout.
    A merging pruner's token tensors become their clusters' means instead (masks and other
    per-frame values are still gathered at the centres)."""
    outs = []
    for lay, c in zip(layouts, canon):
        if pruner.merges and clusters is not None and is_token(c):
            kept = merge_tokens(c, clusters.assign, clusters.log_weight, index.shape[1])
        else:
            kept = gather_frames(c, index)
        if isinstance(pruner, TPC) and is_token(c):
            kept = pruner.add_pos_embed(kept)
        outs.append(lay.from_canonical(kept, index.shape[1]))
    return outs


class GatherAt(nn.Module):
    """Prunes one more tensor (in its layout) with indices chosen at the cut."""

    def __init__(self, layout: Layout, frames: int) -> None:
        super().__init__()
        self.layout, self.frames = layout, frames

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        kept = gather_frames(self.layout.to_canonical(x, self.frames), index)
        return self.layout.from_canonical(kept, index.shape[1])


class GatherConstant(nn.Module):
    """Gathers a frame-indexed constant (e.g. a (1, F, C) positional embedding) used next
    to a pruned tensor, so that it broadcasts against that tensor's layout."""

    def __init__(self, const_shape: tuple[int, ...], partner: Layout, frames: int) -> None:
        super().__init__()
        self.partner, self.frames = partner, frames
        ndim = len(partner.axes)
        if len(const_shape) > ndim:
            raise RewriteError(f"constant of shape {const_shape} has more axes than {partner.describe()}")
        padded = (1,) * (ndim - len(const_shape)) + tuple(const_shape)
        sizes: list[int] = []
        self.expand_atoms: list[int] = []  # atom positions to expand to full size
        for axis, size in zip(partner.axes, padded):
            full = [partner.atom_size(a, frames) for a in axis]
            if size == 1:
                sizes += [1] * len(axis)
                if "B" in axis:
                    self.expand_atoms += [len(sizes) - len(axis) + i for i, a in enumerate(axis)
                                          if a != "B" and not isinstance(a, Extra)]
            elif "B" not in axis and size == prod(full):
                sizes += full
            else:
                raise RewriteError(
                    f"a frame-indexed constant of shape {tuple(const_shape)} is combined with a "
                    f"tensor of layout {partner.describe()} after the cut; hotpatch cannot gather it "
                    "per sample. Choose n so that the cut comes after this use."
                )
        self.atom_sizes = sizes

    def forward(self, const: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        lay = self.partner
        c = const.reshape(self.atom_sizes)
        order = lay.order
        c = c.permute(order)
        merged = lay.batch_atoms  # the batch and batch-like factors: one canonical axis
        if merged > 1:
            c = c.flatten(0, merged - 1)
        c = c.expand(index.shape[0], *c.shape[1:])
        kept = gather_frames(c, index)
        full = [lay.atom_size(a, index.shape[1]) for a in lay.atoms]
        shift = max(merged - 1, 0)
        canon_pos = {atom_i: j - shift for j, atom_i in enumerate(order) if j >= merged}
        shape = list(kept.shape)
        for atom_i in self.expand_atoms:
            shape[canon_pos[atom_i]] = full[atom_i]
        return lay.from_canonical(kept.expand(shape), index.shape[1])


class GatherOwnShape(nn.Module):
    """Gathers a batch-free per-frame constant at each sample's kept frames in its own shape, with
    the batch of the block input it goes with first: (1, F, ...) -> (B, f, ...), or (B·J, f, ...)
    next to (B·J, F, C) tokens (each row gets its sample's frames), or in the ``rows`` of the
    tensor the block combines it with. For rotary tables and positions passed to a block."""

    def __init__(self, frame_axis: int, leading_one: bool, partner: Layout | None, rows: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.frame_axis, self.leading_one = frame_axis, leading_one
        if partner is None:  # the rows read where the block uses it (engine/context_use.py): -1 the batch
            self.rows = tuple(rows)
            return
        first = partner.axes[0]
        if "F" in first:
            raise RewriteError(f"a per-frame constant passed next to tokens of layout {partner.describe()} (frames "
                               "merged with the batch) cannot be gathered per sample")
        atoms = tuple(first) if "B" in first else ("B",)  # the atoms of the partner's batch axis
        self.rows = tuple(-1 if a == "B" else partner.atom_size(a, 0) for a in atoms)

    def forward(self, const: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        c = const if self.leading_one else const.unsqueeze(0)
        axis = self.frame_axis + (0 if self.leading_one else 1)
        c = c.expand(index.shape[0], *c.shape[1:]).movedim(axis, 1)
        kept = gather_frames(c, index).movedim(1, axis)  # (B, ...)
        if len(self.rows) == 1:
            return kept
        b = self.rows.index(-1)
        sizes = [index.shape[0] if a == -1 else a for a in self.rows]
        kept = kept.reshape(*[1] * b, kept.shape[0], *[1] * (len(sizes) - b - 1), *kept.shape[1:])
        return kept.expand(*sizes, *kept.shape[len(sizes):]).flatten(0, len(sizes) - 1)

    def extra_repr(self) -> str:
        return f"frame_axis={self.frame_axis}, rows={self.rows}"


class GatherPairs(nn.Module):
    """Gathers a mask over pairs of frames at each sample's kept frames, rows and columns.

    An (F, F) mask becomes (B·heads, f, f), each sample's mask repeated for its heads (the layout
    of ``nn.MultiheadAttention``'s 3-D ``attn_mask``); a mask with a batch axis, (B·lead, F, F)
    (``lead`` sizes merged after the batch, such as heads), becomes (B·lead, f, f).
    """

    def __init__(self, heads: int = 1, lead: int | None = None) -> None:
        super().__init__()
        self.heads, self.lead = heads, lead

    def forward(self, mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        b, f = index.shape
        rows, cols = index[:, None, :, None], index[:, None, None, :]
        if self.lead is None:
            kept = mask[rows[:, 0], cols[:, 0]]  # (B, f, f)
            return kept.repeat_interleave(self.heads, dim=0) if self.heads > 1 else kept
        m = mask.reshape(b, self.lead, *mask.shape[-2:])
        batch = torch.arange(b, device=mask.device)[:, None, None, None]
        lead = torch.arange(self.lead, device=mask.device)[None, :, None, None]
        return m[batch, lead, rows, cols].reshape(b * self.lead, f, f)

    def extra_repr(self) -> str:
        return f"heads={self.heads}" if self.lead is None else f"lead={self.lead}"


class RecoverAt(nn.Module):
    """Recovers one tensor (in its layout) from ``f`` kept frames to ``frames`` frames."""

    def __init__(self, recoverer: nn.Module, layout: Layout, frames: int) -> None:
        super().__init__()
        self.recoverer, self.layout, self.frames = recoverer, layout, frames

    def forward(self, x: torch.Tensor, index: torch.Tensor, assign: torch.Tensor | None = None) -> torch.Tensor:
        canon = self.layout.to_canonical(x, index.shape[1])
        out = self.recoverer(canon, index) if assign is None else self.recoverer(canon, index, assign)
        return self.layout.from_canonical(out, self.frames)


class CenterSelect(nn.Module):
    """seq2frame output: the prediction of the centre frame, kept by the pruner."""

    def __init__(self, layout: Layout, center: int) -> None:
        super().__init__()
        self.layout, self.center = layout, center

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        canon = self.layout.to_canonical(x, index.shape[1])
        position = (index < self.center).sum(dim=1, keepdim=True)
        return self.layout.from_canonical(gather_frames(canon, position), 1)


def prod(xs: list[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out



def find_heads(gm: fx.GraphModule, plan: Plan, dim: int) -> int:
    """Number of attention heads of the host's last temporal block (for TRA)."""
    for b in reversed(plan.temporal_blocks):
        for m in gm.get_submodule(b.name).modules():
            for attr in ("num_heads", "heads", "n_head", "nhead", "n_heads", "h"):
                h = getattr(m, attr, None)
                if isinstance(h, int) and not isinstance(h, bool) and h > 0 and dim % h == 0:
                    return h
    heads = next((h for h in (8, 4, 2) if dim % h == 0), 1)
    log.warning("could not read the host's number of heads; TRA uses %d", heads)
    return heads


def make_recoverer(cfg: PatchConfig, dim: int, heads: int) -> nn.Module:
    out_frames = cfg.recover_frames or cfg.frames
    if cfg.recover == "tra":
        return TRA(dim, out_frames, heads)
    if cfg.recover == "nearest":
        return NearestRecover(cfg.frames)
    if cfg.recover == "linear":
        return LinearRecover(cfg.frames)
    if cfg.recover == "linear-tra":
        return LinearTRA(dim, cfg.frames, heads)
    if cfg.recover in UNMERGE_BLENDS:
        return UnmergeRecover(cfg.frames, UNMERGE_BLENDS[cfg.recover])
    raise RewriteError(f"unknown recover={cfg.recover!r}")


def make_pruner(cfg: PatchConfig, pos_embed_dim: int | None, keep: int | None = None, first: bool = True) -> FramePruner:
    """The pruner of one stage (``keep`` frames; the first stage's f by default). Later stages
    get no fixed centre: :class:`PruneAgain` passes each sample's centre position."""
    keep = cfg.keeps[0] if keep is None else keep
    center = cfg.center if first else None
    cls = PRUNERS[cfg.prune]
    if issubclass(cls, TPC):
        return cls(keep, k=cfg.k, center=center, pos_embed_dim=pos_embed_dim)
    return cls(keep, center=center)


def needs_assignment(cfg: PatchConfig) -> bool:
    """Whether the pruners must hand every frame's cluster on: a merging pruner, or a recovery
    that reads it (``recover="unmerge"``), in a seq2seq patch."""
    return PRUNERS[cfg.prune].merges or (cfg.pipeline != "seq2frame" and reads_assignment(cfg.recover))

