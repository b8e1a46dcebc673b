"""Fixtures shared by the engine tests."""

import pytest

from hotpatch.engine import analyse


@pytest.fixture(params=["fake", "real"])
def probe_mode(request, monkeypatch):
    """Probe and check on fake tensors (as for paper-size models) or on real ones (as for tiny ones)."""
    monkeypatch.setattr(analyse, "FAKE_ABOVE", 0 if request.param == "fake" else float("inf"))
    return request.param
