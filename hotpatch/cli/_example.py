"""``--example-input in.pt``: the inputs of a model whose ``forward`` takes more than one clip.

The file is ``torch.save`` of one tensor, a tuple of tensors (``forward``'s positional inputs)
or a dict of them by parameter name, each with the batch on axis 0; it is read with
``torch.load(weights_only=True)``, so it cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hotpatch.engine.analyse import first_line
from hotpatch.errors import TargetError

__all__ = ["read_example"]

_EXPECTED = ("expected a file written by torch.save of a tensor, a tuple of tensors (forward's inputs in order) "
             "or a dict of tensors by parameter name")


def read_example(path: str | Path) -> torch.Tensor | tuple[torch.Tensor, ...] | dict[str, torch.Tensor]:
    """The example inputs stored at ``path`` (checked: tensors only, one batch size)."""
    path = Path(path)
    if not path.is_file():
        raise TargetError(f"--example-input {str(path)!r} does not exist or is not a file; {_EXPECTED}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a bad file
        raise TargetError(f"cannot read --example-input {str(path)!r}: {first_line(err)}; {_EXPECTED}") from err
    if isinstance(obj, list):
        obj = tuple(obj)
    values = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, tuple) else [obj]
    if not values or not all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in values) or (
            isinstance(obj, dict) and not all(isinstance(k, str) for k in obj)):
        found = type(obj).__name__ if not values else ", ".join(type(v).__name__ for v in values)
        raise TargetError(f"--example-input {str(path)!r} holds {found}; {_EXPECTED}, each with the batch on axis 0")
    if len({v.shape[0] for v in values}) != 1:
        shapes = ", ".join(str(tuple(v.shape)) for v in values)
        raise TargetError(f"--example-input {str(path)!r}: the tensors have different batch sizes ({shapes}); "
                          "give every input the same batch (axis 0)")
    return obj
