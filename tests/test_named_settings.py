"""Every ``prune=`` / ``recover=`` name does what its documentation says, checked through the name
(``hotpatch.apply(..., recover="unmerge")``) and not only through the class it maps to: a table
entry that maps a name to the wrong setting (``unmerge`` with no blend) must fail here."""

from __future__ import annotations

import pytest
import torch

import author_vpts
import hotpatch
from hotpatch.engine.wrappers import RecoverAt
from hotpatch.prune import PRUNERS, TPC, DensityMergePrune, MergePrune, UniformPrune
from hotpatch.recover import RECOVERERS

#: What README / apply's docstring promise for each recover name: the blend of unmerging towards
#: linear interpolation (None: not an unmerge).
UNMERGE_NAMES = {"unmerge": 0.5, "unmerge-linear": 0.5, "unmerge-pure": 0.0}
#: The module each prune name builds, and whether its kept tokens are cluster means.
PRUNE_NAMES = {"tpc": (TPC, False), "uniform": (UniformPrune, False), "attention": (None, False),
               "motion": (None, False), "merge": (MergePrune, True), "merge-mean": (MergePrune, True),
               "merge-density": (DensityMergePrune, True)}


def _recovered(model, x, **setting) -> torch.Tensor:
    """What the recovery returns (before the head), so that settings compare without the head."""
    patched = hotpatch.apply(model, n=1, f=9, **setting).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append(out)) for m in patched.modules()
             if isinstance(m, RecoverAt)]
    with torch.no_grad():
        patched(x)
    for h in hooks:
        h.remove()
    assert len(seen) == 1
    return seen[0]


def test_every_registered_name_is_covered_here():
    assert set(PRUNERS) == set(PRUNE_NAMES), "a new prune name needs its documented behaviour tested here"
    unmerges = {r for r in RECOVERERS if r.startswith("unmerge")}
    assert unmerges == set(UNMERGE_NAMES), "a new unmerge name needs its documented blend tested here"


@pytest.mark.parametrize("name", sorted(UNMERGE_NAMES))
def test_each_unmerge_name_blends_as_documented(name):
    """``unmerge`` = halfway between pure unmerging and linear interpolation, through apply."""
    model, x = author_vpts.build("mixste")
    pure = _recovered(model, x, prune="merge", recover="unmerge-pure")
    linear = _recovered(model, x, prune="merge", recover="linear")
    got = _recovered(model, x, prune="merge", recover=name)
    assert not torch.allclose(pure, linear, atol=1e-4)  # the blend is visible on this clip
    torch.testing.assert_close(got, pure + UNMERGE_NAMES[name] * (linear - pure), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PRUNE_NAMES))
def test_each_prune_name_builds_its_documented_pruner(name):
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=9, prune=name, recover="linear")
    pruner = patched.hotpatch_prune.pruner
    cls, merges = PRUNE_NAMES[name]
    assert type(pruner) is (cls or PRUNERS[name]) and pruner.keep == 9
    assert bool(getattr(pruner, "merges", False)) == merges


def test_merge_mean_is_merge():
    model, x = author_vpts.build("mixste")
    with torch.no_grad():
        a = hotpatch.apply(model, n=1, f=9, prune="merge", recover="unmerge").eval()(x)
        b = hotpatch.apply(model, n=1, f=9, prune="merge-mean", recover="unmerge").eval()(x)
    assert torch.equal(a, b)


def test_pipeline_auto_is_seq2seq_and_k_reaches_the_pruner_of_every_stage():
    model, x = author_vpts.build("mixste")
    with torch.no_grad():
        auto = hotpatch.apply(model, n=1, f=9, pipeline="auto", recover="linear").eval()
        seq = hotpatch.apply(model, n=1, f=9, pipeline="seq2seq", recover="linear").eval()
        assert auto.hotpatch_config["pipeline"] == "seq2seq" and torch.equal(auto(x), seq(x))
    from hotpatch.engine.rewrite import stage_pruners

    for k in (1, 4):
        patched = hotpatch.apply(model, n=[1, 2], f=[12, 6], k=k, prune="merge", recover="unmerge")
        assert [m.pruner.k for _, m in stage_pruners(patched)] == [k, k]


@pytest.mark.parametrize("name", RECOVERERS)
def test_whether_a_recovery_reads_the_cluster_assignment_is_decided_by_its_module(name):
    """One decision: ``reads_assignment`` (which the cut pass and the argument check use) is the
    ``needs_assignment`` of the module the name builds (which the recovery pass reads)."""
    from hotpatch.engine.config import PatchConfig
    from hotpatch.engine.wrappers import make_recoverer, needs_assignment
    from hotpatch.recover import reads_assignment

    cfg = PatchConfig(n=1, f=3, frames=9, pipeline="seq2seq", prune="uniform", recover=name, k=2)
    built = make_recoverer(cfg, dim=8, heads=2)
    assert reads_assignment(name) == bool(getattr(built, "needs_assignment", False))
    assert needs_assignment(cfg) == reads_assignment(name)
    assert reads_assignment(name) == name.startswith("unmerge")  # what the docs say
