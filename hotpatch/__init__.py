"""hotpatch: the Hourglass Tokenizer (HoT) as an automatic graph patch for video pose transformers."""

from hotpatch.errors import (
    AlreadyPatchedError,
    AmbiguousFrameAxisError,
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    HotpatchError,
    InputShapeError,
    NoTemporalBlocksError,
    PatchCheckError,
    RewriteError,
    TargetError,
    TraceFailure,
)

from hotpatch._version import __version__

__all__ = [
    "AlreadyPatchedError",
    "AmbiguousFrameAxisError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExportError",
    "HotpatchError",
    "InputShapeError",
    "NoTemporalBlocksError",
    "PatchCheckError",
    "RewriteError",
    "TargetError",
    "TraceFailure",
    "__version__",
]

from hotpatch.patch import Prepared, apply, prepare  # noqa: E402
from hotpatch.prune import TPC, AttentionPrune, MotionPrune, UniformPrune  # noqa: E402
from hotpatch.recover import TRA, LinearRecover, LinearTRA, NearestRecover  # noqa: E402
from hotpatch import profile  # noqa: E402  (the package; calling it calls profile.profile)
from hotpatch import models  # noqa: E402  (hotpatch.models.get(...) after a bare `import hotpatch`)
from hotpatch.profile import compare  # noqa: E402
from hotpatch.saving import load, save, save_model  # noqa: E402
from hotpatch.lift import lift_file, lift_people  # noqa: E402
from hotpatch.pretrained import from_pretrained, save_pretrained  # noqa: E402
from hotpatch.autotune import tune  # noqa: E402
from hotpatch.stream import Stream  # noqa: E402

__all__ += [
    "apply",
    "compare",
    "from_pretrained",
    "lift_file",
    "lift_people",
    "load",
    "profile",
    "save",
    "save_model",
    "Stream",
    "save_pretrained",
    "tune",
    "prepare",
    "Prepared",
    "TPC",
    "TRA",
    "AttentionPrune",
    "LinearRecover",
    "LinearTRA",
    "MotionPrune",
    "NearestRecover",
    "UniformPrune",
]
