"""``hotpatch train TARGET --data PATH --epochs E -o base.pt``: train the unpatched model.

The same loop as ``finetune`` (MixSTE's losses, AdamW, progress bar, ``--resume``, DDP under
``torchrun``, per-epoch eval, ``--json`` history), from scratch or from ``--checkpoint``. The
output (``hotpatch.saving.save_model``: weights and how to build the model) is a TARGET for
``eval``, ``finetune``, ``profile``, ``patch``, ``sweep`` and ``lift``.
"""

from __future__ import annotations

import argparse
import logging

import torch

from hotpatch.cli._data import add_data_arguments
from hotpatch.cli._options import consoles, process_rank
from hotpatch.cli.finetune import add_training_arguments, check_training_arguments, train_and_save
from hotpatch.errors import TargetError
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train the unpatched model (from scratch or --checkpoint) and save it as a TARGET file",
        description="Train TARGET as it is (no HoT patch) on the train split of DATA with the fine-tuning loop; "
                    "write a file that eval, finetune, profile, patch, sweep and lift accept as TARGET.")
    add_target_arguments(p)
    add_data_arguments(p)
    add_training_arguments(p, lr=1e-3)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from hotpatch.saving import save_model

    main = process_rank() == 0
    out, err = consoles(args.quiet or not main)
    check_training_arguments(args)
    torch.manual_seed(args.seed)
    target = load_target(args)
    if target.patched:
        raise TargetError(f"{target.name} is patched; train the original model, or fine-tune this one with "
                          "hotpatch finetune")
    if target.source is None:
        raise TargetError(f"{target.name} does not say how it was built (no hotpatch_source), so the trained file "
                          "could not be loaded again; pass a recipe name or package.module:Class")
    if not getattr(args, "checkpoint", None) and target.kind in ("recipe", "class"):
        log.info("training %s from freshly initialised weights", describe(target))
    source = target.source
    return train_and_save(args, target, target.model, "unpatched", out, err, main,
                          lambda model, path: save_model(model, path, source=source))
