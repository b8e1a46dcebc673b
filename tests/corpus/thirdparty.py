"""Load one module file of an installed third-party package without importing the package whole.

Several packages of the corpus import torchvision (or a chain of other packages) at the top of
their ``__init__``; torchvision from PyPI does not load against the CPU torch build. Their model
code itself needs none of it, so :func:`load_file` runs just the model's own file, found in the
installed distribution, with the package's parents present as empty packages (their real
``__path__``, their ``__init__`` not run) and a few named imports stubbed for that load only.
The third-party code is run as installed, never edited.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import pytest

_LOADED: dict[str, types.ModuleType] = {}


def package_dir(package: str) -> Path:
    """The folder of the installed top-level ``package`` (its ``__init__`` is not run)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed (pip install the 'corpus' extra: see tests/corpus/README.md)")
    return Path(next(iter(spec.submodule_search_locations)))


def version(distribution: str) -> str:
    """The installed version of ``distribution`` (a PyPI name), or ``"missing"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _empty_package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__package__ = name
    return module


def load_file(module: str, stubs: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """Run the file of the dotted ``module`` (e.g. ``"mmpose.models.backbones.dstformer"``) from
    the installed package and return it; loaded once per process.

    Its parent packages are made present without running their ``__init__`` (so relative imports
    of sibling files work), and ``stubs`` (module name -> module) stand in for imports that would
    pull torchvision; both are removed from ``sys.modules`` again after the load."""
    if module in _LOADED:
        return _LOADED[module]
    parts = module.split(".")
    root = package_dir(parts[0])
    path = root.joinpath(*parts[1:]).with_suffix(".py")
    added = {}
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            added[name] = _empty_package(name, root.joinpath(*parts[1:i]))
    for name, stub in (stubs or {}).items():
        if name not in sys.modules:
            added[name] = stub
    sys.modules.update(added)
    try:
        spec = importlib.util.spec_from_file_location(module, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded
        spec.loader.exec_module(loaded)
    finally:
        for name, stub in added.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]
    _LOADED[module] = loaded
    return loaded


def stub(name: str, **attributes) -> types.ModuleType:
    """A module ``name`` holding only ``attributes``."""
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def require(*distributions: str) -> None:
    """Skip the calling test when a corpus package is missing, except in CI (``.ci/run`` installs
    them: there a missing package is a failure, not a skip)."""
    import os

    missing = [d for d in distributions if version(d) == "missing"]
    if missing:
        message = f"corpus packages not installed: {', '.join(missing)} (see tests/corpus/README.md)"
        if os.environ.get("CI"):
            raise ModuleNotFoundError(message)
        pytest.skip(message)
