"""Read official checkpoint layouts and load them into a model with readable errors.

Official layouts found in the wild:

- MixSTE and MotionBERT: ``{'model_pos': state_dict, 'epoch': ..., 'optimizer': ..., ...}``
  saved from ``nn.DataParallel`` (every key starts with ``module.``); MixSTE also pickles a
  NumPy ``RandomState`` under ``'random_state'``.
- MHFormer and the official HoT models: a plain ``state_dict``.
- Others: ``{'state_dict': ...}`` or ``{'model': ...}``.

The official HoT checkpoints add a few parameters to the host model's keys; ``map_hot_keys``
renames them to the names of hotpatch's own modules.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from hotpatch.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "HOT_KEY_MAP",
    "LoadReport",
    "load_checkpoint_file",
    "load_state_dict",
    "map_hot_keys",
    "read_state_dict",
    "strip_prefix",
]

#: Where a state_dict may sit inside a checkpoint dict, in the order they are tried.
CONTAINER_KEYS = ("model_pos", "state_dict", "model", "model_state_dict")

#: Parameter names of hotpatch's pruner / recoverer that carry a token axis (axis 1).
PRUNE_POS_KEY = "hotpatch_prune.pruner.pos_embed"
RECOVER_QUERY_KEY = "hotpatch_recover.recoverer.queries"

#: Official HoT parameter names (NationalGAILab/HoT) -> hotpatch names. Entries ending in
#: "." rename a prefix (the Linear's weight and bias), the others a whole key.
HOT_KEY_MAP = {
    "pos_embed_token": PRUNE_POS_KEY,
    "x_token": RECOVER_QUERY_KEY,
    "cross_attention.linear_q.": "hotpatch_recover.recoverer.q.",
    "cross_attention.linear_k.": "hotpatch_recover.recoverer.k.",
    "cross_attention.linear_v.": "hotpatch_recover.recoverer.v.",
    "cross_attention.proj.": "hotpatch_recover.recoverer.proj.",
}

_PATCH_PREFIXES = ("hotpatch_prune.", "hotpatch_recover.")

# Globals that weights_only loading refuses but that only rebuild NumPy arrays, dtypes and
# random states (MixSTE pickles the data generator's RandomState next to the weights).
_BENIGN_GLOBALS = frozenset({
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pcg64.PCG64",
    "numpy.random.mtrand.RandomState",
    "argparse.Namespace",
})
_BENIGN_PATTERN = re.compile(r"numpy\.dtypes\.\w+DType")
_REFUSED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")
_MAX_RETRIES = 8
_TEMPORAL_NAME = re.compile(r"temp|temporal", re.IGNORECASE)
_LIST_LIMIT = 8


# --------------------------------------------------------------------------- reading

def read_state_dict(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The model weights stored in ``path``, with any ``module.`` (DataParallel) prefix removed.

    Loads with ``torch.load(weights_only=True)``; NumPy arrays and random states stored next
    to the weights are allowed. Other Python objects are refused unless ``allow_pickle`` (full
    unpickling can run arbitrary code: only for files you trust).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist or is not a file; expected a file written by "
            "torch.save. Check the path."
        )
    obj = load_object(path, allow_pickle)
    return strip_prefix(_find_state_dict(obj, path))


def load_object(path: Path, allow_pickle: bool) -> object:
    """The object ``torch.load`` finds in ``path``: with ``weights_only`` plus the benign globals
    checkpoints commonly hold, or by full unpickling when ``allow_pickle``; ``CheckpointError`` if neither reads it."""
    names: list[str] = []  # globals the file needs beyond weights_only's defaults
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        pass  # legacy (non-zip) or damaged file: learn the refused globals from torch.load below
    refused: BaseException | None = None
    for _ in range(_MAX_RETRIES):
        allowed = _benign_globals(names)
        if allowed is None:
            break
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            refused = err
            name = _refused_global(err)
            if name is None or name in names:
                break
            names.append(name)
        except Exception as err:  # torch raises KeyError, EOFError, OSError, RuntimeError ... on bad files
            raise _unreadable(path, err) from err

    if allow_pickle:
        log.warning("loading %s with full unpickling (weights_only=False): it needs %s",
                    path, ", ".join(names) or "objects weights_only refuses")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:
            raise _unreadable(path, err) from err
    if names:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds Python objects that safe loading refuses: {', '.join(names)}; "
            "expected only tensors, numbers, strings and NumPy arrays. If you trust the file, "
            "pass allow_pickle=True (full unpickling can run arbitrary code)."
        )
    raise _unreadable(path, refused) from refused


def _refused_global(err: BaseException) -> str | None:
    """The global named in torch's weights_only refusal, if it names one."""
    match = _REFUSED.search(str(err))
    return next(g for g in match.groups() if g) if match else None


def _unreadable(path: Path, err: BaseException | None) -> CheckpointError:
    text = str(err).strip() if err is not None else ""
    detail = text.splitlines()[0] if text else "no detail"
    return CheckpointError(
        f"cannot read checkpoint {str(path)!r}: {type(err).__name__}: {detail[:200]}. Expected a file "
        "written by torch.save; the file is damaged, truncated or not a checkpoint. Download or save it again."
    )


def _benign_globals(names: Iterable[str]) -> list | None:
    """The objects behind ``names`` (plus NumPy's dtype and RNG classes), or None if any is not benign."""
    names = list(names)
    if not names:
        return []
    if not all(n in _BENIGN_GLOBALS or _BENIGN_PATTERN.fullmatch(n) for n in names):
        return None
    allowed: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy.core is a deprecated alias of numpy._core
        for name in names:
            module, _, attr = name.rpartition(".")
            try:
                allowed.append((getattr(importlib.import_module(module), attr), name))
            except (ImportError, AttributeError):
                return None
    import numpy as np

    # Instances are rebuilt with BUILD, which needs their classes allow-listed too.
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    allowed += [np.random.RandomState, np.random.Generator]
    return allowed


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _find_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if _is_state_dict(obj.get(key)):
                log.debug("%s: state_dict found under %r", path, key)
                return dict(obj[key])
        found = sorted(map(str, obj))[:_LIST_LIMIT * 2]
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a dict with keys {found} but holds no state_dict; expected "
            f"parameter tensors at the top level or under one of {list(CONTAINER_KEYS)}. "
            "Extract the model weights and save them with torch.save(model.state_dict(), path)."
        )
    raise CheckpointError(
        f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state_dict; expected a dict of "
        "parameter tensors. Save the weights with torch.save(model.state_dict(), path)."
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """``state_dict`` without ``prefix`` when every key has it (repeatedly, for nested wrappers)."""
    state_dict = dict(state_dict)
    while state_dict and all(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def map_hot_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the official HoT extra parameters to hotpatch's names; host keys are left alone.

    ``pos_embed_token`` -> ``hotpatch_prune.pruner.pos_embed``; ``x_token`` ->
    ``hotpatch_recover.recoverer.queries``; ``cross_attention.linear_{q,k,v}.*`` and
    ``cross_attention.proj.*`` -> ``hotpatch_recover.recoverer.{q,k,v,proj}.*``.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, value in strip_prefix(state_dict).items():
        new = key
        for old, ours in HOT_KEY_MAP.items():
            if (old.endswith(".") and key.startswith(old)) or key == old:
                new = ours + key[len(old):]
                break
        if new in mapped:
            raise CheckpointError(
                f"checkpoint has both {key!r} and {new!r}; expected either the official HoT name or "
                "hotpatch's, not both. Remove one of them."
            )
        mapped[new] = value
    return mapped


# --------------------------------------------------------------------------- loading

@dataclass
class LoadReport:
    """What ``load_state_dict`` did: keys loaded, and the ones it could not load."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key matched in name and shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        """The missing / unexpected / mismatched keys as an indented list (empty when ``ok``)."""
        lines = []
        if self.missing:
            lines.append(f"  missing (in the model, not in the checkpoint): {_short(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (in the checkpoint, not in the model): {_short(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} {tuple(c)} in the checkpoint, {tuple(m)} in the model"
                     for k, c, m in self.mismatched]
            lines.append(f"  shape mismatch: {_short(shown, sep='; ')}")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"loaded {len(self.loaded)} tensors from {self.source}"
        return head if self.ok else f"{head}; skipped:\n{self.problems()}"


def _short(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown}{sep}... and {more} more" if more > 0 else shown


def load_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True,
                    frame_keys: Mapping[str, int] | None = None, source: str = "state_dict") -> LoadReport:
    """Load ``state_dict`` into ``model`` and report what did not fit.

    ``frame_keys`` maps parameters indexed by frame to their frame axis (e.g.
    ``{"Temporal_pos_embed": 1}``); a checkpoint whose frame axis differs is refused with the
    frame count it was trained with. A checkpoint of another model (most keys unknown to
    ``model``) or of another size is always refused. With ``strict`` any missing, unexpected
    or mismatched key is an error; otherwise the matching tensors are loaded and the rest
    logged. Raises ``CheckpointError``.
    """
    state_dict = strip_prefix(state_dict)
    own = model.state_dict()
    name = type(model).__name__
    common = [k for k in own if k in state_dict]
    report = LoadReport(
        source=source,
        missing=[k for k in own if k not in state_dict],
        unexpected=[k for k in state_dict if k not in own],
        mismatched=[(k, tuple(state_dict[k].shape), tuple(own[k].shape))
                    for k in common if state_dict[k].shape != own[k].shape],
    )

    if not common or len(common) < len(own) / 2 or len(report.unexpected) > len(common):
        raise CheckpointError(
            f"{source} does not look like a checkpoint of {name}: only {len(common)} of the model's "
            f"{len(own)} keys are in it, and {len(report.unexpected)} of its {len(state_dict)} keys are "
            f"unknown to the model.\n{report.problems()}\nLoad it into the model it was saved from "
            "(hotpatch.models.names() lists the built-in ones)."
        )
    _check_frames(report, frame_keys or {}, source)
    if len(report.mismatched) > len(common) / 2:
        raise CheckpointError(
            f"{source} has the key layout of {name} but other tensor sizes in {len(report.mismatched)} "
            f"of {len(common)} keys: it was saved from a model of another size (width, depth, joints "
            f"or MLP ratio).\n{report.problems()}\nBuild the model with the checkpoint's configuration."
        )
    if strict and not report.ok:
        raise CheckpointError(
            f"{source} does not match {name}: {len(report.missing)} missing, {len(report.unexpected)} "
            f"unexpected and {len(report.mismatched)} mismatched keys.\n{report.problems()}\n"
            f"{_hint(report, own)}Pass strict=False to load the matching tensors only."
        )

    bad = {k for k, _, _ in report.mismatched}
    report.loaded = [k for k in common if k not in bad]
    model.load_state_dict({k: state_dict[k] for k in report.loaded}, strict=False)
    if report.ok:
        log.info("loaded %d tensors from %s into %s", len(report.loaded), source, name)
    else:
        log.warning("%s: loaded %d tensors into %s, skipped:\n%s", source, len(report.loaded), name,
                    report.problems())
    return report


def _check_frames(report: LoadReport, frame_keys: Mapping[str, int], source: str) -> None:
    """Refuse a checkpoint whose frame-indexed parameters have another length."""
    for key, ckpt_shape, model_shape in report.mismatched:
        axis = frame_keys.get(key)
        if axis is None and key in (PRUNE_POS_KEY, RECOVER_QUERY_KEY):
            axis = 1
        if axis is None and _TEMPORAL_NAME.search(key.rsplit(".", 1)[-1]) and len(model_shape) >= 3:
            axis = 1  # a (1, F, C) / (1, F, 1, C) temporal embedding of a model we know nothing about
        if axis is None or len(ckpt_shape) != len(model_shape) or axis >= len(model_shape):
            continue
        others_equal = all(c == m for i, (c, m) in enumerate(zip(ckpt_shape, model_shape)) if i != axis)
        if not others_equal or ckpt_shape[axis] == model_shape[axis]:
            continue
        trained, built = ckpt_shape[axis], model_shape[axis]
        if key == PRUNE_POS_KEY:
            raise CheckpointError(
                f"{source}: checkpoint was trained with f={trained} representative tokens, model patched "
                f"with f={built}; patch with f={trained} ({key} is {ckpt_shape} in the checkpoint, "
                f"{model_shape} in the model)"
            )
        raise CheckpointError(
            f"{source}: checkpoint was trained with F={trained} frames, model built with F={built}; "
            f"build with frames={trained} ({key} is {ckpt_shape} in the checkpoint, {model_shape} in the model)"
        )


def _hint(report: LoadReport, own: Mapping[str, torch.Tensor]) -> str:
    patched_model = any(k.startswith(_PATCH_PREFIXES) for k in own)
    extra = [k for k in report.unexpected if k.startswith(_PATCH_PREFIXES)]
    lacking = [k for k in report.missing if k.startswith(_PATCH_PREFIXES)]
    if extra and not patched_model:
        return ("The checkpoint holds HoT weights (pruner / recoverer): patch the model first with "
                "hotpatch.apply(model, n=..., f=...) using the checkpoint's settings, then load it.\n")
    if PRUNE_POS_KEY in report.unexpected:
        return ("The checkpoint has a learnable positional embedding after pruning (official HoT "
                "MixSTE / MotionBERT): patch with the TPC positional-embedding option enabled.\n")
    if lacking and len(lacking) == len(report.missing):
        return ("The model is patched but the checkpoint has no HoT weights: load the original "
                "checkpoint before hotpatch.apply, or pass strict=False and fine-tune the new modules.\n")
    return ""


def load_checkpoint_file(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                         frame_keys: Mapping[str, int] | None = None,
                         allow_pickle: bool = False) -> LoadReport:
    """``read_state_dict`` + ``map_hot_keys`` + ``load_state_dict``: what the recipes' loaders do."""
    state_dict = map_hot_keys(read_state_dict(path, allow_pickle=allow_pickle))
    return load_state_dict(model, state_dict, strict=strict, frame_keys=frame_keys, source=str(path))
