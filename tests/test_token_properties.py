"""Properties of the token modules (``hotpatch.prune``, ``hotpatch.recover``) over random shapes,
f, k and seeds, checked with hypothesis.

Pruners: f sorted distinct indices in range, deterministic, batch-invariant (a sample's
indices depend on that sample only), the centre frame kept for seq2frame, and stages that
compose (each later stage keeps a subset of the frames the previous one kept). Recoverers
(nearest, linear): shapes kept, exact on the kept frames, every other frame the nearest kept
token / the linear interpolation of the two around it.

CI runs the ``ci`` profile (fixed examples: ``derandomize``); ``HYPOTHESIS_PROFILE=dev``
runs more, with fresh random examples.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hotpatch.layout import gather_frames
from hotpatch.prune import PRUNERS, TPC, pool_tokens
from hotpatch.recover import LinearRecover, LinearTRA, NearestRecover

settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NAMES = sorted(PRUNERS)
GATHERING = [n for n in NAMES if not PRUNERS[n].merges]  # forward returns the selected tokens themselves


@st.composite
def clips(draw, min_frames: int = 1, max_frames: int = 40):
    """(features (B, F, C), keep, k, centre or None): gaussian features, or small integers
    (many equal distances and scores: the tie-breaks are exercised)."""
    b = draw(st.integers(1, 4))
    frames = draw(st.integers(min_frames, max_frames))
    c = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):
        x = torch.randn(b, frames, c, generator=gen)
    else:
        x = torch.randint(-2, 3, (b, frames, c), generator=gen).float()
    keep = draw(st.integers(1, frames))
    k = draw(st.integers(1, 6))
    center = draw(st.none() | st.integers(0, frames - 1))
    return x, keep, k, center


def make(name: str, keep: int, k: int, center: int | None = None):
    cls = PRUNERS[name]
    return cls(keep, k=k, center=center) if issubclass(cls, TPC) else cls(keep, center=center)


def assert_valid(index: torch.Tensor, batch: int, keep: int, frames: int) -> None:
    """(batch, keep) long indices in [0, frames), strictly increasing per sample."""
    assert index.shape == (batch, keep) and index.dtype == torch.long
    assert (index >= 0).all() and (index < frames).all()
    assert (index[:, 1:] > index[:, :-1]).all()  # sorted and distinct


# ------------------------------------------------------------------------------- pruners


@pytest.mark.parametrize("name", NAMES)
@given(clip=clips())
@example(clip=(torch.ones(2, 1, 3), 1, 2, None))  # one frame (a later stage after f=1): kept
@example(clip=(torch.zeros(3, 9, 2), 4, 2, 4))  # every score tied
def test_pruners_return_f_sorted_distinct_indices_deterministically(name, clip):
    x, keep, k, center = clip
    pruner = make(name, keep, k, center)
    index = pruner.select(x)
    assert_valid(index, x.shape[0], keep, x.shape[1])
    assert torch.equal(pruner.select(x.clone()), index)  # deterministic
    assert torch.equal(make(name, keep, k, center).select(x), index)  # no state between instances
    if center is not None:
        assert (index == center).any(dim=1).all()  # seq2frame: the centre frame is kept
    if keep == x.shape[1]:
        assert torch.equal(index, torch.arange(keep).expand_as(index))


@pytest.mark.parametrize("name", NAMES)
@given(clip=clips(), data=st.data())
def test_pruners_are_batch_invariant(name, clip, data):
    """A sample's indices are the same alone, in the batch, and with the batch reordered."""
    x, keep, k, center = clip
    pruner = make(name, keep, k, center)
    index = pruner.select(x)
    for i in range(x.shape[0]):
        assert torch.equal(pruner.select(x[i : i + 1])[0], index[i])
    order = torch.tensor(data.draw(st.permutations(range(x.shape[0]))))
    assert torch.equal(pruner.select(x[order]), index[order])


@pytest.mark.parametrize("name", GATHERING)  # merging: tests/test_merge.py
@given(clip=clips(), joints=st.integers(1, 5))
def test_pruner_forward_keeps_the_selected_tokens(name, clip, joints):
    """forward on (B, F, J, C) tokens selects on the joint-pooled features and gathers them."""
    x, keep, k, center = clip
    tokens = x.unsqueeze(2).repeat(1, 1, joints, 1) + torch.linspace(0, 1, joints).view(1, 1, -1, 1)
    pruner = make(name, keep, k, center)
    kept, index = pruner(tokens)
    assert torch.equal(index, pruner.select(pool_tokens(tokens)))
    assert kept.shape == (x.shape[0], keep, joints, x.shape[2])
    for s in range(x.shape[0]):
        assert torch.equal(kept[s], tokens[s, index[s]])


@st.composite
def stage_lists(draw):
    """A clip and 2-3 decreasing keep counts (the f of each stage)."""
    x, keep, k, center = draw(clips())
    counts = sorted(draw(st.lists(st.integers(1, x.shape[1]), min_size=2, max_size=3)), reverse=True)
    return x, counts, k, center


@pytest.mark.parametrize("name", NAMES)
@given(stages=stage_lists(), second=st.sampled_from(NAMES))
def test_stages_compose_to_a_subset_of_the_previous_stage(name, stages, second):
    """Stage i+1 selects among the tokens stage i kept (its features gathered by stage i's
    indices, the centre passed as its position among them); the composed original indices are
    valid, a subset of stage i's, keep the centre, and depend on each sample only."""
    x, counts, k, center = stages

    def run(feats: torch.Tensor) -> list[torch.Tensor]:
        index = make(name, counts[0], k, center).select(feats)
        chain = [index]
        for keep in counts[1:]:
            kept = gather_frames(feats, index)
            position = None if center is None else (index < center).sum(dim=1)
            local = make(second, keep, k).select(kept, position)
            index = index.gather(1, local)
            chain.append(index)
        return chain

    chain = run(x)
    for before, after, keep in zip(chain, chain[1:], counts[1:]):
        assert_valid(after, x.shape[0], keep, x.shape[1])
        assert all(torch.isin(after[s], before[s]).all() for s in range(x.shape[0]))
        if center is not None:
            assert (after == center).any(dim=1).all()
    for s in range(x.shape[0]):
        alone = run(x[s : s + 1])
        assert all(torch.equal(a[0], b[s]) for a, b in zip(alone, chain))


# ----------------------------------------------------------------------------- recoverers


@st.composite
def kept_tokens(draw):
    """(tokens (B, f, *rest, C), sorted distinct index (B, f), F)."""
    b = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 30))
    keep = draw(st.integers(1, frames))
    rest = draw(st.lists(st.integers(1, 3), max_size=2))
    c = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    index = torch.stack([torch.randperm(frames, generator=gen)[:keep].sort().values for _ in range(b)])
    x = torch.randn(b, keep, *rest, c, generator=gen)
    return x, index, frames


def _expected(x: torch.Tensor, index: torch.Tensor, frames: int, linear: bool) -> torch.Tensor:
    """Per frame, by a loop: the kept token there; else the nearest kept token (ties to the
    earlier) or the linear interpolation of the kept tokens around it (the end token outside)."""
    out = torch.empty(x.shape[0], frames, *x.shape[2:], dtype=x.dtype)
    for s in range(x.shape[0]):
        kept = index[s].tolist()
        for t in range(frames):
            before = [i for i, p in enumerate(kept) if p <= t]
            after = [i for i, p in enumerate(kept) if p >= t]
            if not before or not after:  # outside the kept range: the end token
                out[s, t] = x[s, (before or after)[-1 if before else 0]]
                continue
            i0, i1 = before[-1], after[0]
            p0, p1 = kept[i0], kept[i1]
            if i0 == i1:
                out[s, t] = x[s, i0]
            elif linear:
                w = (t - p0) / (p1 - p0)
                out[s, t] = x[s, i0] * (1 - w) + x[s, i1] * w
            else:
                out[s, t] = x[s, i1] if t - p0 > p1 - t else x[s, i0]
    return out


@given(case=kept_tokens())
def test_nearest_recovery_is_exact_on_kept_frames_and_copies_the_nearest(case):
    x, index, frames = case
    out = NearestRecover(frames)(x, index)
    assert out.shape == (x.shape[0], frames, *x.shape[2:])
    assert torch.equal(gather_frames(out, index), x)  # exact on the kept frames
    assert torch.equal(out, _expected(x, index, frames, linear=False))


@given(case=kept_tokens())
def test_linear_recovery_is_exact_on_kept_frames_and_interpolates_between(case):
    x, index, frames = case
    out = LinearRecover(frames)(x, index)
    assert out.shape == (x.shape[0], frames, *x.shape[2:])
    assert torch.equal(gather_frames(out, index), x)  # exact on the kept frames
    torch.testing.assert_close(out, _expected(x, index, frames, linear=True), atol=1e-5, rtol=1e-5)


@given(case=kept_tokens(), heads=st.sampled_from([1, 2]))
def test_linear_tra_at_initialisation_is_linear_recovery_bit_for_bit(case, heads):
    x, index, frames = case
    dim = x.shape[-1] * heads
    x = x.repeat_interleave(heads, dim=-1)
    torch.manual_seed(0)
    out = LinearTRA(dim, frames, heads=heads)(x, index)
    assert torch.equal(out, LinearRecover(frames)(x, index))
