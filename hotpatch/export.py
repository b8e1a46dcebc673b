"""Export a (patched) model for deployment and check the export against the eager model.

* :func:`export_onnx` — ``torch.onnx.export`` (the torch.export-based exporter), then the file is
  run in onnxruntime on a random clip and compared with the eager model (needs the ``export``
  extra: ``pip install 'hotpatch[export]'``).
* :func:`export_program` — ``torch.export.export`` saved as a ``.pt2`` (``torch.export.load``
  reads it back), checked the same way.

Both export a fixed input shape (the clip the model was patched for, batch ``batch``): the
pruned token count f is static, which is what makes HoT cheap.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from hotpatch.atomic import atomic_write, check_writable
from hotpatch.engine.inputs import clip_of, positional
from hotpatch.errors import ExportError, HotpatchError

log = logging.getLogger(__name__)

__all__ = ["ExportCheck", "export_onnx", "export_program"]


@dataclass
class ExportCheck:
    """The exported file, the largest absolute difference from the eager model on a random clip, and
    the clip's shape (of the first input of rank 3 or more, for a model with several inputs)."""

    path: Path
    max_abs_diff: float
    input_shape: tuple[int, ...]


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


def _check(name: str, got: torch.Tensor, want: torch.Tensor, atol: float) -> float:
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"the {name} export returns shape {tuple(got.shape)}, the model {tuple(want.shape)}")
    diff = float((got.float() - want.float()).abs().max())
    if not diff <= atol:
        raise ExportError(f"the {name} export differs from the eager model by {diff:.3g} (> {atol:g}) on a random "
                          "clip; do not deploy it")
    return diff


def _first_output(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def export_onnx(model: nn.Module, path: str | Path, *, batch: int = 1, example: Any = None,
                opset: int | None = None, atol: float = 1e-4, keep_failed: bool = False,
                verbose: bool = False) -> ExportCheck:
    """Write ``model`` (eval mode) as ONNX to ``path`` and check it in onnxruntime (max |diff| <= ``atol``).

    ``example``: one clip, or for a model with several inputs a tuple (``forward``'s order) or a
    dict by name; by default the inputs a patched model was patched for, at batch ``batch``.
    The file is written beside ``path`` and moved there only once the check passed; if it fails
    nothing is left at ``path`` (with ``keep_failed`` the file is kept as ``NAME.failed.onnx``).
    The ONNX libraries' INFO logging (onnx, onnxscript, onnx_ir: one line per graph pass) is
    hidden unless ``verbose``.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime as ort
    except ImportError as exc:
        raise HotpatchError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'hotpatch[export]'") from exc
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
    with atomic_write(path, keep_failed=keep_failed) as tmp:
        program.save(str(tmp), external_data=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        values = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        feed = {i.name: v.numpy() for i, v in zip(session.get_inputs(), values)}
        got = torch.from_numpy(session.run(None, feed)[0])
        diff = _check("ONNX", got, want, atol)
    return ExportCheck(path, diff, _clip_shape(args, kwargs))


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
        diff = _check("torch.export", got, want, atol)
    return ExportCheck(path, diff, _clip_shape(args, kwargs))


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
