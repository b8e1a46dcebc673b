"""The inputs a model is traced, analysed and patched with: one clip, or several tensors.

Most VPTs take one pose tensor (B, F, J, C). Diffusion denoisers take several
(``forward(x_2d, y_noisy, t)``), masked-sequence models ``forward(x, mask)``. An
:class:`Inputs` holds one example value (batch 1) per ``forward`` parameter that is traced as
an input, in ``forward``'s order; the parameters not given keep their defaults (they are fixed
while tracing, as today's flags are). The *clip* is the first input of rank 3 or more: its
axis 1 is the frame count F. Every input has the batch on axis 0; the analysis finds which
others carry frames (a noisy pose, a mask), and those without (a timestep (B,), a camera
(B, 9)) pass through the patch untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.errors import InputShapeError

__all__ = ["InputInfo", "Inputs", "as_inputs", "bind_inputs", "call_with", "clip_name", "clip_of", "forward_parameters",
           "positional", "repeat_batch"]


def forward_parameters(model: nn.Module) -> list[inspect.Parameter]:
    """``model.forward``'s named parameters (``*args`` / ``**kwargs`` left out)."""
    return [
        p for p in inspect.signature(model.forward).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def clip_name(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The input whose axis 1 is the frame count: the first of rank 3 or more (else the first)."""
    return next((name for name, s in shapes.items() if len(s) >= 3), next(iter(shapes)))


@dataclass(frozen=True)
class InputInfo:
    """One traced input as the analysis saw it: its name, shape at batch 1, dtype and the axis
    that carries frames (None: it passes through the patch untouched)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    frame_axis: int | None

    def record(self) -> dict[str, Any]:
        """Plain data (``hotpatch_config["inputs"]``, saved files)."""
        return {"name": self.name, "shape": list(self.shape[1:]), "dtype": str(self.dtype).removeprefix("torch."),
                "frame_axis": self.frame_axis}


class Inputs:
    """Example values (batch 1) of a model's traced inputs, by ``forward`` parameter name."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values: dict[str, Any] = dict(values)
        self.clip_name = clip_name({k: tuple(v.shape) for k, v in self.values.items()})

    @property
    def clip(self) -> torch.Tensor:
        return self.values[self.clip_name]

    @property
    def frames(self) -> int:
        return self.clip.shape[1]

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def map(self, fn: Callable[[Any], Any]) -> Inputs:
        """The same inputs with ``fn`` applied to each value (fake tensors, a larger batch ...)."""
        return Inputs({k: fn(v) for k, v in self.values.items()})

    def twice(self) -> Inputs:
        """Each input concatenated with itself along the batch: two identical samples."""
        return self.map(lambda v: torch.cat([v, v]))

    def with_clip(self, clip: torch.Tensor) -> Inputs:
        """These inputs with another clip (same shape)."""
        return Inputs({**self.values, self.clip_name: clip})

    def args(self, graph: fx.Graph) -> list[Any]:
        """Positional values for every placeholder of a traced ``graph``: the example's value for
        an input, the default for a parameter fixed while tracing."""
        out = []
        for n in graph.nodes:
            if n.op != "placeholder":
                continue
            if n.target in self.values:
                out.append(self.values[n.target])
            elif n.args:
                out.append(n.args[0])
            else:
                raise InputShapeError(f"the traced graph needs an input {n.target!r} that the example does not give")
        return out


def as_inputs(graph: fx.Graph, example: torch.Tensor | Inputs) -> Inputs:
    """``example`` as :class:`Inputs`: one tensor is the traced ``graph``'s first input."""
    if isinstance(example, Inputs):
        return example
    first = next(n for n in graph.nodes if n.op == "placeholder")
    return Inputs({first.target: example})


def positional(model: nn.Module, example: Any) -> tuple[tuple, dict[str, Any]]:
    """``example`` (one tensor, a tuple of positional inputs or a dict by name) as ``(args,
    kwargs)`` for ``model``: a dict's leading ``forward`` parameters positionally, the rest by name."""
    if isinstance(example, Mapping):
        params = [p.name for p in forward_parameters(model)]
        lead = 0
        while lead < len(params) and params[lead] in example:
            lead += 1
        return tuple(example[p] for p in params[:lead]), {k: v for k, v in example.items() if k not in params[:lead]}
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    return (example,), {}


def call_with(model: nn.Module, example: Any) -> Any:
    """``model`` on ``example``: one tensor, a tuple of positional inputs or a dict of keyword inputs."""
    if isinstance(example, Mapping):
        return model(**example)
    return model(*example) if isinstance(example, (tuple, list)) else model(example)


def repeat_batch(example: Any, batch: int) -> Any:
    """``example`` (a tensor, tuple or dict of tensors) with each tensor's first sample repeated
    ``batch`` times along axis 0."""
    def one(v):
        return v[:1].expand(batch, *v.shape[1:]).clone() if isinstance(v, torch.Tensor) and v.dim() else v
    if isinstance(example, Mapping):
        return {k: one(v) for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return tuple(one(v) for v in example)
    return one(example)


def clip_of(example: Any) -> torch.Tensor | None:
    """The clip of ``example``: the first tensor of rank 3 or more (else the first tensor)."""
    values = list(example.values()) if isinstance(example, Mapping) else list(example) if isinstance(example, (tuple, list)) else [example]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    return next((t for t in tensors if t.dim() >= 3), tensors[0] if tensors else None)


def bind_inputs(model: nn.Module, example: Any) -> Inputs:
    """``example`` (a tensor, a tuple of ``forward``'s positional inputs or a dict of keyword
    inputs) as :class:`Inputs` of batch 1, in ``forward``'s parameter order. Every required
    parameter must be given, and every value must be a tensor with the batch on axis 0."""
    params = forward_parameters(model)
    names = [p.name for p in params]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    where = f"{type(model).__name__}.forward({', '.join(names)})"
    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, (tuple, list)):
        if len(example) > len(names):
            raise InputShapeError(f"example_input has {len(example)} values, but {where} takes at most {len(names)}; "
                                  "pass one value per parameter, in order")
        given = dict(zip(names, example))
    elif isinstance(example, Mapping):
        unknown = [k for k in example if k not in names]
        if unknown:
            raise InputShapeError(f"example_input names {unknown[0]!r}, but {where} has no parameter {unknown[0]!r}; "
                                  "use the names of forward's parameters")
        given = {k: example[k] for k in names if k in example}
    else:
        raise InputShapeError(f"example_input must be a tensor, a tuple or a dict of tensors, got {type(example).__name__}")
    missing = [k for k in required if k not in given]
    if missing:
        raise InputShapeError(f"example_input is missing {missing[0]!r}, a required input of {where}; "
                              "give every input without a default (a tuple in order, or a dict by name)")
    for k, v in given.items():
        if not isinstance(v, torch.Tensor) or v.dim() < 1:
            what = f"a tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise InputShapeError(f"example_input {k} is {what}; each input must be a tensor with the batch on "
                                  f"axis 0 (a timestep as torch.tensor([t]), shape (B,))")
    batch = {v.shape[0] for v in given.values()}
    if len(batch) != 1:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in given.items())
        raise InputShapeError(f"example_input's tensors have different batch sizes on axis 0 ({shapes}); "
                              "give one sample of each (batch 1)")
    return Inputs({k: v[:1].detach().clone() for k, v in given.items()})
