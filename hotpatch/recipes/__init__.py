"""Former home of the architectures, now :mod:`hotpatch.models`.

Kept so that old imports (``from hotpatch.recipes import mixste``) and models pickled by earlier
versions (which name ``hotpatch.recipes.mixste.MixSTE2``, ``hotpatch.recipes._layers.Mlp``) still
load: each former submodule is the moved module itself, registered under its old name.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from hotpatch.models import get, names

warnings.warn("hotpatch.recipes is deprecated: the architectures moved to hotpatch.models "
              "(e.g. `from hotpatch.models import mixste`); recipe files are in recipes/",
              DeprecationWarning, stacklevel=2)

_MOVED = ("mixste", "motionbert", "mhformer", "_layers", "_common")

for _name in _MOVED:
    sys.modules[f"{__name__}.{_name}"] = _module = importlib.import_module(f"hotpatch.models.{_name}")
    globals()[_name] = _module

__all__ = ["get", "names", "mixste", "motionbert", "mhformer"]
