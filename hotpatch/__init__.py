"""hotpatch: the Hourglass Tokenizer (HoT) as an automatic graph patch for video pose transformers."""

from hotpatch.errors import (
    AmbiguousFrameAxisError,
    CheckpointError,
    ConfigError,
    HotpatchError,
    InputShapeError,
    NoTemporalBlocksError,
    RewriteError,
    TraceFailure,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousFrameAxisError",
    "CheckpointError",
    "ConfigError",
    "HotpatchError",
    "InputShapeError",
    "NoTemporalBlocksError",
    "RewriteError",
    "TraceFailure",
    "__version__",
]

from hotpatch.patch import apply  # noqa: E402
from hotpatch.prune import TPC, AttentionPrune, MotionPrune, UniformPrune  # noqa: E402
from hotpatch.recover import TRA, LinearRecover, NearestRecover  # noqa: E402

__all__ += [
    "apply",
    "TPC",
    "TRA",
    "AttentionPrune",
    "LinearRecover",
    "MotionPrune",
    "NearestRecover",
    "UniformPrune",
]
