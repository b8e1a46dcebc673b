"""Axis layouts of frame-carrying tensors and their canonical (B, F, ..., C) view.

An axis is a tuple of *atoms* in memory order: ``"B"`` (batch), ``"F"`` (frames),
``"J"`` (joints), an :class:`Extra` (a batch-like factor, e.g. the H hypotheses of a diffusion
denoiser) or an int (a fixed size). ``(B·J, F, C)`` is ``(("B", "J"), ("F",), (512,))``.
The canonical view puts the batch first (merged with the batch-like factors: one row per sample
and hypothesis) and the frames second, the other atoms after them in their original order, so
pruning and recovery modules only ever see (B, F, *rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Atom = str | int
Axis = tuple[Atom, ...]


class Extra(int):
    """A batch-like factor of a layout (an int size): merged into the canonical batch."""

    def __repr__(self) -> str:
        return f"H{int(self)}"

    __str__ = __repr__

    def __reduce__(self):
        return (Extra, (int(self),))


def atom_to_plain(atom: Atom) -> str | int:
    """An atom as plain data (files): a batch-like factor as ``"H5"``."""
    return f"H{int(atom)}" if isinstance(atom, Extra) else atom


def atom_from_plain(value: str | int) -> Atom:
    """Inverse of :func:`atom_to_plain`."""
    if isinstance(value, str) and value[:1] == "H" and value[1:].isdigit():
        return Extra(int(value[1:]))
    return value


@dataclass(frozen=True)
class Layout:
    """How a tensor's axes factor into batch, frame, joint and fixed-size atoms."""

    axes: tuple[Axis, ...]
    joints: int | None = None

    def __post_init__(self) -> None:  # permutations computed once, not on every forward
        order = self._canonical_order()
        inverse = [0] * len(order)
        for position, atom in enumerate(order):
            inverse[atom] = position
        object.__setattr__(self, "_order", tuple(order))
        object.__setattr__(self, "_inverse", tuple(inverse))

    @property
    def atoms(self) -> list[Atom]:
        return [a for axis in self.axes for a in axis]

    @property
    def frame_axis(self) -> int:
        """Index of the axis that holds the frame atom."""
        for i, axis in enumerate(self.axes):
            if "F" in axis:
                return i
        raise ValueError(f"layout {self} has no frame axis")

    @property
    def order(self) -> tuple[int, ...]:
        """The permutation of :attr:`atoms` into canonical order (batch, frames, rest)."""
        return self._order

    def atom_size(self, atom: Atom, frames: int) -> int:
        """Size of ``atom`` with ``frames`` frames (-1 for the batch)."""
        if atom == "B":
            return -1
        if atom == "F":
            return frames
        if atom == "J":
            assert self.joints is not None
            return self.joints
        return int(atom)

    @property
    def batch_atoms(self) -> int:
        """How many atoms the canonical batch merges: the batch and the batch-like factors."""
        return sum(1 for a in self.atoms if a == "B" or isinstance(a, Extra))

    def _canonical_order(self) -> list[int]:
        atoms = self.atoms
        order = [i for i, a in enumerate(atoms) if a == "B"]
        order += [i for i, a in enumerate(atoms) if isinstance(a, Extra)]
        order.append(atoms.index("F"))
        order += [i for i in range(len(atoms)) if i not in order]
        return order

    def to_canonical(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """View ``x`` (this layout, ``frames`` frames) as (B, F, *rest); B is 1 if absent
        (and B·H·... with batch-like factors)."""
        sizes = [self.atom_size(a, frames) for a in self.atoms]
        x = x.reshape(sizes).permute(self._order)
        merged = self.batch_atoms
        return x.flatten(0, merged - 1) if merged > 1 else x if merged else x.unsqueeze(0)

    def from_canonical(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Inverse of :meth:`to_canonical` for a canonical tensor with ``frames`` frames."""
        merged = self.batch_atoms
        if not merged:
            x = x.squeeze(0)
        elif merged > 1:
            extras = [int(self.atoms[i]) for i in self._order[:merged] if isinstance(self.atoms[i], Extra)]
            x = x.unflatten(0, (-1, *extras) if "B" in self.atoms else tuple(extras))
        x = x.permute(self._inverse)
        shape = []
        atom_iter = iter(range(len(self.atoms)))
        for axis in self.axes:
            size = 1
            for _ in axis:
                size *= x.shape[next(atom_iter)]
            shape.append(size)
        return x.reshape(shape)

    def describe(self) -> str:
        def axis_name(axis: Axis) -> str:
            return "·".join(str(a) for a in axis)

        return "(" + ", ".join(axis_name(a) for a in self.axes) + ")"


def gather_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick frames ``index`` (B, k) from a canonical (B, F, ...) tensor, per sample."""
    batch = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    return x[batch, index]
