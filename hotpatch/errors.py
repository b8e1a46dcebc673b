"""Errors raised by hotpatch. Every message says what was found, what was expected and what to do."""

from __future__ import annotations


class HotpatchError(Exception):
    """Base class of every error hotpatch raises on purpose."""


class ConfigError(HotpatchError, ValueError):
    """A bad argument: n, f, k, pipeline, prune or recover out of range or unknown."""


class TraceFailure(HotpatchError):
    """The model could not be traced by torch.fx."""


class AlreadyPatchedError(HotpatchError):
    """The model given to ``apply``/``prepare`` is (or contains) a model hotpatch already patched."""


class InputShapeError(HotpatchError):
    """The input shape was not given and could not be inferred, or the model rejected it."""


class NoTemporalBlocksError(HotpatchError):
    """No transformer block that attends across frames was found."""


class AmbiguousFrameAxisError(HotpatchError):
    """The frame axis cannot be told apart from another axis of the same size."""


class RewriteError(HotpatchError):
    """The model cannot be patched as it is: the analysis found a frame-count use no rewrite pass
    handles (the message names it and its layer), or a cut that cannot be placed."""


class PatchCheckError(RewriteError):
    """The rewritten graph failed a check after the rewrite (a pass's own check, or the check run
    of the patched model). The analysis should have refused this model before the rewrite: this
    is a bug in hotpatch, and the message asks for the model to be reported."""


class CheckpointError(HotpatchError):
    """A checkpoint could not be read or does not match the model."""


class DataError(HotpatchError):
    """A data file is missing, lacks a key, or holds arrays of the wrong shape."""


class TargetError(HotpatchError):
    """A command-line TARGET (recipe name, file or ``module:Class``) could not be turned into a model."""


class ExportError(HotpatchError):
    """A model could not be exported (ONNX, torch.export), or its export computes something else."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file does not exist."""


class DataKeyError(DataError, LookupError):
    """A data file lacks a key (an array, a subject, an action)."""


class DataShapeError(DataError, ValueError):
    """An array in a data file (or passed in) has the wrong shape or type."""


class OutputError(HotpatchError, OSError):
    """A file could not be written where asked (no such folder, a file in the way, no permission, a full disk)."""
