"""Models without trained weights: refused by the commands whose output they would make meaningless.

A recipe or ``module:Class`` TARGET without ``--checkpoint`` is freshly initialised: its lift is
noise and its errors say nothing about the model. ``lift`` and ``eval`` refuse it unless
``--random-weights`` says it is meant (demos, tests); ``patch`` and ``export``, whose files may be
what a user wants to measure, write it with a warning that the file holds random weights.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hotpatch.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["add_random_weights", "check_weights", "warn_random_weights"]


def _random(target: Any, args: argparse.Namespace) -> bool:
    """A recipe or ``module:Class`` built without ``--checkpoint``: freshly initialised weights."""
    return target.kind in ("recipe", "class") and not getattr(args, "checkpoint", None)


def add_random_weights(group: Any) -> None:
    group.add_argument("--random-weights", action="store_true",
                       help="allow a recipe or module:Class without --checkpoint: random weights, for demos and "
                            "tests only (the results mean nothing)")


def check_weights(target: Any, args: argparse.Namespace, doing: str) -> None:
    """Refuse ``target`` on random weights unless ``--random-weights``; say so when allowed."""
    if not _random(target, args):
        return
    if not getattr(args, "random_weights", False):
        raise ConfigError(f"{target.name} has no trained weights (no --checkpoint): {doing} with random weights gives "
                          "meaningless results. Pass --checkpoint FILE (an official or a trained checkpoint), or "
                          "--random-weights if that is what you want (demos, tests)")
    log.warning("%s on random weights (--random-weights): the results mean nothing about the model", doing)


def warn_random_weights(target: Any, args: argparse.Namespace, writing: str) -> bool:
    """Warn that ``target`` has random weights (a recipe or ``module:Class`` without ``--checkpoint``)
    and ``writing`` will hold them; True when it does."""
    if not _random(target, args):
        return False
    log.warning("%s has no trained weights (no --checkpoint): %s holds random weights, fit for measuring speed "
                "and size, not for poses. Pass --checkpoint FILE to patch trained weights", target.name, writing)
    return True
