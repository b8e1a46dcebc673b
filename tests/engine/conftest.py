"""Fixtures shared by the engine tests."""

import importlib

import pytest

# the module, also where hotpatch.engine exports a function of the same name
analyse = importlib.import_module("hotpatch.engine.analyse")


@pytest.fixture(params=["fake", "real"])
def probe_mode(request, monkeypatch):
    """Probe and check on fake tensors (as for paper-size models) or on real ones (as for tiny ones)."""
    monkeypatch.setattr(analyse, "FAKE_ABOVE", 0 if request.param == "fake" else float("inf"))
    return request.param
