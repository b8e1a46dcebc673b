"""``hotpatch finetune TARGET --data PATH --n N --f F --epochs E -o OUT.pt``: train a patched model.

Starts from TARGET's weights (``--checkpoint``), patches it (or continues a patched TARGET
written by ``hotpatch.save``), trains on the train split with MixSTE's losses and writes the
result with ``hotpatch.save``. A training checkpoint is rewritten after every epoch
(``--state``, default ``OUT.state.pt``); ``--resume`` continues from it. Under ``torchrun``
the same command trains with DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from hotpatch.atomic import write_text
from hotpatch.cli._data import add_data_arguments, load_splits
from hotpatch.cli.eval import json_safe
from hotpatch.cli._options import (add_hot_arguments, check_outputs, consoles, describe_config, hot_settings,
                                   nonnegative_float, nonnegative_int, positive_float, positive_int, process_rank,
                                   stage_value)
from hotpatch.cli._progress import Progress
from hotpatch.errors import ConfigError, InputShapeError
from hotpatch.cli._targets import add_target_arguments, describe, load_target

log = logging.getLogger(__name__)

#: ``--recover`` default of ``finetune``: starts as linear recovery (the pretrained model's own
#: accuracy) and learns a correction. After the same 300-step fine-tune of a small MixSTE
#: (benchmarks/results/accuracy.md, rows 12-14) it measured 38.9 mm, linear 38.9 mm and TRA
#: 58.7 mm (TRA's zero-initialised queries need a longer fine-tune than that).
FINETUNE_RECOVER = "linear-tra"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a HoT-patched model (MixSTE losses, AdamW) and save it",
        description="Patch TARGET (starting from --checkpoint's weights) and fine-tune it on the train split "
                    "of DATA; write it with hotpatch.save. Works under torchrun (DDP) unchanged.")
    add_target_arguments(p)
    add_hot_arguments(p)
    add_data_arguments(p)
    p.add_argument("--prune-after", dest="n", type=stage_value, metavar="N",
                   help="same as --n (also N,N for stages); torchrun's own parser rejects --n as ambiguous, so use "
                        "this under torchrun")
    add_training_arguments(p, lr=4e-5)
    p.set_defaults(run=run)
    return p


def add_training_arguments(parser: argparse.ArgumentParser, *, lr: float) -> None:
    """The options of the training loop, shared by ``finetune`` and ``train``."""
    from hotpatch.cli._options import DeprecatedAlias, add_batch_option, add_json_option, add_threads_option

    g = parser.add_argument_group("training")
    g.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="where to write the trained model")
    g.add_argument("--epochs", type=positive_int, required=True, metavar="E",
                   help="passes over the training windows (each every window once, or --steps-per-epoch steps)")
    g.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate (default: {lr:g})")
    g.add_argument("--weight-decay", type=nonnegative_float, default=0.1, help="AdamW weight decay (default: 0.1)")
    add_batch_option(g, 16)
    g.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                   help="LR schedule (default: cosine; step decays by --gamma every epoch)")
    g.add_argument("--gamma", type=positive_float, default=0.99, help="step schedule decay per epoch (default: 0.99)")
    g.add_argument("--warmup-steps", dest="warmup", type=nonnegative_int, default=0, metavar="STEPS",
                   help="linear learning-rate warm-up steps (default: 0)")
    g.add_argument("--warmup", dest="warmup", type=nonnegative_int, action=DeprecatedAlias,
                   replacement="--warmup-steps", help=argparse.SUPPRESS)  # --warmup is untimed forwards on profile, sweep and tune
    g.add_argument("--steps-per-epoch", type=positive_int, metavar="S", help="cap optimiser steps per epoch")
    g.add_argument("--stride", type=positive_int, metavar="S", help="training window stride (default: F // 3)")
    g.add_argument("--no-flip", dest="flip_prob", action="store_const", const=0.0, default=0.5,
                   help="no horizontal-flip augmentation (default: flip half the windows)")
    g.add_argument("--grad-clip", type=positive_float, metavar="NORM", help="clip the gradient norm")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of new parameters (an untrained TRA), and of shuffling and dropout (default: 0)")
    g.add_argument("--val-clips", type=nonnegative_int, default=16, metavar="N",
                   help="test sequences scored after every epoch for the progress bar (0: none) (default: 16)")
    g.add_argument("--state", metavar="PATH", help="training checkpoint (default: OUT.state.pt)")
    g.add_argument("--resume", action="store_true", help="continue from the training checkpoint if it exists")
    add_json_option(g)  # the per-epoch history
    add_threads_option(g)


def check_training_arguments(args: argparse.Namespace) -> None:
    """Before a model is built or data read: the outputs can be written (and are no input), the
    data files exist, and ``--resume`` continues a run of the same ``--epochs``."""
    from hotpatch.cli._data import check_data_files
    from hotpatch.finetune import resume_conflict

    state = training_state_path(args)
    check_outputs(args, {"--state": state})
    check_data_files(args)
    if args.resume and state.is_file():
        before = resume_conflict(state, args.epochs, args.schedule)
        if before is not None:
            raise ConfigError(
                f"--resume with --epochs {args.epochs}, but {state} was written by a run of {before} epochs whose "
                f"cosine learning-rate schedule spans those; resume with --epochs {before}, or start a new run "
                "without --resume (or with --state NEW.state.pt); --schedule step or constant can be extended"
            )


def run(args: argparse.Namespace) -> int:
    from hotpatch.saving import save

    main = process_rank() == 0
    out, err = consoles(args.quiet or not main)
    check_training_arguments(args)
    torch.manual_seed(args.seed)
    target = load_target(args)
    if target.kind in ("recipe", "class") and not getattr(args, "checkpoint", None):
        log.warning("no --checkpoint given: fine-tuning %s from freshly initialised (random) weights; pass "
                    "--checkpoint FILE, or train the model first with hotpatch train", describe(target))
    if target.patched:
        if any(v is not None for v in (args.n, args.f, args.keep)):
            log.warning("%s is already patched (%s); --n/--f/--keep are ignored", target.name,
                        describe_config(target.model.hotpatch_config))
        model = target.model
    else:
        settings = hot_settings(args)
        if settings["recover"] is None:  # the best after a short fine-tune in benchmarks/results/accuracy.md
            settings["recover"] = FINETUNE_RECOVER
        if settings["n"] is None or (settings["f"] is None and settings["keep"] is None):
            d = target.defaults
            if d.get("n") is None or (d.get("f") is None and d.get("keep") is None):
                raise ConfigError("pass --n N --f F (where to prune and how many frames to keep; or --keep K)")
        model = target.patch(**settings)
    label = f"HoT {describe_config(model.hotpatch_config)}"
    return train_and_save(args, target, model, label, out, err, main, save)


def train_and_save(args: argparse.Namespace, target: Any, model: torch.nn.Module, label: str, out: Any, err: Any,
                   main: bool, write: Any) -> int:
    """Train ``model`` on ``args.data`` with the ``add_training_arguments`` options, write it with
    ``write(model, path)`` and print the history (rank 0 only)."""
    from hotpatch.conventions import training_convention

    _, joints, channels = target.input_shape()
    if joints != 17 or channels not in (2, 3):
        raise InputShapeError(f"{target.name} takes J={joints}, C={channels}; the data has 17 joints with 2D "
                              "inputs (C=2, or 3 with confidence). Build the model for 17 joints.")
    with Progress(err, args.command, transient=False) as progress:
        progress.status("loading data")
        splits = load_splits(args)
        result, state = _train(args, target, model, label, out, main, splits, progress)
    output = Path(args.output)
    if not main:
        return 0
    result.model.hotpatch_input = training_convention(splits["train"], channels).to_dict()  # saved with the model
    write(result.model, output)
    if args.json:
        text = json.dumps(json_safe({"target": describe(target), "config": getattr(model, "hotpatch_config", None),
                           "output": str(output), "history": result.history}), indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
            return 0
        write_text(args.json, text + "\n")
    out.print(_history_table(result.history))
    out.print(f"wrote {output} (training state: {state})", highlight=False, markup=False)
    return 0


def _train(args: argparse.Namespace, target: Any, model: torch.nn.Module, label: str, out: Any, main: bool,
           splits: dict[str, Any], progress: Progress) -> tuple[Any, Path]:
    """The ``finetune`` run of ``train_and_save``: (its result, the training-state path)."""
    from hotpatch.data import WindowDataset
    from hotpatch.evaluate import pipeline_of
    from hotpatch.finetune import FinetuneConfig, finetune

    frames, _, channels = target.input_shape()
    conf = channels == 3
    train = WindowDataset(splits["train"], frames, stride=args.stride or max(1, frames // 3),
                          flip_prob=args.flip_prob, confidence=conf, seed=args.seed)
    val = None
    if args.val_clips > 0 and splits["test"]:
        step = max(1, len(splits["test"]) // args.val_clips)
        val = WindowDataset(splits["test"][::step][:args.val_clips], frames, mode=pipeline_of(model),
                            confidence=conf)
    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                         schedule=args.schedule, gamma=args.gamma, warmup_steps=args.warmup,
                         steps_per_epoch=args.steps_per_epoch, grad_clip=args.grad_clip, seed=args.seed)
    state = training_state_path(args)
    if main:
        out.print(f"{describe(target)}; {label}; {len(train)} training "
                  f"windows, batch {args.batch}, {args.epochs} epochs", highlight=False, markup=False)
    result = finetune(model, train, cfg, val_data=val, checkpoint=state, resume=args.resume,
                      progress=_train_events(progress))
    return result, state


def training_state_path(args: argparse.Namespace) -> Path:
    """``--state``, or ``OUT.state.pt`` beside ``-o OUT.pt``."""
    output = Path(args.output)
    return Path(args.state) if args.state else output.with_name(output.stem + ".state.pt")


def _train_events(progress: Progress) -> Any:
    """The ``finetune`` progress callback: steps of the current epoch, with the loss and the last eval MPJPE."""
    val = "-"

    def update(event: Any) -> None:
        nonlocal val
        if event.val_mpjpe is not None:
            val = f"{event.val_mpjpe:.1f} mm"
        progress.update(f"epoch {event.epoch}/{event.epochs}", event.step, event.steps,
                        f"loss {event.loss:.4f}, eval MPJPE {val}")
    return update


def _history_table(history: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="training")
    for col in ("epoch", "loss", "w-MPJPE", "TC", "velocity", "lr", "val MPJPE (mm)", "s"):
        t.add_column(col, justify="right")
    for h in history:
        val = h.get("val_mpjpe")
        t.add_row(str(h["epoch"]), f"{h['loss']:.4f}", f"{h['wmpjpe']:.4f}", f"{h['tc']:.2e}",
                  f"{h['velocity']:.4f}", f"{h['lr']:.2e}", "-" if val is None else f"{val:.1f}",
                  f"{h['seconds']:.0f}")
    return t
