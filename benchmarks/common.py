"""Helpers the deployment benchmarks share (``deploy.py``, ``stream.py``, ``gpu.py``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def original_and_patched(recipe: str, overrides: dict, hot: dict) -> tuple[torch.nn.Module, torch.nn.Module, int, int]:
    """(original, patched, F, input channels): ``recipe`` built with ``overrides`` from seed 0 and patched
    with ``hot``, both in eval mode."""
    import hotpatch
    from hotpatch.models import get

    torch.manual_seed(0)
    original = get(recipe).build(**overrides).eval()
    patched = hotpatch.apply(original, **hot).eval()
    frames, _, channels = patched.hotpatch_config["input_shape"]
    return original, patched, frames, channels


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reruns this benchmark from the repository root."""
    args = argv if argv is not None else sys.argv[1:]
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script, ROOT), *args])


def names(parser: argparse.ArgumentParser, text: str, known: Iterable[str], flag: str) -> list[str]:
    """``text`` split at commas, each checked against ``known`` (an argparse error names the unknown one)."""
    known = list(known)
    picked = [n for n in text.split(",") if n]
    for name in picked:
        if name not in known:
            parser.error(f"{flag}: unknown {name!r}; expected some of {', '.join(known)}")
    return picked


@contextlib.contextmanager
def benchmark_run(threads: int | None) -> Iterator[None]:
    """Progress logging at INFO (hotpatch's own at WARNING) and ``threads`` torch threads, restored after."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet = logging.getLogger("hotpatch")
    level, before = quiet.level, torch.get_num_threads()
    quiet.setLevel(logging.WARNING)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        quiet.setLevel(level)
        torch.set_num_threads(before)
