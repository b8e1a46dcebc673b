"""``hotpatch.apply``: trace → analyse → rewrite → check."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from hotpatch.engine.analyse import ATTENDS_OVER_FRAMES, Plan, analyse, fake_tensors, worth_faking
from hotpatch.engine.inputs import Inputs, bind_inputs
from hotpatch.errors import (
    AlreadyPatchedError, ConfigError, HotpatchError, InputShapeError, NoTemporalBlocksError, PatchCheckError, TraceFailure,
)
from hotpatch.engine.opaque import forget_mixed_frames, pin_frame_sized_blocks
from hotpatch.engine.refusals import (
    NOTE_LIMIT, ON_COEFFICIENTS, SIZED_BY_FRAMES, Listing, capped, frame_resamplers, in_words, kind_runs,
    listed_blocks, one_line, refusal,
)
from hotpatch.prune import PRUNERS
from hotpatch.recover import RECOVERERS, reads_assignment
from hotpatch.engine.config import PatchConfig
from hotpatch.engine.rewrite import rewrite
from hotpatch.engine.trace import ShapeNeeded, trace
from hotpatch.keep import describe as describe_keep, refit, resolve

log = logging.getLogger(__name__)

PIPELINES = ("auto", "seq2seq", "seq2frame")
ExampleInput = torch.Tensor | tuple | list | dict
"""One clip, or a tuple (positional) / dict (by name) of every input of ``forward``."""


def apply(
    model: nn.Module,
    n: int | Sequence[int],
    f: int | Sequence[int] | None = None,
    *,
    keep: float | Sequence[float] | None = None,
    frames: int | None = None,
    example_input: ExampleInput | None = None,
    pipeline: str = "auto",
    prune: str = "tpc",
    recover: str | None = "tra",
    k: int = 2,
    leaf_modules: Sequence[type] = (),
    inplace: bool = False,
    prune_pos_embed: bool = False,
    recover_frames: int | None = None,
) -> fx.GraphModule:
    """Insert HoT token pruning and recovery into a video pose transformer.

    Args:
        model: any VPT whose ``forward`` takes a pose tensor (B, F, J, C), alone or with other
            inputs (a diffusion denoiser's ``forward(x_2d, y_noisy, t)``, ``forward(x, mask)``).
        n: prune after the n-th temporal block (blocks 1..n see all F frames), 1 <= n < L.
            A list prunes in several stages (hierarchical pruning): ``n=[1, 3], f=[121, 61]``
            gives blocks 1 and F frames, blocks 2..3 f[0] and the rest f[1]; n strictly
            increasing, f never increasing, one f per n. Each later stage selects among the
            tokens the previous one kept; recovery happens once, from the last stage.
        f: frames kept in the blocks after the cut, 1 <= f <= F (f = F keeps every frame); a
            list with a list n.
        keep: instead of f, the fraction of F to keep, 0 < keep <= 1 (a list with a list n): f is
            keep·F rounded, moved to the nearest f the model's strides and splits take, and logged
            (:mod:`hotpatch.keep`). Pass exactly one of f and keep.
        frames: the clip length F; inferred from ``example_input`` or the model if omitted.
        example_input: one clip the model accepts, e.g. ``torch.randn(1, 243, 17, 2)``; for a
            model with several inputs a tuple of them in ``forward``'s order or a dict by name
            (``{"x": x, "t": t}``), each with the batch on axis 0. The clip is the first input of
            rank 3 or more (its axis 1 is F); the analysis finds the frame axis of the others,
            and those without one (a timestep (B,), a camera (B, 9)) pass through untouched.
            Parameters with defaults that are not given stay fixed to their defaults; the
            patched model keeps ``forward``'s parameter names (positional and keyword calls).
        pipeline: ``"seq2seq"`` (recover all F frames before the head, output shape kept),
            ``"seq2frame"`` (no recovery; the centre frame is always kept and its prediction
            (B, 1, ...) is returned) or ``"auto"`` (seq2seq).
        prune: ``"tpc"`` (the paper's clustering), ``"merge"`` (TPC's clusters, each kept token
            the mean of its cluster; ``"merge-mean"``: the same; ``"merge-density"``: weighted by
            DPC-kNN density), ``"uniform"``, ``"attention"`` or ``"motion"``.
        recover: ``"tra"`` (learnable, zero-initialised), ``"nearest"`` or ``"linear"``
            (parameter-free, for zero-retraining seq2seq), ``"unmerge"`` (parameter-free: every
            frame from its cluster's token, blended halfway with linear interpolation;
            ``"unmerge-linear"``: the same; ``"unmerge-pure"``: no blend; needs ``prune="tpc"`` or
            a merge) or ``"linear-tra"``
            (linear plus a learnable correction that is zero at initialisation: zero-retraining,
            then fine-tuning); ignored for seq2frame.
        k: neighbours of the DPC-kNN density (the token itself included).
        leaf_modules: module classes to keep as opaque calls and treat as blocks.
        inplace: share the model's modules instead of deep-copying them.
        prune_pos_embed: add a learnable (1, f, C) positional embedding after pruning (the
            official HoT MixSTE has one).
        recover_frames: with ``recover="tra"``, recover this many frames instead of F (the
            paper's Table 11); the output then has that many frames.

    Returns:
        a ``torch.fx.GraphModule`` with the original submodules under their original names
        plus ``hotpatch_prune`` / ``hotpatch_recover`` (new parameters live there). Its
        ``hotpatch_config`` and ``hotpatch_plan`` attributes describe the patch.
    """
    resolve(f, keep, frames or 1)  # exactly one of f and keep, before the (slow) trace
    if keep is None:
        n, f = check_stages(n, f)
        _check_args(n, f, k, pipeline, prune, recover, recover_frames)
    prepared = prepare(model, frames=frames, example_input=example_input, leaf_modules=leaf_modules, inplace=inplace)
    return prepared.patch(
        n, f, keep=keep, pipeline=pipeline, prune=prune, recover=recover, k=k,
        prune_pos_embed=prune_pos_embed, recover_frames=recover_frames, copy_modules=False,
    )


class Prepared:
    """A traced and analysed model, ready to be patched at any (n, f) without tracing again.

    Use it to sweep settings: ``p = hotpatch.prepare(model); [p.patch(n, 81) for n in (1, 2, 3)]``.
    Each patch owns a copy of the model's modules.
    """

    def __init__(self, gm: fx.GraphModule, plan: Plan, inputs: Inputs, training: bool, source) -> None:
        self.gm, self.plan, self.inputs = gm, plan, inputs
        self.example = inputs.clip  # the clip (B=1); ``inputs`` holds every traced input
        self._training, self._source = training, source
        self.input_record: dict | None = None  # the model's hotpatch_input (input convention), carried over

    @capped()
    def patch(
        self, n: int | Sequence[int], f: int | Sequence[int] | None = None, *, keep: float | Sequence[float] | None = None,
        pipeline: str = "auto", prune: str = "tpc", recover: str | None = "tra", k: int = 2,
        prune_pos_embed: bool = False, recover_frames: int | None = None, copy_modules: bool = True,
    ) -> fx.GraphModule:
        """Patch with these settings (see :func:`apply` for their meaning)."""
        n, f = check_stages(n, resolve(f, keep, self.plan.frames))
        _check_args(n, f, k, pipeline, prune, recover, recover_frames)
        _check_temporal_blocks(self.gm, self.plan)
        gm = copy.deepcopy(self.gm) if copy_modules else self.gm
        attempts = 2 * len(f) + 1 if isinstance(f, tuple) else 2  # keep: each refused stage moved once or twice
        for attempt in range(attempts):
            cfg = _config(self.plan, n, f, pipeline, prune, recover, k, prune_pos_embed, recover_frames)
            try:
                with torch.random.fork_rng(devices=[]):  # new modules (TRA) draw their init; the caller's RNG is kept
                    patched, sites = rewrite(gm, self.plan, cfg)
                break
            except ConfigError as err:  # "fit" refuses before any edit: with keep, f moves to the nearest valid
                f = refit(f, keep, self.plan.frames, err) if keep is not None and attempt < attempts - 1 else None
                if f is None:
                    raise
        if keep is not None:
            log.info("%s", describe_keep(keep, self.plan.frames, f))
        _check_patched(patched, self.inputs, self.plan.output_shapes, cfg)
        patched.train(self._training)
        patched.hotpatch_config = cfg.to_dict()
        patched.hotpatch_config["input_shape"] = list(self.example.shape[1:])
        if len(self.inputs) > 1:  # what hotpatch.load needs to build the example again
            patched.hotpatch_config["inputs"] = [i.record() for i in self.plan.inputs]
            # integer / bool inputs (a timestep, a mask) cannot be drawn at random: save keeps them
            patched.hotpatch_example = {
                k: v.detach().cpu().clone() for k, v in self.inputs.values.items() if not v.is_floating_point()
            }
        # the analysis' plan plus this patch's own decisions (the rewrite's notes) and token counts
        patched.hotpatch_plan = dataclasses.replace(
            self.plan, notes=[*self.plan.notes, *sites.notes], tokens=sites.tokens,
        )
        patched.hotpatch_source = self._source
        if self.input_record is not None:
            patched.hotpatch_input = dict(self.input_record)
        patched.hotpatch_sites = sites
        log.info("patched: cut before %s, recovery after %s", sites.cut_block, sites.recover_after)
        return patched


@capped()
def prepare(
    model: nn.Module,
    *,
    frames: int | None = None,
    example_input: ExampleInput | None = None,
    leaf_modules: Sequence[type] = (),
    inplace: bool = False,
) -> Prepared:
    """Trace and analyse ``model`` once (the expensive part of :func:`apply`)."""
    _refuse_patched(model)
    was_training = model.training
    source = model if inplace else copy.deepcopy(model)
    source.eval()
    try:
        gm, plan, inputs = _analyse_input(source, leaf_modules, frames, example_input)
    finally:
        if inplace:
            model.train(was_training)
    prepared = Prepared(gm, plan, inputs, was_training, getattr(model, "hotpatch_source", None))
    prepared.input_record = getattr(model, "hotpatch_input", None)
    return prepared


def example_from_config(
    config: dict[str, Any], saved: dict[str, torch.Tensor] | None = None, *, batch: int = 1, zeros: bool = False,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """An input for a patched model from its ``hotpatch_config``: a clip (batch, *input_shape), or
    for a model patched with several inputs a dict of them by name, in ``forward``'s order.
    Integer and bool inputs (a timestep, a mask) are ``saved``'s values (the example it was patched
    with, ``hotpatch_example``) repeated over the batch, else zeros; float inputs are random
    (seeded, the caller's RNG untouched) or, with ``zeros``, zeros."""
    gen = torch.Generator().manual_seed(0)

    def draw(shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype) if zeros else torch.randn(shape, generator=gen, dtype=dtype)

    if "inputs" not in config:
        return draw((batch, *config["input_shape"]))
    saved = saved or {}
    out: dict[str, torch.Tensor] = {}
    for entry in config["inputs"]:
        name, shape = str(entry["name"]), tuple(int(s) for s in entry["shape"])
        dtype = getattr(torch, str(entry["dtype"]))
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {entry['dtype']!r} of input {name}")
        if name in saved:
            out[name] = saved[name][:1].to(dtype).expand(batch, *shape).clone()
        elif dtype.is_floating_point:
            out[name] = draw((batch, *shape), dtype)
        else:
            out[name] = torch.zeros((batch, *shape), dtype=dtype)
    return out


def _refuse_patched(model: nn.Module) -> None:
    """A model hotpatch already patched cannot be traced again: its graph holds the pruner."""
    for name, m in model.named_modules():
        config = getattr(m, "hotpatch_config", None)
        if config is None:
            continue
        where = "this model" if name == "" else f"its submodule {name}"
        settings = ", ".join(f"{k}={config[k]}" for k in ("n", "f") if k in config)
        raise AlreadyPatchedError(
            f"{where} is already patched by hotpatch ({settings}); a patch cannot be patched "
            "again. Apply hotpatch.apply(original, n, f) to the original model instead (for a "
            "saved patch, hotpatch.load rebuilds it), or call p = hotpatch.prepare(original) "
            "once and p.patch(n, f) for each setting you want to try."
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_stages(n, f) -> tuple[int | tuple[int, ...], int | tuple[int, ...]]:
    """Check one cut (two ints) or several (two equally long lists); a list of one value is
    one cut. Returns ints, or tuples for several stages."""
    if not isinstance(n, (list, tuple)) and not isinstance(f, (list, tuple)):
        return n, f
    ns = list(n) if isinstance(n, (list, tuple)) else [n]
    fs = list(f) if isinstance(f, (list, tuple)) else [f]
    for name, values in (("n", ns), ("f", fs)):
        if not values or not all(_is_int(v) for v in values):
            raise ConfigError(f"{name}={values!r}: pass an int or a non-empty list of ints")
    if len(ns) != len(fs):
        raise ConfigError(
            f"n={ns} and f={fs}: multi-stage pruning needs one f per cut (n=[1, 3], f=[121, 61] "
            "prunes to 121 frames after block 1 and to 61 after block 3)"
        )
    if len(ns) == 1:
        return ns[0], fs[0]
    if any(b <= a for a, b in zip(ns, ns[1:])):
        raise ConfigError(f"n={ns}: the cuts must come in order, strictly increasing (e.g. n=[1, 3])")
    if any(b > a for a, b in zip(fs, fs[1:])):
        raise ConfigError(
            f"f={fs}: each stage keeps some of the tokens the previous one kept, so f must not "
            "increase (e.g. f=[121, 61])"
        )
    return tuple(ns), tuple(fs)


def parse_stages(text: str) -> tuple[list[int], list[int]]:
    """``"1,3:121,61"`` -> ([1, 3], [121, 61]): the n and f of each pruning stage, as the
    command line writes them; ``ConfigError`` naming the expected form otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        ns, fs = ([int(v) for v in part.split(",")] for part in parts)
    except ValueError:
        raise ConfigError(
            f"{text!r}: give the stages as N,N:F,F, e.g. 1,3:121,61 (cuts after blocks 1 and 3, keeping 121 then 61)"
        ) from None
    if len(ns) != len(fs) or len(ns) < 2:
        raise ConfigError(f"{text!r}: give two or more cuts and one f per cut, e.g. 1,3:121,61")
    if any(b <= a for a, b in zip(ns, ns[1:])) or any(b > a for a, b in zip(fs, fs[1:])):
        raise ConfigError(f"{text!r}: n must increase and f must not, e.g. 1,3:121,61")
    return ns, fs


def stage_text(value: int | Sequence[int]) -> str:
    """``3`` -> ``"3"``, ``[1, 3]`` -> ``"1,3"``: an n or f as the command line writes it."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _check_args(n, f, k, pipeline, prune, recover, recover_frames) -> None:
    ns = n if isinstance(n, tuple) else (n,)
    fs = f if isinstance(f, tuple) else (f,)
    for name, value in [*(("n", v) for v in ns), *(("f", v) for v in fs), ("k", k)]:
        if not _is_int(value):
            raise ConfigError(f"{name} must be an int, got {value!r}")
    if min(ns) < 1:
        raise ConfigError(f"n={n}: n counts temporal blocks from 1 (n=3 prunes after the 3rd); pass n >= 1")
    if min(fs) < 1:
        raise ConfigError(f"f={f}: at least one frame must be kept; pass 1 <= f <= F")
    if k < 1:
        raise ConfigError(f"k={k}: DPC-kNN needs at least one neighbour (the token itself); pass k >= 1")
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline={pipeline!r} is unknown; use one of {PIPELINES}")
    if prune not in PRUNERS:
        raise ConfigError(f"prune={prune!r} is unknown; use one of {tuple(PRUNERS)}")
    if pipeline != "seq2frame" and recover not in RECOVERERS:
        raise ConfigError(f"recover={recover!r} is unknown; use one of {RECOVERERS} (or pipeline='seq2frame')")
    if pipeline != "seq2frame" and reads_assignment(recover) and not PRUNERS[prune].clusters:
        clustering = ", ".join(repr(p) for p, cls in PRUNERS.items() if cls.clusters)
        raise ConfigError(f"recover={recover!r} gives every frame its cluster's token, and prune={prune!r} makes "
                          f"no clusters; use a clustering pruner ({clustering}), or recover='linear'")
    if recover_frames is not None and (recover != "tra" or recover_frames < 1):
        raise ConfigError("recover_frames needs recover='tra' and a positive frame count")


def _check_temporal_blocks(gm: fx.GraphModule, plan: Plan) -> None:
    """Refuse a model without temporal transformer blocks: say what it has instead. A model whose
    blocks attend only within a frame while layers outside them resample the frames (a U-shaped
    or strided convolution net) is refused too, even where a block mixes frames by convolution."""
    attends = any(ATTENDS_OVER_FRAMES in b.why for b in plan.temporal_blocks)
    resamplers = [] if attends else frame_resamplers(gm, plan)
    if plan.levels > 0 and not resamplers:
        return
    lost = [note for note in plan.notes if "not temporal for HoT" in note or " is not a block: " in note]
    found = kind_runs(plan, skip_why=(SIZED_BY_FRAMES, ON_COEFFICIENTS) if lost else ())  # not those the notes name
    layers = Counter(
        type(m).__name__ for m in gm.modules()
        if next(m.children(), None) is None and next(m.parameters(recurse=False), None) is not None
    )
    parts: list[str | Listing] = ["found no transformer block that attends across frames"]
    if lost:  # why the blocks it has do not count (each note names its blocks)
        parts += [" (", Listing(lost, "; ", floor=NOTE_LIMIT), ")"]
    parts.append(", so there are no frame tokens for HoT to prune. ")
    if found:
        parts += ["Found blocks ", *listed_blocks(found)]
    elif not plan.blocks:
        parts.append("Found no transformer blocks")
    if plan.blocks and resamplers:  # what mixes frames instead, rather than every layer type
        parts += [". Their attention stays within a frame; frames are mixed by layers that resample them: ",
                  Listing(resamplers)]
    elif layers:
        parts += ["; its layers: " if found or not plan.blocks else "Its layers: ",
                  Listing([f"{c} {name}" for name, c in layers.most_common(5)])]
    raise NoTemporalBlocksError(refusal(
        *parts, ". Convolution, graph-convolution, MLP and U-shaped lifters have no such blocks and cannot be "
        "patched; if your blocks are built differently, pass leaf_modules=[YourBlockClass]."
    ))


def _config(plan: Plan, n, f, pipeline, prune, recover, k, pos_embed, recover_frames) -> PatchConfig:
    if plan.levels == 0:
        raise NoTemporalBlocksError(refusal(
            "found no transformer block that attends across frames (blocks found: ",
            *(listed_blocks(kind_runs(plan)) or ["none"]), "). A block is an element of a ModuleList/Sequential that "
            "owns an attention and an MLP; if yours are built differently, pass leaf_modules=[YourBlockClass]."
        ))
    last_n = n[-1] if isinstance(n, tuple) else n
    first_f = f[0] if isinstance(f, tuple) else f
    if last_n >= plan.levels:
        raise ConfigError(
            f"n={list(n) if isinstance(n, tuple) else n}, but the model has {plan.levels} levels of temporal "
            f"blocks; the last cut must leave at least one after it: pass 1 <= n <= {plan.levels - 1}."
        )
    if first_f > plan.frames:
        length = (f"the F={plan.frames} tokens the model reads from its {plan.clip_frames}-frame clip"
                  if plan.clip_frames else f"the clip length F={plan.frames}")
        raise ConfigError(
            f"f={list(f) if isinstance(f, tuple) else f} exceeds {length}; pass 1 <= f <= {plan.frames}"
        )
    kept = list(f) if isinstance(f, tuple) else [f]
    if kept[-1] >= plan.frames:
        log.warning("f=%s keeps all F=%d frames: HoT prunes nothing (the blocks after the cut see every frame, no "
                    "cost is saved); pass f < %d, e.g. f=%d", stage_text(f), plan.frames, plan.frames,
                    max(1, plan.frames // 3))
    resolved = "seq2frame" if pipeline == "seq2frame" else "seq2seq"
    return PatchConfig(
        n=n, f=f, frames=plan.frames, pipeline=resolved, prune=prune,
        recover=recover if resolved == "seq2seq" else None, k=k,
        prune_pos_embed=pos_embed, recover_frames=recover_frames,
    )


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _check_patched(patched: fx.GraphModule, example: Inputs, reference, cfg: PatchConfig) -> None:
    """Run the patched graph at batch 1 and at batch 2 (two copies of the example: a gather or a
    view that only broadcasts at B=1 fails there); name the failing node if it breaks (a
    :class:`PatchCheckError`: the analysis should have refused the model before the rewrite).

    The runs are on fake tensors (shapes only, no arithmetic) where that is the cheaper; only if
    that fails is the graph run on real values, which then gives the error its message (or
    passes, where the fake run failed on an op that needs values)."""
    outs = []
    for batch in (example, example.twice()):
        out = None
        if worth_faking(patched, batch):
            try:
                with torch.no_grad(), fake_tensors() as mode:
                    out = patched(*batch.map(mode.from_tensor).args(patched.graph))
            except Exception:
                out = None
        outs.append(_check_real(patched, batch, batch is not example) if out is None else out)
    shapes = [tuple(t.shape) for t in _tensors(outs[0])]
    if cfg.pipeline == "seq2seq" and cfg.recover_frames is None and shapes != reference:
        raise PatchCheckError(one_line(
            f"the patched model returns shapes {shapes}, the original {reference}. {_REPORT}"))


def _check_real(patched: fx.GraphModule, example: Inputs, twice: bool = False):
    try:
        with torch.no_grad():
            out = _Tracking(patched).run(*example.args(patched.graph))
    except _NodeFailure as exc:
        raise PatchCheckError(one_line(
            f"the patched model fails{' at batch size 2' if twice else ''} at `{exc.node.name}` "
            f"({one_line(exc.node.format_node(), 160)}): "
            f"{in_words(exc.cause)}. A frame count is hidden where the analysis did not see it; "
            f"choose another n, or pass that module in leaf_modules=[...]. {_REPORT}"
        )) from exc.cause
    return out


_REPORT = "This is a bug in hotpatch's analysis: please report the model."


class _NodeFailure(Exception):
    def __init__(self, node: fx.Node, cause: Exception) -> None:
        super().__init__(str(cause))
        self.node, self.cause = node, cause


class _Tracking(fx.Interpreter):
    def run_node(self, n: fx.Node):
        try:
            return super().run_node(n)
        except HotpatchError:
            raise
        except Exception as exc:
            raise _NodeFailure(n, exc) from exc


# --------------------------------------------------------------------------- input shape


def _analyse(gm: fx.GraphModule, blocks: list[str], example: Inputs) -> Plan:
    """Analyse; the trace's decisions go first in the plan's notes."""
    plan = analyse(gm, blocks, example)
    plan.notes[:0] = gm.meta.get("hotpatch_notes", [])
    forget_mixed_frames(gm, plan, example)
    pin_frame_sized_blocks(gm, plan, example)
    return plan


def _analyse_input(
    model: nn.Module, leaf_modules: Sequence[type], frames: int | None, example_input: torch.Tensor | None
) -> tuple[fx.GraphModule, Plan, Inputs]:
    """Trace and analyse with ``example_input`` (one clip, or every input), or with the first inferred shape
    that the model accepts. The model is traced once, or once per tried shape if its
    ``forward`` branches on the input's sizes (see :mod:`hotpatch.engine.specialise`)."""
    if example_input is not None:
        inputs, constant = _example_inputs(model, example_input, frames)
        specs = {k: (tuple(v.shape), v.dtype) for k, v in inputs.values.items()}
        gm, blocks = trace(model, leaf_modules, example_inputs=specs)
        plan = _analyse(gm, blocks, inputs)
        for name in constant:
            what = "example_input" if len(inputs) == 1 else f"example_input {name}"
            plan.note(f"{what} is constant: analysed a random clip of its shape {tuple(inputs.values[name].shape)}")
        return gm, plan, inputs
    try:
        generic = trace(model, leaf_modules)
    except ShapeNeeded:  # branches on the input's sizes: trace once per tried shape
        generic = None

    def traced(shape) -> tuple[fx.GraphModule, list[str]]:
        return generic if generic is not None else trace(model, leaf_modules, example_shape=shape)

    tried = []
    failures: list[TraceFailure] = []
    gen = torch.Generator().manual_seed(0)  # a private generator: the caller's RNG is not touched
    for shape in candidate_shapes(model, frames):
        tried.append(shape)
        example = torch.randn(shape, generator=gen)
        try:
            gm, blocks = traced(shape)
            plan = _analyse(gm, blocks, example)
        except InputShapeError:
            continue
        except TraceFailure as exc:  # a branch on the input's sizes refused for this shape
            failures.append(exc)
            continue
        log.info("inferred input shape %s", shape)
        return gm, plan, Inputs({plan.inputs[0].name: example})
    if failures and len(failures) == len(tried):
        raise failures[0]
    guesses = f"tried {', '.join(str(t) for t in tried)}" if tried else (
        "found no (1, F, C) / (1, F, 1, C) temporal embedding to read F from"
    )
    raise InputShapeError(
        f"could not infer the input shape of {type(model).__name__} ({guesses}); "
        "pass example_input=torch.randn(1, F, J, C), or frames=F if the input is (B, F, 17, 2|3)"
    )


def _example_inputs(model: nn.Module, example_input, frames: int | None) -> tuple[Inputs, list[str]]:
    """``example_input`` bound to ``forward``'s parameters (batch 1), checked: the clip is
    (B, F, J, C) or (B, F, C) with ``frames`` frames; a constant float input (zeros) hides how
    axes are laid out, so a random tensor of its shape stands in for it (their names are
    returned too)."""
    if isinstance(example_input, torch.Tensor) and example_input.dim() < 3:
        raise InputShapeError(
            f"example_input must be a tensor (B, F, J, C) or (B, F, C), got {_describe(example_input)}"
        )
    inputs = bind_inputs(model, example_input)
    clip = inputs.clip
    if clip.dim() < 3:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.values.items())
        raise InputShapeError(f"example_input has no pose clip (B, F, J, C) or (B, F, C) ({shapes}); "
                              "give the clip with its frames on axis 1")
    if frames is not None and clip.shape[1] != frames:
        raise InputShapeError(
            f"frames={frames} but example_input{'' if len(inputs) == 1 else ' ' + inputs.clip_name} has "
            f"{clip.shape[1]} frames on axis 1; pass one or make them agree"
        )
    constant = [k for k, v in inputs.values.items() if _constant(v)]
    gen = torch.Generator().manual_seed(0)  # a private generator: the caller's RNG is not touched
    return inputs.map(lambda v: torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) if _constant(v) else v), constant


def _constant(v: torch.Tensor) -> bool:
    return v.is_floating_point() and v.dim() >= 2 and v.numel() > 0 and bool((v == v.flatten()[0]).all())


def _describe(x) -> str:
    return f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def candidate_shapes(gm: nn.Module, frames: int | None) -> list[tuple[int, ...]]:
    """Guesses from the weights: input channels from a Linear/Conv with 2 or 3 inputs,
    frames and joints from (1, N, C) / (1, N, 1, C) embeddings (frames the larger)."""
    channels: list[int] = []
    for m in gm.modules():
        size = getattr(m, "in_features", None) or getattr(m, "in_channels", None)
        if size in (2, 3) and size not in channels:
            channels.append(size)
    channels += [c for c in (2, 3) if c not in channels]
    lengths = sorted(
        {p.shape[1] for p in gm.parameters() if p.dim() in (3, 4) and p.shape[0] == 1 and p.shape[1] > 1
         and all(s == 1 for s in p.shape[2:-1])},
        reverse=True,
    )
    frame_options = [frames] if frames else lengths[:2]
    shapes: list[tuple[int, ...]] = []
    for fr in frame_options:
        joint_options = [j for j in lengths if j < fr] + [17]
        for j in dict.fromkeys(joint_options):
            for c in channels[:2]:
                shapes.append((1, fr, j, c))
    return shapes[:8]
