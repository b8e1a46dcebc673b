"""The model ``lift`` and ``lift --stream`` run: TARGET loaded once and made fit for zero-retraining use."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hotpatch.cli._options import hot_settings
from hotpatch.cli._targets import load_target
from hotpatch.cli._weights import check_weights
from hotpatch.errors import InputShapeError

log = logging.getLogger(__name__)

__all__ = ["lift_model"]


def lift_model(args: argparse.Namespace, doing: str = "lifting") -> tuple[Any, Any, str]:
    """(target, model to lift with, recovery policy), built and loaded once: TARGET refused on random weights
    unless ``--random-weights``, patched when HoT settings are given, an untrained TRA swapped for linear
    recovery unless ``--recover tra``. Shared by the offline lift and ``--stream``."""
    import torch

    from hotpatch.untrained import zero_retraining

    torch.manual_seed(args.seed)
    target = load_target(args)
    check_weights(target, args, doing)
    settings = hot_settings(args)
    if target.patched:
        model = target.model
    elif any(settings.get(k) is not None for k in ("n", "f", "keep")):
        for key in ("n", "f"):
            if settings[key] is None:
                log.info("--%s not given: %s=%s, the default of %s", key, key, target.defaults.get(key), target.name)
        model = target.patch(**settings)
    else:
        model = target.model
    frames, joints, _ = target.input_shape()
    if joints != 17:
        raise InputShapeError(f"{target.name} takes J={joints} joints; lifting reads Human3.6M-17 keypoints. "
                              "Build the model for 17 joints.")
    recovery = "as-is" if args.recover == "tra" else "parameter-free"
    model, _ = zero_retraining(model, recovery)  # once, before the inputs; its note goes with each summary
    return target, model, recovery
