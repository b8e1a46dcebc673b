"""FLOP counters of ``hotpatch.profile``. Each states what it counts; they do not agree, by design:

* ``paper``  — FLOPs = 2 × MACs of ``nn.Linear`` / ``nn.Conv1d/2d/3d`` layers (and the
  projections of ``nn.MultiheadAttention``), via forward hooks. Attention matmuls, norms,
  activations and token clustering are not counted. This is how the HoT paper counted.
* ``fvcore`` — fvcore's ``FlopCountAnalysis`` total, which is MACs (one per multiply-add)
  of linear/conv/matmul/einsum/bmm plus norms and upsampling. Ops it does not know count
  as zero and are listed in ``FlopCount.unsupported``.
* ``torch``  — ``torch.utils.flop_counter.FlopCounterMode`` total: 2 FLOPs per MAC of
  mm/bmm/conv/attention. ``scaled_dot_product_attention``'s CPU kernel and the
  ``nn.MultiheadAttention`` fast path are given formulas here (torch counts them as 0).
* ``thop``   — 2 × ``thop.profile`` MACs (per-module rules), run last on the private copy
  (some thop versions leave ``total_ops`` buffers behind).

Also the paper FLOPs per transformer block.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_map

from hotpatch.engine.analyse import fake_tensors, worth_faking
from hotpatch.engine.inputs import clip_of
from hotpatch.errors import ConfigError, InputShapeError
from hotpatch.profile.report import BlockFlops, FlopCount

log = logging.getLogger(__name__)
_T = TypeVar("_T")

COUNTERS: dict[str, tuple[str, str]] = {
    "paper": ("FLOPs", "2 × MACs of Linear/Conv layers only (HoT paper convention)"),
    "fvcore": ("MACs", "fvcore FlopCountAnalysis: 1 per multiply-add, incl. matmuls and norms"),
    "torch": ("FLOPs", "torch FlopCounterMode: 2 per MAC, incl. attention matmuls"),
    "thop": ("FLOPs", "2 × thop.profile MACs (per-module rules)"),
}


def check_counters(counters: Sequence[str] | str) -> list[str]:
    """The counters' names from a sequence or a comma-separated string, each once; ConfigError if unknown."""
    names = [c.strip() for c in counters.split(",")] if isinstance(counters, str) else list(counters)
    bad = [c for c in names if c not in COUNTERS]
    if bad:
        raise ConfigError(f"unknown FLOP counter(s) {bad}; valid counters are {', '.join(COUNTERS)}")
    return list(dict.fromkeys(names))


def probe(work: nn.Module, args: tuple[Any, ...], fake: bool | None = None) -> dict[str, int]:
    """First forward: checks the input is accepted and returns paper MACs per module
    (shapes only where that is the cheaper, see ``shapes_only``)."""
    shapes = [tuple(t.shape) for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
    try:
        return shapes_only(_paper_macs_by_module, work, args, fake)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise InputShapeError(
            f"{type(work).__name__} failed on the example input of shape(s) {shapes}: "
            f"{type(e).__name__}: {e}. Pass an input the model accepts, e.g. (batch, frames, "
            f"joints, channels).") from e


def shapes_only(counter: Callable[[nn.Module, tuple[Any, ...]], _T], work: nn.Module, args: tuple[Any, ...],
                fake: bool | None = None) -> _T:
    """``counter(work, args)`` on fake tensors (shapes, no arithmetic) if ``fake``; on the real
    ``args`` if not. ``None``: fake where that is the cheaper (a paper-size model, see
    ``hotpatch.engine.analyse.worth_faking``), and real if the fake run fails (an op that
    needs values). The counters read only shapes, so both runs give the same counts."""
    if fake is None:
        first = clip_of([t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)])
        if first.dim() >= 2 and worth_faking(work, first):
            try:
                return _on_fake_tensors(counter, work, args)
            except Exception as exc:  # noqa: BLE001 - the real run below raises what is real
                log.debug("shapes-only run of %s failed (%s: %s); running it on real values",
                          type(work).__name__, type(exc).__name__, exc)
        return counter(work, args)
    return _on_fake_tensors(counter, work, args) if fake else counter(work, args)


def _on_fake_tensors(counter: Callable[[nn.Module, tuple[Any, ...]], _T], work: nn.Module,
                     args: tuple[Any, ...]) -> _T:
    with fake_tensors() as mode:
        return counter(work, tree_map(lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t, args))


# ----------------------------------------------------------------------------- counters


_LINEAR_CONV = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layer_macs(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    """MACs of one call of a Linear / Conv / MultiheadAttention (projections only)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    # nn.MultiheadAttention: q/k/v in-projections and out_proj (its out_proj is not called as a module)
    q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")[len(args):]])[:3]
    e = module.embed_dim
    return e * (2 * q.numel() + k.numel() + v.numel())


def _paper_macs_by_module(work: nn.Module, args: tuple[Any, ...]) -> dict[str, int]:
    """Paper-convention MACs per qualified module name, in the order the modules first ran."""
    macs: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
            macs[name] = macs.get(name, 0) + _layer_macs(module, a, kw, out)
        return hook

    try:
        for name, m in work.named_modules():
            if isinstance(m, (*_LINEAR_CONV, nn.MultiheadAttention)):
                handles.append(m.register_forward_hook(hook_for(name), with_kwargs=True))
        with torch.no_grad():
            work(*args)
    finally:
        for h in handles:
            h.remove()
    return macs


def count(name: str, work: nn.Module, args: tuple[Any, ...], fake: bool | None = None) -> FlopCount:
    """One counter's total for ``work`` on ``args``. ``torch`` counts on fake tensors as ``shapes_only``
    decides with ``fake``; fvcore (a ``torch.jit`` trace) and thop (which sums its counts with
    ``.item()``) need real values."""
    unit, counts = COUNTERS[name]
    try:
        if name == "torch":
            return FlopCount(name, shapes_only(_torch_flops, work, args, fake), unit, counts)
        if name == "fvcore":
            value, unsupported = _fvcore_macs(work, args)
            return FlopCount(name, value, unit, counts, unsupported)
        if name == "thop":
            return FlopCount(name, _thop_flops(work, args), unit, counts)
    except Exception as e:  # noqa: BLE001 - a counter that cannot handle a model is reported, not fatal
        log.warning("FLOP counter %r failed on %s: %s: %s", name, type(work).__name__, type(e).__name__, e)
        return FlopCount(name, None, unit, counts, error=f"{type(e).__name__}: {e}")
    raise AssertionError(name)


def _fvcore_macs(work: nn.Module, args: tuple[Any, ...]) -> tuple[int, dict[str, int]]:
    with warnings.catch_warnings():  # import-time deprecation noise
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    analysis = (FlopCountAnalysis(work, args)
                .unsupported_ops_warnings(False)
                .uncalled_modules_warnings(False)
                .tracer_warnings("all"))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        total = int(analysis.total())
    summary: dict[str, int] = dict(analysis.unsupported_ops())
    modules = dict(work.named_modules())
    uncalled = [n for n in analysis.uncalled_modules()  # containers without forward are not news
                if n in modules and type(modules[n]).forward is not nn.Module.forward]
    if uncalled:
        summary["uncalled modules"] = len(uncalled)
        log.debug("fvcore: modules never called while tracing: %s", sorted(uncalled))
    for w in Counter(w.category.__name__ for w in caught).items():
        summary[w[0]] = w[1]
    if summary:
        log.debug("fvcore counted 0 for: %s", summary)
    return total, summary


def _sdpa_cpu_flop(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                   *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """SDPA forward: Q·Kᵀ and P·V, 2 FLOPs per MAC: 2·B·H·Lq·Lk·(D + Dv)."""
    *batch, lq, d = query_shape
    lk, dv = value_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * lq * lk * (d + dv)


def _sdpa_cpu_backward_flop(grad_out_shape: Sequence[int], query_shape: Sequence[int],
                            key_shape: Sequence[int], value_shape: Sequence[int],
                            *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """SDPA backward: recompute scores, then grads of P, V, Q, K: 2·B·H·Lq·Lk·(3D + 2Dv)."""
    *batch, lq, d = query_shape
    lk, dv = value_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * lq * lk * (3 * d + 2 * dv)


def _native_mha_flop(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int],
                     embed_dim: int, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """nn.MultiheadAttention fast path: 4 projections plus the two attention matmuls."""
    e = embed_dim
    q, k, v = math.prod(query_shape), math.prod(key_shape), math.prod(value_shape)
    return 2 * e * (2 * q + k + v) + 4 * q * key_shape[-2]


def _torch_custom_mapping() -> dict[Any, Callable[..., int]]:
    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {}
    for op, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
                   ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop),
                   ("_native_multi_head_attention", _native_mha_flop)):
        if hasattr(aten, op):
            mapping[getattr(aten, op)] = fn
    return mapping


def _torch_flops(work: nn.Module, args: tuple[Any, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_torch_custom_mapping())
    # FlopCounterMode's module tracker asserts on views of grad-requiring parameters made under
    # no_grad (e.g. ``queries.expand(...)``); the copy's parameters need no grad for counting.
    flags = [(p, p.requires_grad) for p in work.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with counter, torch.no_grad():
            work(*args)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return int(counter.get_total_flops())


def _thop_flops(work: nn.Module, args: tuple[Any, ...]) -> int:
    with warnings.catch_warnings():  # import-time deprecation noise (distutils, jit.script)
        warnings.simplefilter("ignore")
        import thop

    # ``work`` is profile's private copy and this is its last use: thop may register
    # ``total_ops``/``total_params`` buffers on every module it visits and leave them there.
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(work, inputs=args, verbose=False)
    if out.getvalue().strip():
        log.debug("thop: %s", out.getvalue().strip())
    return int(round(2 * float(macs)))


# ----------------------------------------------------------------------------- blocks


def block_names(model: nn.Module, blocks: Sequence[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    if blocks is not None:
        missing = [b for b in blocks if b not in modules]
        if missing:
            sample = [n for n in modules if n][:8]
            raise ConfigError(f"blocks {missing} are not submodules of {type(model).__name__}; "
                              f"pass qualified names such as {sample}")
        return list(blocks)
    from hotpatch.engine.trace import owns_block_parts, find_blocks

    found = find_blocks(model)
    if not found:
        # A GraphModule keeps qualified names but turns ModuleLists into plain Modules:
        # look for numbered children that own attention and an MLP, innermost first.
        cands = [n for n, m in modules.items()
                 if n and n.rsplit(".", 1)[-1].isdigit() and owns_block_parts(m)]
        found = [n for n in cands if not any(o != n and o.startswith(n + ".") for o in cands)]
    if not found:
        log.info("no transformer blocks found in %s; pass blocks=[...] for a per-block breakdown",
                 type(model).__name__)
    return found


def paper_blocks(macs_by_module: dict[str, int], block_names: Sequence[str],
                  frames: dict[str, int] | None = None) -> list[BlockFlops]:
    """Paper FLOPs grouped by block; layers outside every block are grouped by top-level module.
    ``frames``: the frames each block sees (a patched model's ``hotpatch_plan.tokens``)."""
    by_len = sorted(block_names, key=len, reverse=True)
    groups: dict[str, int] = {}
    for name, macs in macs_by_module.items():
        key = next((b for b in by_len if b == "" or name == b or name.startswith(b + ".")),
                   None)
        if key is None:
            key = name.split(".", 1)[0] or "(model)"
        groups[key] = groups.get(key, 0) + 2 * macs
    for b in block_names:
        groups.setdefault(b, 0)
    names = set(block_names)
    frames = frames or {}
    return [BlockFlops(n, f, n in names, frames.get(n)) for n, f in groups.items()]


