"""Pass "masks and tables": masks and position tables that ``forward`` computes from the clip
length, where the per-frame contexts pass cannot gather them as they are.

The rule for every such value is the same: it describes frames by their positions in the clip
(``m[::5] = 0`` marks frames 0, 5, 10, ...; a sine table holds each frame's position), so after a
cut it must be the original value at the kept frames, not the value made again for f frames
(which would describe frames 0..f-1). Two cases need more than the contexts pass's gather:

* **made after the cut from a frame count** (``torch.arange(x.shape[1])``, ``torch.ones(n, n)``
  in the loop over blocks): the counts it reads are set back to the original F (or B·F), so it is
  made for all F frames again, and is then gathered at its users like any per-frame context.
  (Values written into later, ``buf[:, :n] = x``, are data, not tables: they are left alone.)
* **an (F, F) mask** (``attn_mask`` of ``nn.MultiheadAttention``, or any mask over pairs of
  frames) passed to a block after the cut: gathered at the kept frames on both axes. A mask that
  depends only on the order of the two frames (causal, all or none) gives the same f × f mask
  for every sample, because kept frames are sorted in time: it is cut to its first f × f entries.
  Any other (a band ``|i - j| <= w``) differs per sample: it becomes (B·H, f, f) for a block
  whose attention is ``nn.MultiheadAttention`` with H heads (its per-sample mask layout), and is
  refused for other blocks, naming the block and the mask.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_arg

from hotpatch.engine.capture import run_node
from hotpatch.engine.edit import Edit, RewritePass
from hotpatch.engine.specialise import ancestors
from hotpatch.engine.uses import Use
from hotpatch.engine.wrappers import GatherPairs, rescale_count
from hotpatch.errors import RewriteError


class FrameMasks(RewritePass):
    name = "masks and tables"

    def inspect(self, edit: Edit) -> None:
        """Refuse, before any edit, an (F, F) mask that a block after the cut could not take per sample."""
        blocks = {b.node for b in edit.plan.blocks}
        for u in edit.region:
            if u.op == "call_module" and u.name in blocks:
                for a in u.all_input_nodes:
                    if is_pair_mask(edit, a):
                        self.refusal(edit, u, a)

    def claims(self, edit: Edit, use: Use) -> bool:
        u = use.user
        return (use.kind == "constant" and u is not None and u.op == "call_module"
                and u.name in {b.node for b in edit.plan.blocks} and is_pair_mask(edit, use.value))

    def run(self, edit: Edit) -> None:
        self.remake_for_all_frames(edit)
        blocks = {b.node for b in edit.plan.blocks}
        done: dict[tuple[fx.Node, int], fx.Node] = {}
        for u in edit.pruned_nodes():
            if u.op != "call_module" or u.name not in blocks:
                continue
            for a in list(u.all_input_nodes):
                if not is_pair_mask(edit, a):
                    continue
                key = (a, edit.stage(u))
                if key not in done:
                    done[key] = self.gather_pairs(edit, u, a)
                u.replace_input_with(a, done[key])
                edit.consumed.add((u, a))

    def check(self, edit: Edit) -> None:
        blocks = {b.node for b in edit.plan.blocks}
        for u in edit.pruned_nodes():
            if u.op == "call_module" and u.name in blocks:
                left = next((a for a in u.all_input_nodes if is_pair_mask(edit, a)), None)
                if left is not None:
                    raise self.fail(f"block `{u.target}` still reads the (F, F) mask `{left.name}`")

    # ---------------------------------------------------------------- made after the cut
    def remake_for_all_frames(self, edit: Edit) -> None:
        frozen: dict[fx.Node, fx.Node] = {}
        for u in edit.pruned_nodes():
            f = edit.fact(u)
            if f is None or f.kind != "tensor" or f.data_dependent or not f.carries_frames or written(u):
                continue
            if u.target is operator.getitem and u.args[0] not in edit.pruned:
                continue  # a constant sliced to the current length: the sliced-parameters pass's
            counts = [a for a in u.all_input_nodes if a in edit.pruned and is_int(edit, a)]
            if not counts or not all(edit.fact(a).count for a in counts):
                continue  # made from other sizes (a strided stage's length): its own pass's, or made again
            with edit.graph.inserting_before(u):
                u.args = map_arg(u.args, lambda a: self.frozen(edit, a, frozen))
                u.kwargs = map_arg(u.kwargs, lambda a: self.frozen(edit, a, frozen))
            edit.pruned.discard(u)
            edit.note(f"`{u.name}` (shape {f.shape}) is made from the frame count after the cut: it is made "
                      f"for all {edit.cfg.frames} frames, as in the original, and its kept frames are gathered")
        if not frozen:
            return
        for u in edit.pruned_nodes():  # computed only from what was made again: no longer pruned
            if not written(u) and not any(a in edit.pruned for a in u.all_input_nodes):
                edit.pruned.discard(u)

    @staticmethod
    def frozen(edit: Edit, a: fx.Node, memo: dict[fx.Node, fx.Node]) -> fx.Node:
        """``a`` (a frame count read after the cut, F or B·F in the original) rescaled back to it."""
        if a not in edit.pruned or not is_int(edit, a) or not edit.fact(a).count:
            return a
        if a not in memo:
            memo[a] = edit.graph.call_function(rescale_count, (a, edit.frames_at(edit.stage(a)), edit.cfg.frames))
        return memo[a]

    # ---------------------------------------------------------------- (F, F) masks
    def gather_pairs(self, edit: Edit, u: fx.Node, mask: fx.Node) -> fx.Node:
        fact = edit.fact(mask)
        f = edit.frames_at(edit.stage(u))
        block = u.target
        if not batched(edit, mask) and order_only(value_of(edit, mask)):
            with edit.graph.inserting_before(u):
                node = edit.graph.call_function(operator.getitem, (mask, (..., slice(None, f), slice(None, f))))
            edit.note(f"`{mask.name}` (an (F, F) mask, shape {fact.shape}) passed to `{block}` after the cut depends "
                      f"only on the order of two frames: the kept frames' mask is its first {f} x {f} entries")
        else:
            heads = None if batched(edit, mask) else self.refusal(edit, u, mask)
            lead = _lead_factor(fact.axes[0]) if batched(edit, mask) else None
            module = GatherPairs(heads=heads or 1, lead=lead)
            name = edit.add_module("hotpatch_gather_pairs", module)
            with edit.graph.inserting_before(u):
                node = edit.graph.call_module(name, (mask, edit.index_for(u)))
            edit.note(f"`{mask.name}` (a mask over pairs of frames, shape {fact.shape}) passed to `{block}` after the "
                      "cut: its kept frames' rows and columns are gathered per sample")
        edit.new_stage[node] = edit.stage(u)
        return node

    @staticmethod
    def refusal(edit: Edit, u: fx.Node, mask: fx.Node) -> int | None:
        """The heads a per-sample (B·H, f, f) mask is made for (None: the mask has a batch axis or
        is the same for every sample); raises the refusal where the block cannot take one."""
        fact = edit.fact(mask)
        if batched(edit, mask) or order_only(value_of(edit, mask)):
            return None
        module = edit.gm.get_submodule(u.target)
        heads = mha_heads(module)
        if heads is None or len(fact.shape) != 2:
            raise RewriteError(
                f"`{mask.name}` (shape {fact.shape}) is a mask over pairs of frames passed to `{u.target}` after the "
                "cut; gathered at each sample's kept frames it becomes (B, f, f), and hotpatch cannot tell how "
                f"`{u.target}` ({type(module).__name__}) applies a per-sample mask. Fix: choose n so the cut comes "
                "after the last block that reads it, or give the mask a batch axis."
            )
        return heads


def _lead_factor(axis: Any) -> int:
    """Sizes merged with the batch in the mask's first axis (``(B, H)`` of ``mask.repeat(b * h, 1, 1)``)."""
    out = 1
    for atom in axis:
        if atom != "B":
            out *= int(atom)
    return out


def written(u: fx.Node) -> bool:
    """Whether later code writes into ``u`` (``buf[:, :n] = x``, ``buf.copy_(x)``)."""
    return any((w.op == "call_function" and w.target is operator.setitem and w.args[0] is u)
               or (w.op == "call_method" and str(w.target).endswith("_") and w.args[0] is u) for w in u.users)


def is_int(edit: Edit, a: fx.Node) -> bool:
    fa = edit.fact(a)
    return fa is not None and fa.kind == "int"


def batched(edit: Edit, a: fx.Node) -> bool:
    return any(axis is not None and "B" in axis for axis in edit.fact(a).axes)


def is_pair_mask(edit: Edit, a: fx.Node) -> bool:
    """A value-independent tensor made before the cut whose last two axes are both frames."""
    fa = edit.fact(a)
    if (a in edit.indices or a in edit.pruned or a in edit.region or fa is None or fa.kind != "tensor"
            or fa.data_dependent or fa.axes is None or len(fa.axes) < 2):
        return False
    frames = [i for i, axis in enumerate(fa.axes) if axis == ("F",)]
    return frames == [len(fa.axes) - 2, len(fa.axes) - 1] and all(
        axis is not None and all(atom == "B" or type(atom) is int for atom in axis) for axis in fa.axes[:-2])


def order_only(m: torch.Tensor) -> bool:
    """Whether ``m[..., i, j]`` depends only on whether i < j, i == j or i > j."""
    n = m.shape[-1]
    i = torch.arange(n)
    sign = torch.sign(i[None, :] - i[:, None])
    for s in (-1, 0, 1):
        part = m[..., sign == s]
        if part.numel() and not bool((part == part[..., :1]).all()):
            return False
    return True


def mha_heads(block: nn.Module) -> int | None:
    """H if every attention in ``block`` is an ``nn.MultiheadAttention`` with H heads, else None."""
    heads = {m.num_heads for m in block.modules() if isinstance(m, nn.MultiheadAttention)}
    return heads.pop() if len(heads) == 1 else None


def value_of(edit: Edit, node: fx.Node) -> torch.Tensor:
    """The value of a value-independent node for the example input (its ancestors run in graph
    order; they come before the cut)."""
    needed = ancestors(node)
    example = edit.plan.example
    env: dict[fx.Node, Any] = {}
    with torch.no_grad():
        for n in edit.graph.nodes:
            if n not in needed:
                continue
            if n.op == "placeholder":
                env[n] = example.values.get(n.target, n.args[0] if n.args else None) if example is not None else None
            else:
                env[n] = run_node(n, env, edit.gm)
    return env[node]
