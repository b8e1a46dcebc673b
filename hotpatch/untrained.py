"""Patched models whose token recovery never learned: found, and swapped for a parameter-free one.

HoT's TRA starts from zero queries, so until it is fine-tuned it maps every frame to the same
pose: zero-retraining use (lifting a video, ``eval``) of a model whose checkpoint holds no TRA
weights would collapse the output. :func:`parameter_free_recovery` gives such a model with linear
interpolation in time in place of each untrained TRA (on a copy), which needs no weights; callers
say that they did it.
"""

from __future__ import annotations

import copy
import logging

import torch.nn as nn

from hotpatch.engine.wrappers import RecoverAt
from hotpatch.errors import ConfigError
from hotpatch.recover import TRA, LinearRecover

log = logging.getLogger(__name__)

__all__ = ["RECOVERY", "RECOVERY_NOTE", "parameter_free_recovery", "untrained_tra", "warn_untrained", "zero_retraining"]

#: ``recovery=`` of :func:`zero_retraining`: swap an untrained TRA for linear recovery, or keep it.
RECOVERY = ("parameter-free", "as-is")
RECOVERY_NOTE = ("the TRA has no trained weights (its checkpoint holds none; its zero queries would give every frame "
                 "the same pose): frames are recovered by linear interpolation instead (parameter-free). Pass "
                 "--recover tra (recovery='as-is') to keep the untrained TRA, or fine-tune it")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def untrained_tra(model: nn.Module) -> list[str]:
    """Names of the recovery sites of ``model`` that hold a TRA whose queries are all zero."""
    return [name for name, m in _unwrap(model).named_modules() if isinstance(m, RecoverAt)
            and isinstance(m.recoverer, TRA) and not bool(m.recoverer.queries.detach().any())]


def warn_untrained(model: nn.Module, what: str) -> bool:
    """Warn that ``what`` (the model, a file written from it) holds an untrained TRA; True if it does."""
    names = untrained_tra(model)
    if names:
        log.warning("%s: the TRA has no trained weights (zero queries: every frame of a window comes out as the same "
                    "pose). Fine-tune it (hotpatch finetune) before using it, or recover frames without weights: "
                    "--recover linear, or hotpatch.untrained.zero_retraining(model)", what)
    return bool(names)


def parameter_free_recovery(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """``model`` with every untrained TRA replaced by :class:`~hotpatch.recover.LinearRecover` of
    the same frame count (a copy; the model itself when there is none to replace), and the
    names of the sites replaced. ``hotpatch_config["recover"]`` of the copy says ``"linear"``."""
    names = untrained_tra(model)
    if not names:
        return model, []
    original = model
    model = copy.deepcopy(model)
    for key, value in vars(_unwrap(original)).items():  # a GraphModule's copy drops its extra attributes
        if key.startswith("hotpatch_") and not hasattr(_unwrap(model), key):
            setattr(_unwrap(model), key, value)
    inner = _unwrap(model)
    for name in names:
        site = inner.get_submodule(name)
        site.recoverer = LinearRecover(site.recoverer.frames)
    config = getattr(inner, "hotpatch_config", None)
    if isinstance(config, dict):
        inner.hotpatch_config = {**config, "recover": "linear", "recover_replaced": "tra (untrained)"}
    return model, names


def zero_retraining(model: nn.Module, recovery: str = "parameter-free") -> tuple[nn.Module, str | None]:
    """The model to use without retraining, and a note when its untrained TRA was swapped for
    linear recovery (``recovery="parameter-free"``) or kept (``"as-is"``, with a warning)."""
    if recovery not in RECOVERY:
        raise ConfigError(f"recovery={recovery!r}; use one of {RECOVERY}")
    names = untrained_tra(model)
    if not names:
        return model, None
    if recovery == "as-is":
        note = ("the TRA has no trained weights (zero queries: every frame comes out as the same pose); kept as asked, "
                "the poses are not meaningful until it is fine-tuned (hotpatch finetune)")
        log.warning("%s", note)
        return model, note
    model, _ = parameter_free_recovery(model)
    log.warning("%s", RECOVERY_NOTE)
    return model, RECOVERY_NOTE
