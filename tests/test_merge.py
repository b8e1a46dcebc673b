"""Token merging (``prune="merge"``) and its matched recovery (``recover="unmerge"``).

The token modules against brute-force definitions (clusters, weighted means, unmerging),
hypothesis properties of the clustering, the f = F identity bit for bit (modules and patched
models), multi-stage composition of the cluster assignment, the seq2frame centre kept alone,
and the errors for settings that cannot work.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given

import hotpatch
import author_vpts
import frame_use_vpts
import gated_vpts
import wild_vpts
from hotpatch.prune import PRUNERS, TPC, DensityMergePrune, MergePrune, dpc_knn, merge_tokens, nearest_centre
from hotpatch.recover import LinearRecover, UnmergeRecover
from test_token_properties import clips


def brute_force_clusters(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Each frame's nearest centre by Euclidean distance (ties: the earlier centre; a centre: itself)."""
    out = torch.empty(x.shape[:2], dtype=torch.long)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            own = (index[b] == t).nonzero()
            if len(own):
                out[b, t] = own[0, 0]
                continue
            d = [(x[b, t].double() - x[b, c].double()).norm().item() for c in index[b]]
            out[b, t] = min(range(len(d)), key=lambda s: (d[s], s))
    return out


def test_merge_keeps_tpc_centres_and_assigns_every_frame_to_its_nearest_centre():
    x = torch.randn(3, 30, 8, generator=torch.Generator().manual_seed(0))
    tpc, merge = TPC(10), MergePrune(10)
    c = merge.cluster(x)
    assert torch.equal(c.index, tpc.select(x))
    assert torch.equal(c.assign, brute_force_clusters(x, c.index))
    assert torch.equal(c.assign.gather(1, c.index), torch.arange(10).expand(3, -1))  # centres: own cluster


@pytest.mark.parametrize("cls, weighted", [(MergePrune, False), (DensityMergePrune, True)])
def test_merged_tokens_are_the_weighted_cluster_means(cls, weighted):
    x = torch.randn(2, 24, 5, 6, generator=torch.Generator().manual_seed(1))  # (B, F, J, C)
    pruner = cls(8, k=3)
    merged, index, assign = pruner(x)
    density = dpc_knn(x.mean(dim=2), 3).density
    assert merged.shape == (2, 8, 5, 6)
    for b in range(2):
        for s in range(8):
            members = (assign[b] == s).nonzero().flatten()
            w = density[b, members] if weighted else torch.ones(len(members), dtype=torch.float64)
            want = (x[b, members].double() * (w / w.sum()).view(-1, 1, 1)).sum(dim=0)
            torch.testing.assert_close(merged[b, s].double(), want, rtol=1e-5, atol=1e-6)


def test_plain_merge_conserves_the_sum_of_the_tokens():
    x = torch.randn(2, 40, 7, generator=torch.Generator().manual_seed(2))
    merged, _, assign = MergePrune(12)(x)
    sizes = torch.stack([torch.bincount(a, minlength=12) for a in assign]).float()
    torch.testing.assert_close((merged * sizes.unsqueeze(-1)).sum(dim=1), x.sum(dim=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["merge", "merge-density"])
@pytest.mark.parametrize("shape", [(2, 16, 8), (2, 16, 17, 4)])
def test_merging_every_frame_is_the_identity(name, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    merged, index, assign = PRUNERS[name](16)(x)
    assert torch.equal(merged, x)
    assert torch.equal(index, torch.arange(16).expand(2, -1)) and torch.equal(assign, index)


def test_density_weights_do_not_underflow_on_large_features():
    """exp(-d²) of features in the hundreds is 0 in float64; the log-space weights stay finite."""
    x = 300 * torch.randn(2, 20, 6, generator=torch.Generator().manual_seed(4))
    merged, _, assign = DensityMergePrune(5)(x)
    assert torch.isfinite(merged).all()
    for b in range(2):  # each merged token lies inside its members' range
        for s in range(5):
            members = x[b, assign[b] == s]
            assert (merged[b, s] >= members.min(0).values - 1e-3).all() and (merged[b, s] <= members.max(0).values + 1e-3).all()


@pytest.mark.parametrize("keep", [1, 4])
def test_seq2frame_centre_is_a_cluster_of_its_own(keep):
    x = torch.randn(2, 15, 6, generator=torch.Generator().manual_seed(5))
    merged, index, assign = MergePrune(keep, center=7)(x)
    slot = (index == 7).int().argmax(dim=1)
    assert (index == 7).sum(dim=1).tolist() == [1, 1]
    for b in range(2):
        assert torch.equal(merged[b, slot[b]], x[b, 7])  # the centre's own token, bit for bit
        if keep > 1:
            assert (assign[b] == slot[b]).nonzero().flatten().tolist() == [7]


def test_merge_is_batch_invariant_and_deterministic():
    x = torch.randn(4, 27, 17, 8, generator=torch.Generator().manual_seed(6))
    pruner = MergePrune(9)
    merged, index, assign = pruner(x)
    again = pruner(x)
    assert all(torch.equal(a, b) for a, b in zip((merged, index, assign), again))
    for b in range(4):
        m1, i1, a1 = pruner(x[b : b + 1])
        assert torch.equal(i1[0], index[b]) and torch.equal(a1[0], assign[b])
        torch.testing.assert_close(m1[0], merged[b], rtol=0, atol=1e-6)


@given(clips(min_frames=2))
def test_clusters_are_well_formed(case):
    """Every frame in a kept cluster, each centre in its own, the seq2frame centre alone, and
    each frame's centre at least as near to it as any other centre."""
    x, keep, k, center = case
    pruner = MergePrune(keep, k=k, center=center)
    c = pruner.cluster(x)
    assert c.assign.shape == x.shape[:2] and int(c.assign.min()) >= 0 and int(c.assign.max()) < keep
    assert torch.equal(c.assign.gather(1, c.index), torch.arange(keep).expand(x.shape[0], -1))
    dist = dpc_knn(x, k).dist
    to_centres = dist.gather(2, c.index.unsqueeze(1).expand(-1, x.shape[1], -1))
    chosen = to_centres.gather(2, c.assign.unsqueeze(-1)).squeeze(-1)
    if center is None:
        assert (chosen <= to_centres.min(dim=-1).values).all()
        assert torch.isfinite(c.log_weight).all()
    else:
        slot = (c.index == center).int().argmax(dim=1, keepdim=True)
        in_centre = c.assign == slot
        alone = in_centre & torch.isfinite(c.log_weight)  # members of the centre's cluster
        assert torch.equal(alone.sum(dim=1), torch.ones(x.shape[0], dtype=torch.long))
    merged = merge_tokens(x, c.assign, c.log_weight, keep)
    assert torch.isfinite(merged).all()


def test_unmerge_gives_each_frame_its_cluster_token_and_blends_towards_linear():
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(7))
    index = torch.tensor([[0, 3, 6, 9], [1, 2, 5, 9]])
    assign = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 0, 3, 3], [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]])
    pure = UnmergeRecover(10)(x, index, assign)
    assert pure.shape == (2, 10, 3, 5)
    for b in range(2):
        for t in range(10):
            assert torch.equal(pure[b, t], x[b, assign[b, t]])
    half = UnmergeRecover(10, blend=0.5)(x, index, assign)
    torch.testing.assert_close(half, (pure + LinearRecover(10)(x, index)) / 2, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="blend"):
        UnmergeRecover(10, blend=1.5)


@pytest.mark.parametrize("blend", [0.0, 0.5])
def test_unmerge_of_every_frame_is_the_identity(blend):
    x = torch.randn(3, 12, 17, 8, generator=torch.Generator().manual_seed(8))
    index = torch.arange(12).expand(3, -1)
    assert torch.equal(UnmergeRecover(12, blend)(x, index, index), x)


@pytest.mark.parametrize("prune, recover", [("merge", "unmerge"), ("merge-mean", "unmerge-pure"),
                                            ("merge", "linear"), ("tpc", "unmerge")])
@pytest.mark.parametrize("name", ["mixste", "motionbert"])
def test_patched_model_keeping_every_frame_equals_the_original(name, prune, recover):
    model, x = author_vpts.build(name)
    frames = x.shape[1]
    with torch.no_grad():
        want = model.eval()(x)
        for n, f in ((1, frames), ([1, 2], [frames, frames])):
            got = hotpatch.apply(model, n=n, f=f, prune=prune, recover=recover).eval()(x)
            assert torch.equal(got, want), (n, f)


def _assignments(patched: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from hotpatch.engine.rewrite import stage_pruners

    seen = []
    handles = [m.register_forward_hook(lambda m, a, out: seen.append((out[-2], out[-1])))
               for _, m in stage_pruners(patched)]
    with torch.no_grad():
        patched.eval()(x)
    for h in handles:
        h.remove()
    return seen


def test_two_stage_assignment_composes_and_a_full_first_stage_changes_nothing():
    model, x = author_vpts.build("mixste")
    frames = x.shape[1]
    two = hotpatch.apply(model, n=[1, 2], f=[12, 6], prune="merge", recover="unmerge")
    (a1, i1), (a2, i2) = _assignments(two, x)
    assert a1.shape == a2.shape == (x.shape[0], frames) and i1.shape[1] == 12 and i2.shape[1] == 6
    for b in range(x.shape[0]):  # each stage-2 centre is a stage-1 centre, in its own cluster
        assert set(i2[b].tolist()) <= set(i1[b].tolist())
        assert torch.equal(a2[b, i2[b]], torch.arange(6))
        for t in range(frames):  # a frame follows its stage-1 token into that token's stage-2 cluster
            token = (i1[b] == i1[b, a1[b, t]]).nonzero()[0, 0]
            assert a2[b, t] == a2[b, i1[b, token]]
    # sizes: a first stage that keeps every frame (each token one frame) is no stage at all
    full_first = hotpatch.apply(model, n=[1, 2], f=[frames, 6], prune="merge", recover="unmerge").eval()
    one = hotpatch.apply(model, n=2, f=6, prune="merge", recover="unmerge").eval()
    with torch.no_grad():
        torch.testing.assert_close(full_first(x), one(x), rtol=0, atol=1e-6)


def test_selected_frames_hook_still_reads_the_kept_index_last():
    """Evaluation hooks read a pruner's output[-1] as the kept index: the assignment comes before it."""
    model, x = author_vpts.build("mixste")
    patched = hotpatch.apply(model, n=1, f=6, prune="merge", recover="unmerge")
    (assign, index), = _assignments(patched, x)
    assert index.shape == (x.shape[0], 6) and assign.shape == (x.shape[0], x.shape[1])
    assert torch.equal(index, index.sort(dim=1).values) and (index[:, 1:] > index[:, :-1]).all()
    assert torch.equal(assign.gather(1, index), torch.arange(6).expand(x.shape[0], -1))


def test_unmerge_needs_a_clustering_pruner():
    model, x = author_vpts.build("mixste")
    with pytest.raises(hotpatch.ConfigError, match=r"recover='unmerge'.*prune='uniform' makes no clusters.*'merge'"):
        hotpatch.apply(model, n=1, f=6, prune="uniform", recover="unmerge")
    seq2frame = hotpatch.apply(model, n=1, f=6, prune="uniform", recover="unmerge", pipeline="seq2frame")
    assert seq2frame(x).shape[1] == 1  # seq2frame has no recovery: the setting is ignored


def test_unmerge_of_a_reduced_length_stage_is_refused():
    model, x = frame_use_vpts.build("stridedformer")
    with pytest.raises(hotpatch.RewriteError, match=r"recover='unmerge' cannot recover.*strided stage.*recover='linear'"):
        hotpatch.apply(model, n=1, f=18, prune="merge", recover="unmerge", example_input=x[:1])


def test_save_and_load_keep_the_merge_setting(tmp_path):
    from hotpatch.models import mixste

    torch.manual_seed(0)
    model = mixste.build(27, dim=32, depth=2)
    patched = hotpatch.apply(model, n=1, f=9, prune="merge-density", recover="unmerge-pure", prune_pos_embed=True)
    loaded = hotpatch.load(hotpatch.save(patched, tmp_path / "merge.pt"))
    assert loaded.hotpatch_config["prune"] == "merge-density" and loaded.hotpatch_config["recover"] == "unmerge-pure"
    assert isinstance(loaded.hotpatch_prune.pruner, DensityMergePrune) and loaded.hotpatch_prune.assignment
    x = torch.randn(2, 27, 17, 2)
    with torch.no_grad():
        assert torch.equal(patched.eval()(x), loaded(x))


HOSTS = [(wild_vpts, n) for n in ("shape_branch", "freq", "iter_norm", "star_unpack", "head_branch")] + \
    [(gated_vpts, n) for n in gated_vpts.ALL] + \
    [(frame_use_vpts, n) for n in ("graphformer", "mixerformer", "adjacencyformer", "segmentformer", "windowformer",
                                   "einsumformer")]


@pytest.mark.parametrize("module, name", HOSTS, ids=[n for _, n in HOSTS])
def test_merge_and_unmerge_in_every_host_pattern(module, name):
    """Frame-sized layers, windows, splits, gates, branches: merge + unmerge patches at f and is
    the original bit for bit at f = F."""
    model, x = module.build(name)
    with torch.no_grad():
        want = model.eval()(x)
        got = hotpatch.apply(model, n=1, f=9, prune="merge", recover="unmerge", example_input=x[:1])(x)
        assert got.shape == want.shape and torch.isfinite(got).all()
        full = hotpatch.apply(model, n=1, f=x.shape[1], prune="merge", recover="unmerge", example_input=x[:1])
        assert torch.equal(full(x), want)


def _stage_two_io(patched: torch.nn.Module, x: torch.Tensor):
    """The second pruning stage's inputs and outputs in a run of ``patched``."""
    from hotpatch.engine.rewrite import stage_pruners

    (_, second), = stage_pruners(patched)[1:]
    seen = []
    hook = second.register_forward_hook(lambda m, args, out: seen.append((args, out)))
    with torch.no_grad():
        patched.eval()(x)
    hook.remove()
    return second, seen[0]


@pytest.mark.parametrize("prune", ["merge", "merge-density"])
@pytest.mark.parametrize("name", ["mixste", "motionbert"])
def test_a_later_merge_stage_weights_each_token_by_the_frames_it_stands_for(name, prune):
    """Stage 2 of ``prune="merge"``: each token it keeps is the mean of its cluster's tokens, each
    weighted by the number of original frames that stage 1 merged into it; so its token is the
    mean over the original frames of its cluster (tokens of stage 1 weighted equally would not be);
    ``merge-density`` multiplies that weight by the token's DPC-kNN density among stage 2's tokens."""
    from hotpatch.engine.wrappers import features

    model, x = author_vpts.build(name)
    patched = hotpatch.apply(model, n=[1, 2], f=[12, 5], prune=prune, recover="unmerge")
    second, (args, out) = _stage_two_io(patched, x)
    *tokens, assign_in, index_in = args
    *kept, assign_out, _ = out
    lay = second.layouts[0]
    before = lay.to_canonical(tokens[0], index_in.shape[1]).double()  # (B, 12, ..., C)
    after = lay.to_canonical(kept[0], 5).double()
    sizes = torch.stack([torch.bincount(a, minlength=12) for a in assign_in])  # original frames per token
    assert (sizes > 1).any() and (sizes == 1).any()  # unequal weights: the test can tell them apart
    weight = sizes.double()
    if prune == "merge-density":
        canon = [lay.to_canonical(t, 12) for lay, t in zip(second.layouts, tokens)]
        weight = weight * dpc_knn(features(canon), 2).density.double()
    for b in range(x.shape[0]):
        for s in range(5):
            frames = (assign_out[b] == s).nonzero().flatten()  # original frames in cluster s
            members = assign_in[b, frames].unique()  # stage-1 tokens in it
            w = weight[b, members]
            want = (before[b, members] * (w / w.sum()).view(-1, *[1] * (before.dim() - 2))).sum(dim=0)
            torch.testing.assert_close(after[b, s], want, rtol=1e-5, atol=1e-5)


def test_seq2frame_keeps_the_centre_frame_alone_in_a_later_merge_stage_too():
    """Stage 2 of a seq2frame merge: the token of the centre frame leaves the stage unmerged (its
    cluster holds it alone), so the prediction of the centre frame is never averaged away."""
    model, x = author_vpts.build("mixste")
    frames = x.shape[1]
    patched = hotpatch.apply(model, n=[1, 2], f=[12, 5], prune="merge", pipeline="seq2frame")
    second, (args, out) = _stage_two_io(patched, x)
    *tokens, assign_in, index_in = args
    *kept, assign_out, index_out = out
    lay = second.layouts[0]
    before, after = lay.to_canonical(tokens[0], index_in.shape[1]), lay.to_canonical(kept[0], 5)
    centre = frames // 2
    for b in range(x.shape[0]):
        slot_in = (index_in[b] == centre).nonzero().item()  # the centre frame's stage-1 token
        slot_out = (index_out[b] == centre).nonzero().item()
        assert torch.equal(after[b, slot_out], before[b, slot_in])
        assert ((assign_out[b] == slot_out) & (assign_in[b] != slot_in)).sum() == 0  # nobody else joined it
