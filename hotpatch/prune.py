"""Token pruning: pick ``f`` of ``F`` frames from pooled per-frame features.

Every pruner is a plain ``nn.Module`` with ``select(features) -> index``: ``features`` is a
canonical (B, F, C) tensor, ``index`` a (B, f) long tensor of frame indices sorted in time.
Selection is batched, deterministic and per sample (the other samples of a batch never
change a sample's choice). ``forward`` works on (B, F, C) or (B, F, J, C) tokens directly and
returns the kept tokens and their indices.

* :class:`TPC` — the paper's token pruning cluster (DPC-kNN cluster centres).
* :class:`UniformPrune` — evenly spaced frames.
* :class:`AttentionPrune` — frames that receive the most parameter-free self-attention.
* :class:`MotionPrune` — frames whose features change most from the previous frame.
* :class:`MergePrune` — TPC's clusters, each kept token the mean of its cluster's members
  instead of the centre alone (token merging; :class:`DensityMergePrune` weights them by
  density); with the cluster assignment of every frame, which ``recover="unmerge"`` uses to
  give each frame its cluster's token.

Clustering pruners (TPC and its merging variants) also offer ``cluster(features, center,
log_sizes) -> Clusters``: the kept centres, every frame's cluster and the merge weights.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn

from hotpatch.layout import gather_frames


def pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, N, N) between the rows of ``x`` (B, N, C), in float64.

    Computed from the Gram matrix (one batched matmul: fast), then made exactly symmetric
    with an exact zero diagonal, so that equal distances (every mutual-nearest pair) compare
    equal and the tie-break in :func:`dpc_knn_scores` is exact, not numerical noise.
    """
    x = x.double()
    gram = x @ x.transpose(1, 2)
    gram = (gram + gram.transpose(1, 2)) / 2
    norms = gram.diagonal(dim1=1, dim2=2)
    squared = (norms.unsqueeze(2) + norms.unsqueeze(1) - 2 * gram).clamp_min(0)
    diagonal = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    return squared.masked_fill(diagonal, 0.0).sqrt()  # exact zeros, no in-place write on a view


def dpc_knn_scores(x: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Density-peaks clustering scores of the tokens ``x`` (B, N, C).

    Returns ``(score, density, delta)``, each (B, N): distances are divided by sqrt(C);
    density = exp(-mean squared distance to the k nearest tokens, the token itself included);
    delta = distance to the nearest denser token (the densest token gets its largest distance);
    score = density * delta. Equal densities are ordered by index (lower index counts as
    denser), so exactly one token has no denser one and no random noise is needed.
    """
    score, density, delta, _, _ = dpc_knn(x, k)
    return score, density, delta


class DPC(NamedTuple):
    """What DPC-kNN computes for tokens (B, N, C): the scores of :func:`dpc_knn_scores`, the
    (scaled) distances (B, N, N) and the log-density (B, N), exact where the density underflows."""

    score: torch.Tensor
    density: torch.Tensor
    delta: torch.Tensor
    dist: torch.Tensor
    log_density: torch.Tensor


def dpc_knn(x: torch.Tensor, k: int = 2) -> DPC:
    """:func:`dpc_knn_scores` plus the distances and log-densities it computed on the way."""
    b, n, c = x.shape
    dist = pairwise_distance(x) / math.sqrt(c)
    k = min(k, n)
    nearest = dist.topk(k, dim=-1, largest=False).values
    log_density = -(nearest**2).mean(dim=-1)
    density = torch.exp(log_density)
    rho_i = density.unsqueeze(2)
    rho_j = density.unsqueeze(1)
    pos = torch.arange(n, device=x.device)
    earlier = (pos.unsqueeze(0) < pos.unsqueeze(1)).unsqueeze(0)  # [i, j]: j < i
    denser = (rho_j > rho_i) | ((rho_j == rho_i) & earlier)
    inf = torch.full_like(dist, float("inf"))
    delta = torch.where(denser, dist, inf).min(dim=-1).values
    densest = ~denser.any(dim=-1)
    delta = torch.where(densest, dist.max(dim=-1).values, delta)
    return DPC(density * delta, density, delta, dist, log_density)


def top_frames(score: torch.Tensor, keep: int, center: int | torch.Tensor | None = None) -> torch.Tensor:
    """Indices (B, keep) of the highest scores, ties to the earlier frame, sorted in time.

    With ``center`` set (a frame, or one frame per sample as a (B,) tensor), that frame is
    always kept (it takes one of the ``keep`` places).
    Compiled or exported, the order is each frame's rank (how many frames beat it: a higher
    score, or an equal score earlier in time): the ranks are distinct, so any sort of them
    (ONNX's TopK, a compiled kernel) gives the same frames without a stable sort, which
    ONNX lacks. Eager, a stable sort does the same in fewer kernel launches.
    """
    score = score.float()
    if center is not None:
        frames = torch.arange(score.shape[-1], device=score.device)
        is_center = frames == (center.unsqueeze(-1) if isinstance(center, torch.Tensor) else center)
        score = torch.where(is_center, torch.full_like(score, float("inf")), score)
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        n = score.shape[-1]
        pos = torch.arange(n, device=score.device)
        s_i, s_j = score.unsqueeze(2), score.unsqueeze(1)  # [b, i, j]
        beats = (s_j > s_i) | ((s_j == s_i) & (pos.view(1, 1, n) < pos.view(1, n, 1)))
        order = torch.sort(beats.sum(dim=-1), dim=-1).indices  # ranks are distinct: 0 .. n-1
    else:  # eager: one stable sort launches fewer kernels; it orders exactly as the ranks do
        order = torch.sort(score, dim=-1, descending=True, stable=True).indices
    return torch.sort(order[:, :keep], dim=-1).values


def pool_tokens(x: torch.Tensor) -> torch.Tensor:
    """Average (B, F, ..., C) tokens over every axis between frames and channels."""
    return x.flatten(2, -2).mean(dim=2) if x.dim() > 3 else x


class FramePruner(nn.Module):
    """Base class: keeps ``keep`` frames; ``center`` (an index) is always kept when set.

    ``select(features, center)`` may override the centre per call, e.g. with one position per
    sample (a (B,) tensor) when a later pruning stage must keep the frame an earlier one kept.
    """

    clusters = False  # offers cluster(): every frame's cluster (recover="unmerge" needs it)
    merges = False  # kept tokens are cluster means, not the centres' own tokens

    def __init__(self, keep: int, center: int | None = None) -> None:
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep
        self.center = center

    def select(  # pragma: no cover - abstract
        self, features: torch.Tensor, center: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def _center(self, center: int | torch.Tensor | None) -> int | torch.Tensor | None:
        return self.center if center is None else center

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prune tokens (B, F, C) or (B, F, J, C); returns ``(kept tokens, index)``."""
        index = self.select(pool_tokens(x))
        return gather_frames(x, index), index

    def extra_repr(self) -> str:
        return f"keep={self.keep}, center={self.center}"


class TPC(FramePruner):
    """Token pruning cluster (HoT, Sec. 3.1): keep the ``keep`` DPC-kNN cluster centres.

    Parameter-free unless ``pos_embed_dim`` is given: then a zero-initialised learnable
    (1, keep, C) positional embedding is added to the kept tokens, as the official HoT
    MixSTE does after pruning (so its checkpoints load).
    """

    def __init__(
        self, keep: int, k: int = 2, center: int | None = None, pos_embed_dim: int | None = None
    ) -> None:
        super().__init__(keep, center)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, keep, pos_embed_dim)) if pos_embed_dim else None
        )

    clusters = True

    @torch.no_grad()
    def select(self, features: torch.Tensor, center: int | torch.Tensor | None = None) -> torch.Tensor:
        score, _, _ = dpc_knn_scores(features, self.k)
        return top_frames(score, self.keep, self._center(center))

    @torch.no_grad()
    def cluster(self, features: torch.Tensor, center: int | torch.Tensor | None = None,
                log_sizes: torch.Tensor | None = None) -> Clusters:
        """The same centres as :meth:`select`, every frame's cluster and its merge weight.

        ``log_sizes`` (B, N): the log of how many original frames each token already stands for
        (a later stage of a multi-stage schedule); a merge weights each token by it.
        """
        center = self._center(center)
        dpc = dpc_knn(features, self.k)
        index = top_frames(dpc.score, self.keep, center)
        assign, member = nearest_centre(dpc.dist, index, center)
        log_weight = self.log_weights(dpc, log_sizes)
        log_weight = torch.where(member, log_weight, torch.full_like(log_weight, float("-inf")))
        return Clusters(index, assign, log_weight)

    def log_weights(self, dpc: DPC, log_sizes: torch.Tensor | None) -> torch.Tensor:
        """Log of each token's weight in its cluster's mean: its size (1 by default)."""
        zero = torch.zeros_like(dpc.log_density)
        return zero if log_sizes is None else zero + log_sizes.to(zero.dtype)

    def add_pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Add the optional positional embedding to canonical kept tokens (B, f, ..., C)."""
        if self.pos_embed is None or x.shape[-1] != self.pos_embed.shape[-1]:
            return x
        pe = self.pos_embed.view(1, self.keep, *([1] * (x.dim() - 3)), -1)
        return x + pe

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, index = super().forward(x)
        return self.add_pos_embed(kept), index

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"


class Clusters(NamedTuple):
    """A clustering pruner's choice: ``index`` (B, f) the kept centres sorted in time,
    ``assign`` (B, N) every frame's cluster (a position in ``index``: each centre is in its own
    cluster), ``log_weight`` (B, N) each frame's log weight in its cluster's mean (-inf: the
    frame joins no mean, e.g. a frame kept out of the seq2frame centre's cluster when no other
    cluster exists)."""

    index: torch.Tensor
    assign: torch.Tensor
    log_weight: torch.Tensor


def nearest_centre(
    dist: torch.Tensor, index: torch.Tensor, center: int | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's cluster: the kept centre ``index`` (B, f) nearest to it in ``dist`` (B, N, N).

    Returns ``(assign, member)``, both (B, N): ``assign`` a position in ``index`` (ties go to the
    earlier centre; a centre always joins its own cluster, also where another centre's features
    equal its own), ``member`` False for a frame that must not join its cluster's mean. With
    ``center`` (seq2frame, a frame or one per sample) the centre frame's cluster holds that frame
    alone: the others join their nearest other centre (or, if none is kept, no mean at all).
    """
    b, n, _ = dist.shape
    to_centres = dist.gather(2, index.unsqueeze(1).expand(b, n, index.shape[1]))  # (B, N, f)
    own = torch.arange(n, device=dist.device).view(1, n, 1) == index.unsqueeze(1)
    to_centres = torch.where(own, torch.full_like(to_centres, -1.0), to_centres)
    if center is None:
        return to_centres.argmin(dim=-1), torch.ones(b, n, dtype=torch.bool, device=dist.device)
    c = center.view(-1, 1) if isinstance(center, torch.Tensor) else center
    barred = (index == c).unsqueeze(1) & ~own  # another frame in the centre's cluster
    to_centres = torch.where(barred, torch.full_like(to_centres, float("inf")), to_centres)
    assign = to_centres.argmin(dim=-1)
    return assign, ~barred.gather(2, assign.unsqueeze(-1)).squeeze(-1)


def merge_tokens(x: torch.Tensor, assign: torch.Tensor, log_weight: torch.Tensor, keep: int) -> torch.Tensor:
    """The weighted mean of every cluster's tokens: canonical ``x`` (B, N, ..., C) to (B, keep, ..., C).

    ``assign`` (B, N) is each token's cluster (0 .. keep-1), ``log_weight`` (B, N) its log weight
    (-inf: left out); every cluster needs one finite weight. The weights are normalised per
    cluster in log space (no underflow) and applied as one batched matrix product, which is
    deterministic and exports to ONNX; a cluster of one token returns that token bit for bit.
    """
    b, n = assign.shape
    onehot = assign.unsqueeze(-1) == torch.arange(keep, device=assign.device)  # (B, N, keep)
    lw = torch.where(onehot, log_weight.unsqueeze(-1), torch.full_like(onehot, float("-inf"), dtype=log_weight.dtype))
    w = torch.exp(lw - lw.max(dim=1, keepdim=True).values)  # each cluster's heaviest token: 1
    w = w / w.sum(dim=1, keepdim=True)
    merged = torch.bmm(w.transpose(1, 2).to(x.dtype), x.reshape(b, n, -1))
    return merged.view(b, keep, *x.shape[2:])


class MergePrune(TPC):
    """Token merging on TPC's clusters (``prune="merge"``): the same DPC-kNN centres, but each
    kept token is the mean of its cluster's members, so what TPC drops still reaches the middle
    blocks. In a later stage each token is weighted by how many original frames it stands for.

    Plain means are the default: on the accuracy benchmark they tie with density weighting
    (:class:`DensityMergePrune`) to 0.001 mm on both test sets, because trained features make
    the densities of a cluster's members almost equal, and a mean does not depend on the
    features' scale, which the density's exp(-d²) does.
    """

    merges = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge tokens (B, F, C) or (B, F, J, C); returns ``(merged, index, assign)``."""
        c = self.cluster(pool_tokens(x))
        return self.add_pos_embed(merge_tokens(x, c.assign, c.log_weight, self.keep)), c.index, c.assign


class DensityMergePrune(MergePrune):
    """:class:`MergePrune` with each member weighted by its DPC-kNN density (``"merge-density"``):
    a frame in a dense run of similar frames counts more than an outlier."""

    def log_weights(self, dpc: DPC, log_sizes: torch.Tensor | None) -> torch.Tensor:
        return super().log_weights(dpc, log_sizes) + dpc.log_density


class UniformPrune(FramePruner):
    """Evenly spaced frames (uniform sampling), the same for every clip."""

    @torch.no_grad()
    def select(self, features: torch.Tensor, center: int | torch.Tensor | None = None) -> torch.Tensor:
        b, n = features.shape[:2]
        index = torch.linspace(0, n - 1, self.keep, device=features.device).round().long()
        index = index.unsqueeze(0).expand(b, -1)
        center = self._center(center)
        if center is not None:  # the sample nearest the centre moves onto it (a no-op if it is there)
            c = center.view(-1, 1) if isinstance(center, torch.Tensor) else torch.full_like(index[:, :1], center)
            slots = torch.arange(self.keep, device=index.device)
            nearest = slots == (index - c).abs().argmin(dim=1, keepdim=True)
            index = torch.where(nearest, c.expand_as(index), index)
        return index.contiguous()


class AttentionPrune(FramePruner):
    """Frames that receive the most attention under parameter-free self-attention.

    The host's attention maps live inside its blocks, so this uses the pooled tokens as
    queries and keys directly: score_j = mean_i softmax_j(x_i · x_j / sqrt(C)).
    """

    @torch.no_grad()
    def select(self, features: torch.Tensor, center: int | torch.Tensor | None = None) -> torch.Tensor:
        x = features.float()
        attn = torch.softmax(x @ x.transpose(1, 2) / math.sqrt(x.shape[-1]), dim=-1)
        return top_frames(attn.mean(dim=1), self.keep, self._center(center))


class MotionPrune(FramePruner):
    """Frames with the largest feature motion ||x_t - x_(t-1)|| (frame 0 uses frame 1's; a
    single frame, as a later stage may see, has no motion and is kept)."""

    @torch.no_grad()
    def select(self, features: torch.Tensor, center: int | torch.Tensor | None = None) -> torch.Tensor:
        x = features.float()
        if x.shape[1] == 1:
            return torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device)
        motion = (x[:, 1:] - x[:, :-1]).norm(dim=-1)
        motion = torch.cat([motion[:, :1], motion], dim=1)
        return top_frames(motion, self.keep, self._center(center))


PRUNERS: dict[str, type[FramePruner]] = {
    "tpc": TPC,
    "uniform": UniformPrune,
    "attention": AttentionPrune,
    "motion": MotionPrune,
    "merge": MergePrune,
    "merge-mean": MergePrune,
    "merge-density": DensityMergePrune,
}
