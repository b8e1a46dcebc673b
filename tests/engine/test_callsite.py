"""Where a call comes from (hotpatch/engine/callsite.py): torch, einops and hotpatch's own modules
are library code; the recipes (installed inside hotpatch) and the user's files are not, so errors
and opaque calls are reported at the user's line."""

from __future__ import annotations

import os
import sys
import types

import einops
import pytest
import torch

import hotpatch
import wild_vpts
from hotpatch.engine import callsite, mixing
from hotpatch.models import mixste

PACKAGE = os.path.dirname(hotpatch.__file__)


@pytest.mark.parametrize("path, library", [
    (torch.__file__, True),
    (torch.fx.__file__, True),
    (einops.__file__, True),
    (mixing.__file__, True),  # hotpatch/engine/
    (hotpatch.__file__, True),  # hotpatch/ itself
    (mixste.__file__, False),  # a recipe: model code, although installed inside hotpatch
    (wild_vpts.__file__, False),
    (__file__, False),
    ("/home/someone/my_vpt/model.py", False),  # USER_FILE
    (os.path.join(os.path.dirname(PACKAGE), "hotpatch_extra", "model.py"), False),  # a sibling package
])
def test_library_code_is_torch_einops_and_hotpatch_but_not_its_recipes(path, library):
    assert callsite.is_library(path) is library


USER_FILE = "/home/someone/my_vpt/model.py"


def _chain(*filenames: str) -> types.FrameType:
    """Frames that say they run in ``filenames``, each calling the next; the innermost is returned."""
    inner = None
    for name in reversed(filenames):
        namespace: dict = {"sys": sys, "inner": inner}
        exec(compile("def here():\n    return inner() if inner else sys._getframe()\n", name, "exec"), namespace)
        inner = namespace["here"]
    return inner()


def test_user_frame_walks_past_library_frames_to_the_user_code_that_called_them():
    frame = _chain(USER_FILE, mixing.__file__, torch.__file__)  # user code -> hotpatch -> torch
    assert frame.f_code.co_filename == torch.__file__
    found = callsite.user_frame(frame)
    assert found is frame.f_back.f_back and found.f_code.co_filename == USER_FILE
    from_here = callsite.user_frame(_chain(mixing.__file__, einops.__file__))
    assert from_here.f_code.co_filename == __file__ and from_here.f_code.co_name == "_chain"


def test_user_frame_stops_at_a_recipe_and_at_user_code():
    in_recipe = _chain(mixste.__file__)
    assert callsite.user_frame(in_recipe) is in_recipe
    in_user_file = _chain(USER_FILE)
    assert callsite.user_frame(in_user_file) is in_user_file


def test_user_frame_of_nothing_is_nothing():
    assert callsite.user_frame(None) is None
