"""Where a call comes from: library code (torch, einops, hotpatch) or the user's model code.

Tracing errors and opaque calls are reported at the user's line, so the engine walks stack frames
past library frames; the architectures in hotpatch/models count as user code although they are
installed inside hotpatch.
"""

from __future__ import annotations

import types

import einops
import torch

_LIBRARY_DIRS = tuple(p.rsplit("/", 1)[0] + "/" for p in (torch.__file__, einops.__file__))
_PACKAGE_DIR = __file__.rsplit("/", 2)[0] + "/"  # hotpatch/, above engine/


def is_library(filename: str) -> bool:
    """Frames of torch, einops and hotpatch itself; model code is not library code (the
    architectures are installed inside the hotpatch package, in models/, so only its own modules count)."""
    if filename.startswith(_PACKAGE_DIR):
        return not filename.startswith(_PACKAGE_DIR + "models/")
    return filename.startswith(_LIBRARY_DIRS)


def user_frame(frame: types.FrameType | None) -> types.FrameType | None:
    """The innermost frame at or above ``frame`` that is not library code."""
    while frame is not None and is_library(frame.f_code.co_filename):
        frame = frame.f_back
    return frame
