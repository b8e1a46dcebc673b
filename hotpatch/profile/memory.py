"""Peak memory of one forward (and of one training step): CUDA's allocator statistics, or on
CPU the peak of live tensor storages created by ATen ops, tracked with a dispatch mode."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from hotpatch.profile.report import Memory


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        s = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested, ...
        return None
    return (s.data_ptr(), s.nbytes()) if s.nbytes() else None


class _LiveStorage(TorchDispatchMode):
    """Tracks bytes of tensor storages created by ATen ops while active, and their peak.

    A storage counts from the op that creates it (an output storage none of the op's inputs
    has) until the last tensor that was seen holding it is freed. Views and in-place results
    add no bytes. Storages that existed before (parameters, inputs) are never counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._holders: dict[tuple[int, int], int] = {}
        self._seen: set[int] = set()
        self._finalizers: list[weakref.finalize] = []

    def _release(self, key: tuple[int, int], tid: int) -> None:
        self._seen.discard(tid)
        self._holders[key] -= 1
        if self._holders[key] == 0:
            del self._holders[key]
            self.live -= key[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or id(t) in self._seen:
                continue
            key = _storage_key(t)
            if key is None or (key in inputs and key not in self._holders):
                continue
            if key not in self._holders:
                self._holders[key] = 0
                self.live += key[1]
                self.peak = max(self.peak, self.live)
            self._holders[key] += 1
            self._seen.add(id(t))
            self._finalizers.append(weakref.finalize(t, self._release, key, id(t)))
        return out

    def __exit__(self, *exc: Any) -> Any:
        result = super().__exit__(*exc)
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()
        return result


def _state_bytes(work: nn.Module, args: tuple[Any, ...]) -> int:
    storages = {}
    tensors = [*work.parameters(), *work.buffers(),
               *(t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor))]
    for t in tensors:
        key = _storage_key(t)
        if key is not None:
            storages[key] = key[1]
    return sum(storages.values())


def _train_step(work: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward in train mode and backward of the sum of the outputs (``work`` is a private copy)."""
    work.train()
    try:
        with torch.enable_grad():
            out = work(*args)
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
            if tensors:
                sum(t.float().sum() for t in tensors).backward()
            del out, tensors
    finally:
        work.eval()
        work.zero_grad(set_to_none=True)


def peak_memory(work: nn.Module, args: tuple[Any, ...], dev: torch.device, train: bool) -> Memory:
    """Peak memory of one forward and, if ``train``, of one training step of ``work`` (a copy)."""
    def forward() -> None:
        with torch.no_grad():
            work(*args)

    steps: list[Callable[[], None]] = [forward]
    if train:
        steps.append(lambda: _train_step(work, args))
    peaks: list[int] = []
    base = None
    for step in steps:
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            base = before if base is None else base
            step()
            torch.cuda.synchronize(dev)
            peaks.append(torch.cuda.max_memory_allocated(dev) - before)
        else:
            with _LiveStorage() as tracker:
                step()
            peaks.append(tracker.peak)
    if dev.type == "cuda":
        method = "torch.cuda.max_memory_allocated after a reset, minus memory allocated before the call"
    else:
        method = ("peak of live tensor storages created by ATen ops during the call "
                  "(excludes parameters, buffers, input and kernel-internal scratch)")
        base = _state_bytes(work, args)
    return Memory(baseline_bytes=int(base or 0), forward_peak_bytes=int(peaks[0]),
                  train_peak_bytes=int(peaks[1]) if train else None, method=method)

