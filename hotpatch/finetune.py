"""A plain, resumable training loop for original or patched lifting models.

AdamW, a cosine / step / constant LR schedule (per optimiser step, optional linear warm-up),
MixSTE's losses (:mod:`hotpatch.losses`), a checkpoint after every epoch (model, optimiser,
scheduler, epoch, history and every process's RNG state) and ``resume=True`` to continue
from it with the same results as an uninterrupted run. Seeded and deterministic on CPU.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is
initialised from the environment (nccl on GPU, gloo on CPU), the model is wrapped in
``DistributedDataParallel`` and windows are split by a ``DistributedSampler``. ``batch_size``
is the *global* batch: each of W processes takes ``batch_size / W`` windows of it, and losses
are normalised by the global number of terms, so W processes compute the same loss and
gradients as one process does on the same global batch. Only rank 0 evaluates, calls
``progress``, logs and writes checkpoints. Patched ``torch.fx.GraphModule`` s are wrapped like
any module; their new parameters (TRA's zero-initialised queries and its projections) train
with the rest.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler

from hotpatch.data import WindowDataset
from hotpatch.atomic import atomic_write
from hotpatch.distributed import DistContext, setup_distributed, teardown
from hotpatch.errors import CheckpointError, ConfigError
from hotpatch.losses import TC_WEIGHT, VELOCITY_WEIGHT, combine, loss_sums

log = logging.getLogger(__name__)

__all__ = ["DistContext", "FinetuneConfig", "FinetuneResult", "TrainEvent", "finetune", "load_state", "resume_conflict",
           "setup_distributed"]

STATE_FORMAT = "hotpatch-finetune-state"
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class FinetuneConfig:
    """Training settings. ``batch_size`` is the global batch (split across DDP processes).

    Defaults follow MixSTE where it has one: AdamW with weight decay 0.1, loss weights 0.5
    (TCLoss) and 2.0 (velocity), step decay 0.99 per epoch with ``schedule="step"``.
    ``steps_per_epoch`` caps the optimiser steps of an epoch (default: every full batch).
    ``mask_padding`` leaves edge-padded frames out of the losses. ``new_lr_scale`` multiplies
    the learning rate of the parameters hotpatch added (``hotpatch_*``: TRA, the pruning
    positional embedding), which start untrained while the host's weights are already trained.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 4e-5
    weight_decay: float = 0.1
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    warmup_steps: int = 0
    step_size: int = 1
    gamma: float = 0.99
    grad_clip: float | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    tc_weight: float = TC_WEIGHT
    velocity_weight: float = VELOCITY_WEIGHT
    joint_weights: tuple[float, ...] | None = None
    mask_padding: bool = True
    new_lr_scale: float = 1.0
    eval_every: int = 1
    eval_batch: int = 64
    eval_flip: bool = False
    find_unused_parameters: bool = False

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size}; expected both >= 1.")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr}; expected a positive learning rate such as 4e-5.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is unknown; use one of {SCHEDULES}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch={self.steps_per_epoch}; expected None or >= 1.")


@dataclass
class TrainEvent:
    """What ``progress`` receives: ``kind`` is ``"step"`` (after an optimiser step; ``loss`` is
    that step's global loss) or ``"epoch"`` (after an epoch; ``loss`` is its mean, ``val_mpjpe``
    the validation MPJPE in mm when evaluated). ``epoch`` counts from 1."""

    kind: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    lr: float
    val_mpjpe: float | None = None


@dataclass
class FinetuneResult:
    """The trained model (unwrapped from DDP), one dict per epoch, and where it resumed from."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None


# ----------------------------------------------------------------------------- distributed


def _device(model: nn.Module, ctx: DistContext) -> torch.device:
    if ctx.distributed and torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# ----------------------------------------------------------------------------- RNG and state


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:  # an interrupted write keeps the previous epoch's state
        torch.save(state, tmp)


def resume_conflict(path: str | os.PathLike, epochs: int, schedule: str) -> int | None:
    """The ``epochs`` of the run that wrote the training checkpoint at ``path`` if resuming it with
    ``epochs`` would bend its learning-rate schedule (a cosine schedule spans the run's epochs;
    ``step`` and ``constant`` do not depend on them), else None."""
    return _epochs_conflict(load_state(path).get("config", {}), epochs, schedule)


def _epochs_conflict(saved: dict[str, Any], epochs: int, schedule: str) -> int | None:
    before = saved.get("epochs")
    if before is None or int(before) == epochs or "cosine" not in (schedule, saved.get("schedule", "cosine")):
        return None
    return int(before)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`finetune`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, truncated, not a torch file
        raise CheckpointError(
            f"could not read training checkpoint {str(path)!r} ({e}); expected a file finetune wrote. "
            "Delete it or pass another path to start afresh."
        ) from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a hotpatch training checkpoint (no format {STATE_FORMAT!r}); "
            "pass the state file finetune wrote, or resume=False."
        )
    return state


# ----------------------------------------------------------------------------- schedule


def _lr_factor(cfg: FinetuneConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        warm = (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 1.0
        if cfg.schedule == "cosine":
            t = min(step, total) / total
            base = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        elif cfg.schedule == "step":
            base = cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
        else:
            base = 1.0
        return warm * base

    return factor


# ----------------------------------------------------------------------------- loop


def _targets(out: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets matching the model output: the centre frame for a (B, 1, J, 3) output."""
    if out.shape[1] == 1 and targets.shape[1] > 1:
        c = targets.shape[1] // 2
        return targets[:, c:c + 1], valid[:, c:c + 1]
    if out.shape != targets.shape:
        raise ConfigError(
            f"the model returned {tuple(out.shape)} for targets {tuple(targets.shape)}; expected the same "
            "shape (seq2seq) or one centre frame (seq2frame)."
        )
    return targets, valid


def _step_loss(model: nn.Module, batch: dict, cfg: FinetuneConfig, ctx: DistContext, device: torch.device):
    out = model(batch["inputs"].to(device))
    out = out[0] if isinstance(out, (tuple, list)) else out
    targets, valid = _targets(out, batch["targets"].to(device), batch["valid"].to(device))
    sums = loss_sums(out, targets, valid if cfg.mask_padding else None, cfg.joint_weights)
    counts = None
    if ctx.distributed:
        n = torch.stack([c.detach().to(device=device, dtype=torch.float64) for _, c in sums.values()])
        dist.all_reduce(n)
        counts = {k: (n[i] / ctx.world_size).to(out.dtype) for i, k in enumerate(sums)}
    return combine(sums, cfg.tc_weight, cfg.velocity_weight, counts)


def _global_mean(value: torch.Tensor, ctx: DistContext) -> float:
    if not ctx.distributed:
        return float(value.detach())
    v = value.detach().clone().double()
    dist.all_reduce(v)
    return float(v) / ctx.world_size


def finetune(
    model: nn.Module,
    train_data: WindowDataset,
    config: FinetuneConfig | None = None,
    *,
    val_data: WindowDataset | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: Callable[[TrainEvent], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place on ``train_data`` and return it with the per-epoch history.

    ``checkpoint``: a file rewritten after every epoch (rank 0 only). ``resume=True`` loads it,
    if it exists, and continues after its last epoch (the model must be built the same way,
    e.g. the same ``hotpatch.apply`` arguments). ``val_data`` is scored (MPJPE, mm) every
    ``config.eval_every`` epochs and after the last. History entries: ``epoch``, ``loss``,
    ``wmpjpe``, ``tc``, ``velocity`` (epoch means), ``lr``, ``steps``, ``seconds`` and
    ``val_mpjpe`` / ``val_p_mpjpe`` when evaluated. The model is left in eval mode.
    """
    cfg = config or FinetuneConfig()
    cfg.check()
    ctx = setup_distributed()
    try:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"batch_size={cfg.batch_size} is not divisible by the {ctx.world_size} processes; expected a "
                f"global batch that splits evenly, e.g. {ctx.world_size * max(1, cfg.batch_size // ctx.world_size)}."
            )
        device = _device(model, ctx)
        model.to(device)
        sampler = DistributedSampler(train_data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
        loader = DataLoader(train_data, batch_size=cfg.batch_size // ctx.world_size, sampler=sampler,
                            drop_last=True, num_workers=0)
        steps = min(len(loader), cfg.steps_per_epoch or len(loader))
        if steps == 0:
            raise ConfigError(
                f"the training data has {len(train_data)} windows, fewer than one global batch of "
                f"{cfg.batch_size}; pass a smaller batch_size or more data."
            )
        optimizer = _optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, steps))
        _seed_all(cfg.seed + ctx.rank)
        path = Path(checkpoint) if checkpoint is not None else None
        start, history = 0, []
        if resume:
            start, history = _restore(path, model, optimizer, scheduler, cfg, ctx)
        net = model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            net = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)

        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            record = _train_epoch(net, loader, optimizer, scheduler, cfg, ctx, device, epoch, steps, progress)
            if val_data is not None and ctx.is_main and (epoch + 1 == cfg.epochs or
                                                         (epoch + 1) % max(1, cfg.eval_every) == 0):
                record.update(_validate(model, val_data, cfg))
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            rngs = [_rng_state()]
            if ctx.distributed:
                rngs = [None] * ctx.world_size
                dist.all_gather_object(rngs, _rng_state())
            if ctx.is_main:
                log.info("epoch %d/%d: loss %.5f%s (%.1fs)", epoch + 1, cfg.epochs, record["loss"],
                         f", val MPJPE {record['val_mpjpe']:.1f} mm" if "val_mpjpe" in record else "",
                         record["seconds"])
                if path is not None:
                    _save_state(path, {
                        "format": STATE_FORMAT, "version": 1, "epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "history": history, "rng": rngs, "config": _plain(asdict(cfg)),
                        "world_size": ctx.world_size, "patch": _patch_config(model),
                    })
                if progress is not None:
                    progress(TrainEvent("epoch", epoch + 1, cfg.epochs, steps, steps, record["loss"],
                                        record["lr"], record.get("val_mpjpe")))
            if ctx.distributed:
                dist.barrier()
        model.eval()
        return FinetuneResult(model=model, history=history, resumed_from_epoch=start if resume and start else None)
    finally:
        teardown(ctx)


def _optimizer(model: nn.Module, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW; the parameters hotpatch added (``hotpatch_*``) get ``lr * new_lr_scale``."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    host = [p for k, p in named if not k.startswith("hotpatch_")]
    new = [p for k, p in named if k.startswith("hotpatch_")]
    groups = [g for g in ({"params": host}, {"params": new, "lr": cfg.lr * cfg.new_lr_scale}) if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _restore(path: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             cfg: FinetuneConfig, ctx: DistContext) -> tuple[int, list[dict[str, Any]]]:
    """Load the training checkpoint at ``path`` if there is one: (epochs done, history)."""
    if path is None or not path.is_file():
        if ctx.is_main:
            log.info("no training checkpoint at %s yet; starting from epoch 1", path)
        return 0, []
    state = load_state(path)
    _check_resume(state, cfg, ctx, path)
    _check_same_patch(state, model, path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # a state file of another model (written before "patch" was recorded)
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))[:300]
        raise CheckpointError(
            f"{str(path)!r} holds the training state of another model ({detail}); {_FRESH}"
        ) from err
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ctx.rank < len(state["rng"]):
        _set_rng_state(state["rng"][ctx.rank])
    if ctx.is_main:
        log.info("resumed from %s after epoch %d of %d", path, state["epoch"], cfg.epochs)
    return int(state["epoch"]), list(state["history"])


def _train_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler: Any,
                 cfg: FinetuneConfig, ctx: DistContext, device: torch.device, epoch: int, steps: int,
                 progress: Callable[[TrainEvent], None] | None) -> dict[str, Any]:
    """``steps`` optimiser steps; the epoch's mean loss terms (global over processes)."""
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums = {"loss": 0.0, "wmpjpe": 0.0, "tc": 0.0, "velocity": 0.0}
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        terms = _step_loss(net, batch, cfg, ctx, device)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        values = [_global_mean(getattr(terms, k), ctx) for k in ("total", "wmpjpe", "tc", "velocity")]
        for k, v in zip(sums, values):
            sums[k] += v
        if progress is not None and ctx.is_main:
            progress(TrainEvent("step", epoch + 1, cfg.epochs, step + 1, steps, values[0],
                                scheduler.get_last_lr()[0]))
    return {"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()}, "lr": scheduler.get_last_lr()[0],
            "steps": steps}


def _validate(model: nn.Module, val_data: WindowDataset, cfg: FinetuneConfig) -> dict[str, float]:
    from hotpatch.evaluate import evaluate_model

    res = evaluate_model(model, val_data, batch_size=cfg.eval_batch, flip=cfg.eval_flip, flops=False)
    return {"val_mpjpe": res["mpjpe"], "val_p_mpjpe": res["p_mpjpe"]}


_FRESH = ("start fresh with another state file (--state NEW.state.pt, or checkpoint=...) or without --resume "
          "(resume=False), or delete it")


def _patch_config(model: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(model, "hotpatch_config", None)
    return _plain(dict(cfg)) if cfg is not None else None


def _describe_patch(cfg: dict[str, Any] | None) -> str:
    if cfg is None:
        return "unpatched"
    keys = ("n", "f", "frames", "pipeline", "prune", "recover", "k", "prune_pos_embed", "recover_frames")
    return " ".join(f"{k}={cfg.get(k)}" for k in keys if k in cfg)


def _check_same_patch(state: dict[str, Any], model: nn.Module, path: Path) -> None:
    """``CheckpointError`` naming both configurations if the state file was written for another patch."""
    if "patch" not in state:
        return  # older state files: the weights' shapes are checked when they load
    saved, now = state["patch"], _patch_config(model)
    if saved != now:
        raise CheckpointError(
            f"{str(path)!r} is the training state of another patch ({_describe_patch(saved)}), not of this "
            f"one ({_describe_patch(now)}); {_FRESH}."
        )


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: Settings whose change makes a resumed run differ from an uninterrupted one. Not ``epochs``: a
#: cosine schedule refuses another count, and the step and constant schedules do not depend on it,
#: so a run extended to more epochs is the uninterrupted longer run, bit for bit (tested).
_RESUME_KEYS = ("batch_size", "lr", "schedule", "seed", "steps_per_epoch", "warmup_steps")


def _check_resume(state: dict[str, Any], cfg: FinetuneConfig, ctx: DistContext, path: Path) -> None:
    saved = state.get("config", {})
    changed = [f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in _RESUME_KEYS
               if k in saved and saved[k] != getattr(cfg, k)]
    if int(state["epoch"]) > cfg.epochs:
        raise CheckpointError(
            f"{str(path)!r} is after epoch {state['epoch']} but epochs={cfg.epochs}; pass epochs >= {state['epoch']}."
        )
    before = _epochs_conflict(saved, cfg.epochs, cfg.schedule)
    if before is not None:
        raise ConfigError(
            f"{str(path)!r} was written by a run of epochs={before} with a cosine learning-rate schedule, which "
            f"spans those epochs; resume with epochs={before}, or start afresh (resume=False or another checkpoint "
            "path); a step or constant schedule can be extended."
        )
    if changed and ctx.is_main:
        log.warning("resuming %s with changed settings (%s); results will differ from an uninterrupted run",
                    path, "; ".join(changed))
    if state.get("world_size", 1) != ctx.world_size and ctx.is_main:
        log.warning("resuming %s (written by %d processes) with %d; RNG streams are reseeded",
                     path, state.get("world_size", 1), ctx.world_size)
