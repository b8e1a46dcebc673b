import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))  # the test VPTs
# One thread: the test models are small, and on a shared 2-core machine two threads waiting on
# each other made some tests 100x slower. Timing code restores the count it changes.
torch.set_num_threads(1)

# Variables through which the terminal (or CI) changes rich's output: width, colour, tty.
_TERMINAL_ENV = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                 "FORCE_TERMINAL", "JUPYTER_COLUMNS", "JUPYTER_LINES")


@pytest.fixture(autouse=True)
def _machine_independent_terminal(monkeypatch):
    """CLI output must not depend on the terminal the tests run in."""
    for name in _TERMINAL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def trained_lifter():
    """The small trained lifter of ``tinypose.trained_lifter`` (F=27), built once per test session."""
    import tinypose

    return tinypose.trained_lifter(27)
