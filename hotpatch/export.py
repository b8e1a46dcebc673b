"""Export a (patched) model for deployment and check the export against the eager model.

* :func:`export_onnx` — ``torch.onnx.export`` (the torch.export-based exporter), then the file is
  run in onnxruntime on a random clip and compared with the eager model (needs the ``export``
  extra: ``pip install 'hotpatch[export]'``).
* :func:`export_program` — ``torch.export.export`` saved as a ``.pt2`` (``torch.export.load``
  reads it back), checked the same way.
* ``export_onnx(..., quantize="int8")`` — the ONNX model with int8 weights (:func:`quantize_onnx`,
  onnxruntime's quantizer), checked against the eager fp32 model with a tolerance fit for int8
  (:data:`INT8_TOLERANCE`).
* :class:`OnnxModel` — an ONNX file in an onnxruntime session, called like the eager model (what
  ``hotpatch.Stream`` and the deployment benchmark run).

The ONNX file records the model's ``hotpatch_config`` and input convention in its metadata
(``hotpatch_config``, ``hotpatch_input``), so that :class:`OnnxModel` knows them again.

Both export a fixed input shape (the clip the model was patched for, batch ``batch``): the
pruned token count f is static, which is what makes HoT cheap.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from hotpatch.atomic import atomic_write, check_writable
from hotpatch.engine.inputs import clip_of, positional
from hotpatch.errors import ExportError, HotpatchError

log = logging.getLogger(__name__)

__all__ = ["ExportCheck", "INT8_CHECK_CLIPS", "INT8_TOLERANCE", "OnnxModel", "export_onnx", "export_program",
           "fuse_onnx", "moving_clip", "ort_session", "quantize_onnx"]

#: An int8 file passes its check when the RMS of its difference from the eager fp32 output is at most
#: this fraction of the RMS of that output (the median over :data:`INT8_CHECK_CLIPS` moving clips).
#: Int8 rounding is noise of a few tenths of a percent per layer that adds up over the blocks:
#: correctly quantized models measured 1-2% (originals) and 1-6% per clip (patched: a rounding
#: change can swap a kept frame for its neighbour); a broken quantization (a clipped activation
#: range, a wrong scale) is tens of percent on every clip. The accuracy cost itself is measured
#: with ``--data`` (MPJPE on real clips).
INT8_TOLERANCE = 0.05


@dataclass
class ExportCheck:
    """The exported file, the largest absolute difference from the eager model on a random clip, the
    clip's shape (of the first input of rank 3 or more, for a model with several inputs), and the
    RMS of the difference relative to the RMS of the eager output."""

    path: Path
    max_abs_diff: float
    input_shape: tuple[int, ...]
    relative_error: float = 0.0
    quantize: str | None = None


def _example(model: nn.Module, batch: int, example) -> tuple[tuple, dict[str, torch.Tensor]]:
    """Positional and keyword inputs to export with: ``example`` (one clip, a tuple of ``forward``'s
    inputs or a dict by name), or for a patched model the inputs it was patched for (batch ``batch``)."""
    if example is None:
        from hotpatch.patch import example_from_config

        config = getattr(model, "hotpatch_config", None) or {}
        if not config.get("input_shape"):
            raise ExportError("the model has no hotpatch_config['input_shape']; pass example=torch.randn(B, F, J, C) "
                              "(or a tuple / dict of every input)")
        example = example_from_config(config, getattr(model, "hotpatch_example", None), batch=batch)
    if not isinstance(example, (torch.Tensor, tuple, list, dict)):
        raise ExportError(f"example must be a tensor, a tuple or a dict of tensors, got {type(example).__name__}")
    return positional(model, example)


def _clip_shape(args: tuple, kwargs: dict) -> tuple[int, ...]:
    return tuple(clip_of([*args, *kwargs.values()]).shape)


def _failing_op(exc: BaseException) -> str | None:
    """The aten / ONNX op an exporter error names, if any."""
    text = "\n".join(str(e) for e in _chain(exc))
    for pattern in (r"op='(aten\.[\w.]+)'", r"(aten::\w+)", r"torch\.ops\.(aten\.[\w.]+)", r"target=(aten\.[\w.]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _export_error(kind: str, exc: BaseException) -> ExportError:
    op = _failing_op(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the exporter colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary = lines.index("## Exception summary") + 1 if "## Exception summary" in lines else 0
    first = lines[summary] if summary < len(lines) else type(exc).__name__
    where = f" at op {op}" if op else ""
    return ExportError(f"{kind} export failed{where}: {first[:300]}. Patch with other settings (e.g. another "
                       "--prune/--recover), or keep the module that uses this op out of the exported graph.")


def _check(name: str, got: torch.Tensor, want: torch.Tensor, atol: float | None,
           rtol: float | None = None) -> tuple[float, float]:
    """(max |got - want|, RMS(got - want) / RMS(want)); ``ExportError`` past ``atol`` (absolute, max) or
    ``rtol`` (relative RMS), unless None."""
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"the {name} export returns shape {tuple(got.shape)}, the model {tuple(want.shape)}")
    delta = got.double() - want.double()
    diff = float(delta.abs().max())
    rel = float(delta.pow(2).mean().sqrt() / want.double().pow(2).mean().sqrt().clamp_min(1e-12))
    if atol is not None and not diff <= atol:
        raise ExportError(f"the {name} export differs from the eager model by {diff:.3g} (> {atol:g}) on a random "
                          "clip; do not deploy it")
    if rtol is not None and not rel <= rtol:
        raise ExportError(f"the {name} export differs from the eager fp32 model by {100 * rel:.1f}% (RMS, > "
                          f"{100 * rtol:g}%) on a random clip; do not deploy it (try per_channel / --per-channel, or "
                          "keep fp32)")
    return diff, rel


def _first_output(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def _onnx_libraries() -> Any:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime as ort
    except ImportError as exc:
        raise HotpatchError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'hotpatch[export]'") from exc
    return ort


QUANTIZE = ("int8",)


def export_onnx(model: nn.Module, path: str | Path, *, batch: int = 1, example: Any = None,
                opset: int | None = None, atol: float = 1e-4, quantize: str | None = None,
                per_channel: bool = False, rtol: float = INT8_TOLERANCE, keep_failed: bool = False,
                verbose: bool = False) -> ExportCheck:
    """Write ``model`` (eval mode) as ONNX to ``path`` and check it in onnxruntime (max |diff| <= ``atol``).

    ``example``: one clip, or for a model with several inputs a tuple (``forward``'s order) or a
    dict by name; by default the inputs a patched model was patched for, at batch ``batch``.
    ``quantize="int8"`` writes the model with int8 weights (:func:`quantize_onnx`, dynamic; with
    ``per_channel`` one scale per output channel) and checks it against the eager fp32 model with
    the relative tolerance ``rtol`` (:data:`INT8_TOLERANCE`) instead of ``atol``.
    The file is written beside ``path`` and moved there only once the check passed; if it fails
    nothing is left at ``path`` (with ``keep_failed`` the file is kept as ``NAME.failed.onnx``).
    The ONNX libraries' INFO logging (onnx, onnxscript, onnx_ir: one line per graph pass) is
    hidden unless ``verbose``.
    """
    ort = _onnx_libraries()
    if quantize not in (None, *QUANTIZE):
        raise ExportError(f"quantize={quantize!r} is unknown; use one of {QUANTIZE} (or None for fp32)")
    path = check_writable(path)  # before the (slow) conversion
    args, kwargs = _example(model, batch, example)
    model = model.eval()
    with torch.no_grad():
        want = _first_output(model(*args, **kwargs))
    single = len(args) == 1 and not kwargs  # one clip: the input is named "keypoints", as before
    try:
        with warnings.catch_warnings(), QuietExporter(verbose):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, opset_version=opset,
                                        input_names=["keypoints"] if single else None, output_names=["poses"],
                                        verbose=False)
    except Exception as exc:  # the exporter raises many types; all become one clear error
        raise _export_error("ONNX", exc) from exc
    program.model.metadata_props.update(_metadata(model, want))
    with atomic_write(path, keep_failed=keep_failed) as tmp, tempfile.TemporaryDirectory() as work:
        if quantize is None:
            program.save(str(tmp), external_data=False)
        else:
            fp32 = Path(work) / "fp32.onnx"
            program.save(str(fp32), external_data=False)
            quantize_onnx(fp32, tmp, per_channel=per_channel)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

        def run(inputs: list[Any]) -> torch.Tensor:
            values = [v for v in inputs if isinstance(v, torch.Tensor)]
            return torch.from_numpy(session.run(None, {i.name: v.numpy() for i, v in zip(session.get_inputs(), values)})[0])

        if quantize is None:
            diff, rel = _check("ONNX", run([*args, *kwargs.values()]), want, atol)
        else:
            diff, rel = _check_int8(model, args, kwargs, want, run, rtol)
    return ExportCheck(path, diff, _clip_shape(args, kwargs), rel, quantize)


#: Clips the int8 check runs (the median of their relative errors is checked).
INT8_CHECK_CLIPS = 4


def moving_clip(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A (B, F, J, C) clip that moves smoothly, as keypoints do (each joint a slow sine about its own
    place, a little noise): the int8 check's input. Independent noise frames would all be about as far
    apart, and int8 rounding then flips which frames a HoT pruner keeps."""
    g = torch.Generator().manual_seed(seed)
    b, f, j, c = shape
    t = torch.linspace(0, 1, f)[None, :, None, None]
    place = 0.3 * torch.randn(b, 1, j, c, generator=g)
    swing = 0.1 * torch.randn(b, 1, j, c, generator=g)
    phase = 6.283 * torch.rand(b, 1, j, c, generator=g)
    return place + swing * torch.sin(12.566 * t + phase) + 0.01 * torch.randn(b, f, j, c, generator=g)


def _check_int8(model: nn.Module, args: tuple, kwargs: dict, want: torch.Tensor, run: Any,
                rtol: float) -> tuple[float, float]:
    """The int8 file against the eager fp32 model: the median relative RMS error over
    :data:`INT8_CHECK_CLIPS` moving clips (one clip where the model takes several inputs) <= ``rtol``."""
    if len(args) != 1 or kwargs:
        return _check("int8 ONNX", run([*args, *kwargs.values()]), want, None, rtol)
    diffs, rels = [], []
    for seed in range(INT8_CHECK_CLIPS):
        clip = moving_clip(tuple(args[0].shape), seed)
        with torch.no_grad():
            ref = _first_output(model(clip))
        diff, rel = _check("int8 ONNX", run([clip]), ref, None, None)
        diffs.append(diff)
        rels.append(rel)
    median = sorted(rels)[(len(rels) - 1) // 2]
    if not median <= rtol:
        raise ExportError(f"the int8 ONNX export differs from the eager fp32 model by {100 * median:.1f}% (RMS, median "
                          f"of {len(rels)} clips; > {100 * rtol:g}%); do not deploy it (try per_channel / "
                          "--per-channel, or keep fp32)")
    return max(diffs), median


def _metadata(model: nn.Module, out: torch.Tensor) -> dict[str, str]:
    """What :class:`OnnxModel` reads back: the patch settings, the input convention, the output frames."""
    from hotpatch.conventions import convention_of

    meta = {"hotpatch_output_frames": str(out.shape[1]) if out.ndim >= 2 else ""}
    config = getattr(model, "hotpatch_config", None)
    if config:
        meta["hotpatch_config"] = json.dumps(dict(config), default=str)
    try:
        conv, _ = convention_of(model)
    except HotpatchError:
        conv = None
    if conv is not None:
        meta["hotpatch_input"] = json.dumps(conv.to_dict())
    return meta


def export_program(model: nn.Module, path: str | Path, *, batch: int = 1, example: Any = None,
                   atol: float = 1e-5, keep_failed: bool = False) -> ExportCheck:
    """``torch.export`` ``model`` (eval mode) to a ``.pt2`` file and check the reloaded program
    (written and checked beside ``path`` as :func:`export_onnx` does; ``example`` as there)."""
    path = check_writable(path)  # before the (slow) conversion
    args, kwargs = _example(model, batch, example)
    model = model.eval()
    with torch.no_grad():
        want = _first_output(model(*args, **kwargs))
    try:
        program = torch.export.export(model, args, kwargs or None)
    except Exception as exc:
        raise _export_error("torch.export", exc) from exc
    with atomic_write(path, keep_failed=keep_failed) as tmp:
        torch.export.save(program, str(tmp))
        with torch.no_grad():
            got = _first_output(torch.export.load(str(tmp)).module()(*args, **kwargs))
        diff, rel = _check("torch.export", got, want, atol)
    return ExportCheck(path, diff, _clip_shape(args, kwargs), rel)


def quantize_onnx(src: str | Path, dst: str | Path, *, method: str = "dynamic", per_channel: bool = False,
                  fmt: str = "qdq", calibration: Iterable[np.ndarray] | None = None, fuse: bool = False) -> Path:
    """Write the fp32 ONNX file ``src`` with int8 weights to ``dst`` (onnxruntime's quantizer).

    ``method="dynamic"``: int8 weights of every MatMul with a constant weight, activations quantized
    to uint8 at run time (per tensor); nothing to calibrate. ``"static"``: activation ranges
    calibrated (min / max) on ``calibration`` (clips shaped like the model's input), every MatMul
    (attention products included) in int8, written as ``fmt`` ``"qdq"`` (Quantize/DequantizeLinear
    pairs that the runtime fuses) or ``"qoperator"`` (QLinearMatMul). ``per_channel``: one weight
    scale per output channel. ``fuse``: first run onnxruntime's transformer optimizer (LayerNorm,
    GELU, bias and skip fusions; its attention fusion does not match these models).
    """
    _onnx_libraries()
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    if method not in ("dynamic", "static"):
        raise ExportError(f"method={method!r} is unknown; use 'dynamic' or 'static'")
    if fmt not in ("qdq", "qoperator"):
        raise ExportError(f"fmt={fmt!r} is unknown; use 'qdq' or 'qoperator'")
    src, dst = Path(src), Path(dst)
    with tempfile.TemporaryDirectory() as work:
        if fuse:
            src = fuse_onnx(src, Path(work) / "fused.onnx")
        with _quiet_quantizer():
            if method == "dynamic":
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=["MatMul"])
                return dst
            clips = [np.asarray(c, dtype=np.float32) for c in (calibration or [])]
            if not clips:
                raise ExportError("static int8 quantization needs calibration clips (a few real inputs); pass "
                                  "calibration=[clip, ...] or use method='dynamic'")

            class _Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.name = _input_name(src)
                    self.left = list(clips)

                def get_next(self) -> dict[str, np.ndarray] | None:
                    return {self.name: self.left.pop(0)} if self.left else None

            quantize_static(src, dst, _Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["MatMul"])
    return dst


def fuse_onnx(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime's transformer optimizer (its Python fusions only) from ``src`` to ``dst``."""
    _onnx_libraries()
    from onnxruntime.transformers.optimizer import optimize_model

    dst = Path(dst)
    with _quiet_quantizer():
        optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0).save_model_to_file(str(dst))
    return dst


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


class _quiet_quantizer:
    """onnxruntime's quantizer and optimizer log every node at INFO / WARNING: ERROR only meanwhile."""

    names = ("root", "onnxruntime", "onnxruntime.quantization", "onnxruntime.transformers", "fusion_base",
             "onnx_model", "fusion_utils")

    def __enter__(self) -> None:
        self.saved = {n: logging.getLogger(None if n == "root" else n).level for n in self.names}
        for n in self.names:
            logging.getLogger(None if n == "root" else n).setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for n, level in self.saved.items():
            logging.getLogger(None if n == "root" else n).setLevel(level)


def ort_session(path: str | Path, *, threads: int | None = None, optimize: bool = True,
                providers: list[str] | None = None) -> Any:
    """An onnxruntime ``InferenceSession`` of ``path``: graph optimisations all on (``optimize``),
    ``threads`` intra-op threads (default: onnxruntime's), CPU unless ``providers`` says otherwise."""
    ort = _onnx_libraries()
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """An ONNX file (or an onnxruntime session) called like the eager model: a (B, F, J, C) tensor in,
    the first output as a tensor out. A file exported for a fixed batch runs a larger batch in chunks.

    ``input_shape`` is (F, J, C); ``hotpatch_config`` and ``hotpatch_input`` come from the file's
    metadata (:func:`export_onnx` writes them), so ``pipeline_of`` and ``convention_of`` work on it.
    """

    def __init__(self, model: Any, *, threads: int | None = None) -> None:
        super().__init__()
        self.session = model if hasattr(model, "run") and hasattr(model, "get_inputs") else ort_session(model, threads=threads)
        first = self.session.get_inputs()
        if len(first) != 1 or len(first[0].shape) != 4:
            raise ExportError(f"the ONNX model takes {len(first)} input(s) of shape "
                              f"{[tuple(i.shape) for i in first]}; expected one (B, F, J, C) clip")
        self.input_name = first[0].name
        batch, *shape = first[0].shape
        if not all(isinstance(d, int) for d in shape):
            raise ExportError(f"the ONNX model's input shape {first[0].shape} has no fixed (F, J, C); export it "
                              "with a fixed clip shape (hotpatch export does)")
        self.batch = batch if isinstance(batch, int) else None
        self.input_shape = tuple(shape)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "hotpatch_config" in meta:
            self.hotpatch_config = json.loads(meta["hotpatch_config"])
        if "hotpatch_input" in meta:
            self.hotpatch_input = json.loads(meta["hotpatch_input"])
        frames = meta.get("hotpatch_output_frames")
        self.output_frames = int(frames) if frames else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        data = x.detach().cpu().numpy().astype(np.float32, copy=False)
        step = self.batch or len(data)
        outs = []
        for lo in range(0, len(data), step):
            chunk = data[lo:lo + step]
            short = step - len(chunk)
            if short:  # the last chunk of a fixed-batch file: pad it with its last clip, then drop those rows
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:step - short])
        return torch.from_numpy(np.concatenate(outs))


#: Loggers of the ONNX libraries, which log every graph pass at INFO.
ONNX_LOGGERS = ("onnx", "onnxscript", "onnx_ir")


class QuietExporter:
    """While exporting: torch's exporter loggers at ERROR, and the ONNX libraries' at WARNING
    unless ``verbose`` (levels restored afterwards)."""

    def __init__(self, verbose: bool = False) -> None:
        self.levels = {"torch.onnx": logging.ERROR, "torch.export": logging.ERROR, "torch._dynamo": logging.ERROR}
        if not verbose:
            self.levels.update(dict.fromkeys(ONNX_LOGGERS, logging.WARNING))
        self.saved: dict[str, int] = {}

    def __enter__(self) -> None:
        for name, level in self.levels.items():
            logger = logging.getLogger(name)
            self.saved[name] = logger.level
            logger.setLevel(level)

    def __exit__(self, *exc: object) -> None:
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)
