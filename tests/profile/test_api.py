"""The public surface of hotpatch.profile: one set of keywords for profile/compare/profile_many,
and ``hotpatch.profile`` both the package and a callable."""

from __future__ import annotations

import importlib
import inspect
import sys

import pytest
import torch
import torch.nn as nn

import hotpatch
from hotpatch.profile import Profile, ProfileOptions, compare, profile, profile_many

# The keyword-only parameters and defaults of profile() and compare() as released.
KEYWORDS = {
    "counters": ("fvcore", "paper"), "fps": True, "device": "cpu", "repeats": 20, "warmup": 3,
    "threads": None, "by_block": False, "blocks": None, "train": False, "pipeline": "seq2seq",
    "memory": True, "frames": None, "compile": None, "progress": None,
}
QUICK = dict(counters="paper", fps=False, memory=False)


def _keywords(func) -> dict:
    params = inspect.signature(func).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("func", [profile, compare, profile_many, hotpatch.profile, hotpatch.compare])
def test_profile_and_compare_take_the_same_keywords_with_their_defaults(func):
    assert _keywords(func) == KEYWORDS


def test_positional_parameters_are_unchanged():
    def positional(func):
        return [p.name for p in inspect.signature(func).parameters.values()
                if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]

    assert positional(hotpatch.profile) == ["model", "example_input"]
    assert positional(hotpatch.compare) == ["original", "patched", "example_input"]


def test_an_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"^compare\(\) got an unexpected keyword argument 'repeat'$"):
        compare(nn.Linear(2, 2), nn.Linear(2, 2), torch.zeros(1, 2), repeat=3)
    with pytest.raises(TypeError, match="positional"):
        profile(nn.Linear(2, 2), torch.zeros(1, 2), ("paper",))  # the options are keyword-only


def test_options_are_one_dataclass_with_the_same_defaults():
    assert {f: getattr(ProfileOptions(), f) for f in KEYWORDS} == KEYWORDS


def test_hotpatch_profile_is_the_package_and_calls_the_function():
    module = importlib.import_module("hotpatch.profile")
    assert hotpatch.profile is module is sys.modules["hotpatch.profile"]
    assert hotpatch.profile.profile is profile and hotpatch.compare is compare
    model, x = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3)), torch.zeros(2, 5, 4)
    called = hotpatch.profile(model, x, **QUICK)
    assert isinstance(called, Profile)
    assert called.flops["paper"].value == profile(model, x, **QUICK).flops["paper"].value == 2 * 2 * 5 * (6 * 4 + 3 * 6)


def test_import_as_gives_the_module():
    import hotpatch.profile as mod

    assert mod.__name__ == "hotpatch.profile" and callable(mod.flops.count)
