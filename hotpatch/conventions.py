"""The input convention a lifting model was trained with, carried with the model.

A convention says how 2D keypoints in pixels become the model's input:

* ``normalize``: ``"screen"`` (VideoPose3D: ``x / w * 2 - [1, h / w]``, needs the frame size)
  or ``"box"`` (the clip's 2D bounding box scaled to [-1, 1], MotionBERT in the wild);
* ``scores``: whether the detector's per-joint score is a third input channel;
* ``joints``: the joint order (``"h36m17"``: Human3.6M-17);
* ``extent``: optional (low, high) range of the body's normalised 2D extent seen in training
  (recorded by ``hotpatch train`` / ``finetune``), for a warning when an input lies outside it.

Recipes declare theirs (``[input]`` in each recipe file); ``hotpatch.save`` / ``save_model``
write it into the file (``"input"``) and loading sets it back on the model as
``hotpatch_input``. Files written before it existed load as before: the convention then comes
from the recipe the file names, if any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hotpatch.errors import ConfigError
from hotpatch.recipe import NORMALIZATIONS

__all__ = ["InputConvention", "body_extent", "convention_of", "training_convention"]


@dataclass(frozen=True)
class InputConvention:
    """See the module docstring."""

    normalize: str = "screen"
    scores: bool = False
    joints: str = "h36m17"
    extent: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"input normalize={self.normalize!r} is unknown; use one of {NORMALIZATIONS}")

    @property
    def channels(self) -> int:
        return 3 if self.scores else 2

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"normalize": self.normalize, "scores": self.scores, "joints": self.joints}
        if self.extent is not None:
            d["extent"] = [float(self.extent[0]), float(self.extent[1])]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputConvention:
        extent = d.get("extent")
        return cls(str(d.get("normalize", "screen")), bool(d.get("scores", False)), str(d.get("joints", "h36m17")),
                   (float(extent[0]), float(extent[1])) if extent else None)

    def describe(self) -> str:
        how = ("screen coordinates (x / w * 2 - [1, h / w])" if self.normalize == "screen"
               else "the clip's bounding box scaled to [-1, 1]")
        return f"{how}, {'x, y, score' if self.scores else 'x, y'}, {self.joints} joint order"


def convention_of(model: Any, channels: int | None = None) -> tuple[InputConvention | None, str]:
    """The model's convention and where it came from (``"the model file"``, ``"recipe NAME"``),
    or (None, reason). ``channels``: the model's input channels, checked against the record."""
    from hotpatch.recipe import lookup

    record = getattr(model, "hotpatch_input", None)
    source = getattr(model, "hotpatch_source", None)
    recipe = lookup(source.get("recipe")) if isinstance(source, Mapping) else None
    if isinstance(record, Mapping):
        conv, where = InputConvention.from_dict(record), "the model file"
    elif recipe is not None:
        name = source["recipe"]
        conv, where = InputConvention.from_dict(recipe.convention()), f"recipe {name}"
        if channels is not None:  # a recipe built with --channels: scores follow the channels
            conv = replace(conv, scores=channels == 3)
    else:
        return None, "the model does not record its input convention"
    if channels is not None and channels != conv.channels:
        raise ConfigError(
            f"the model takes {channels} input channels but its input convention ({where}) says "
            f"{conv.channels} ({'x, y, score' if conv.scores else 'x, y'}); rebuild the model for "
            f"{conv.channels} channels or write the file again with the right convention"
        )
    return conv, where


def body_extent(inputs: np.ndarray) -> np.ndarray:
    """(T,) the larger side of each frame's 2D bounding box over the joints, in input units."""
    xy = np.asarray(inputs, dtype=np.float64)[..., :2]
    return (xy.max(axis=-2) - xy.min(axis=-2)).max(axis=-1)


def training_convention(sequences: Any, channels: int) -> InputConvention:
    """The convention of a model trained on ``sequences`` (:class:`~hotpatch.data.PoseSequence` s:
    screen coordinates, scores as the third channel when ``channels`` is 3), with the 1st-99th
    percentile range of their frames' :func:`body_extent` as ``extent``."""
    extents = np.concatenate([body_extent(s.keypoints) for s in sequences]) if sequences else np.zeros(0)
    extent = (float(np.percentile(extents, 1)), float(np.percentile(extents, 99))) if len(extents) else None
    return InputConvention("screen", channels == 3, "h36m17", extent)
