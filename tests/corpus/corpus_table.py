"""The corpus: which third-party model each entry wraps, and what hotpatch must do with it.

An entry is *accepted* when ``hotpatch.apply`` either patches it (then it must pass the
properties of ``test_corpus.py``) or refuses it with one of the listed refusals: a
``HotpatchError`` raised before the rewrite (not a ``PatchCheckError``: a post-rewrite failure is
an analysis bug, issue 27 item 2), at most 600 characters, naming the construct. ``today`` records the error
main gives where it does not do that yet: those entries are strict xfails (raising exactly that
error class), to flip when the engine branches of issue 27 land; ``benchmarks/corpus.py`` prints
the table and says which records no longer hold.
"""

from __future__ import annotations

import dataclasses
import re

import torch

import corpus_models as cm
from hotpatch.errors import HotpatchError, NoTemporalBlocksError, PatchCheckError, RewriteError

N, KEEP = 1, 9  # cut after the first temporal block; keep 9 of the 27 frames


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An accepted refusal: an error of class ``error`` whose message matches ``names``."""

    error: type[HotpatchError]
    names: str

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.error) and re.search(self.names, str(exc)) is not None


PATCH = "patch"


@dataclasses.dataclass(frozen=True)
class Today:
    """What main does with a model the corpus does not accept yet: the error it raises, a quote of
    its message (``quote`` must occur in it), why, and the pattern of issue 27 that covers it."""

    error: type[HotpatchError]
    quote: str
    why: str
    pattern: str

    @property
    def reason(self) -> str:
        return f"{self.error.__name__}: {self.quote} ({self.why}); issue 27 {self.pattern}"

    def holds(self, exc: BaseException | None) -> bool:
        return isinstance(exc, self.error) and self.quote in str(exc)


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str  # the test id
    cls: type  # the shell in corpus_models
    package: str  # the PyPI distribution whose code it runs
    model: str  # their class(es)
    licence: str
    accept: tuple = (PATCH,)  # PATCH and/or Refusal(...)
    today: Today | None = None  # main's error where it is not accepted yet

    @property
    def source(self) -> str:
        return f"corpus_models:{self.cls.__name__}"

    @property
    def patches(self) -> bool:
        return PATCH in self.accept

    def refuses_cleanly(self, exc: BaseException) -> bool:
        """``exc`` is one of the refusals this entry accepts: raised before the rewrite (not a
        ``PatchCheckError``), matching an accepted ``Refusal``, at most 600 characters."""
        return (not isinstance(exc, PatchCheckError) and len(str(exc)) <= 600
                and any(r.matches(exc) for r in self.accept if r != PATCH))

    def build(self, batch: int = 2):
        """(model in eval mode, a batch of clips), seeded."""
        torch.manual_seed(0)
        model = self.cls().eval()
        return model, torch.randn(batch, cm.FRAMES, getattr(model, "joints", cm.JOINTS), 2)


NOT_ATTENTION = Refusal(NoTemporalBlocksError, r"Conv1d")

ENTRIES = [
    Entry("x-transformers-encoder", cm.XTransformersLifter, "x-transformers",
          "ContinuousTransformerWrapper(Encoder)", "MIT"),
    Entry("x-transformers-space-time", cm.XTransformersSpaceTime, "x-transformers", "Encoder (rotary)", "MIT"),
    Entry("vivit-factorised-self-attention", cm.ViViTFactorisedSelfAttention, "vit-pytorch",
          "vivit.FactorizedTransformer", "MIT"),
    Entry("vivit-factorised-encoder", cm.ViViTFactorisedEncoder, "vit-pytorch", "vivit.Transformer", "MIT"),
    Entry("timesformer", cm.TimeSformerLifter, "timesformer-pytorch", "TimeSformer", "MIT",  # (B, 1 + F·N, C)
          accept=(Refusal(RewriteError, r"`net_layers_0` \(1, 433, 32\) folds the frames into one token axis "
                                        r"with other tokens \(433 = 1 \+ 27 × 16"),)),
    Entry("mmpose-dstformer", cm.DSTFormerLifter, "mmpose", "DSTFormer", "Apache-2.0"),
    Entry("mmpose-videopose3d-tcn", cm.VideoPose3DLifter, "mmpose", "TCN", "Apache-2.0",
          accept=(NOT_ATTENTION,)),
    Entry("diffpose-video-mixste", cm.DiffPoseMixSTE, "diffpose-video", "MixSTE2", "MIT"),
    Entry("conformer", cm.ConformerLifter, "conformer", "Conformer", "MIT"),
    Entry("linformer", cm.LinformerLifter, "linformer", "Linformer", "MIT",  # (F, k) projections: no sound patch
          accept=(Refusal(NoTemporalBlocksError, r"`encoder\.net\.layers\.0\.0\.fn\.proj_k` \(27, 8\)"),)),
    Entry("nystromformer", cm.NystromformerLifter, "nystrom-attention", "Nystromformer", "MIT"),
    Entry("local-transformer", cm.LocalTransformerLifter, "local-attention", "LocalTransformer", "MIT",
          accept=(Refusal(RewriteError, r"`encoder_layers_0` of shape \(4, 27, 32\): its axis 0 .* is the batch "
                                        r"folded with 4 rows per sample \(residual streams"),)),  # hyper-connections
    Entry("performer", cm.PerformerLifter, "performer-pytorch", "Performer", "MIT"),
    Entry("mamba", cm.MambaLifter, "mambapy", "Mamba", "MIT",  # issue 27 pattern 7: patch or refuse, deliberately
          accept=(PATCH, Refusal(HotpatchError, r"scan|autograd\.Function|state.space"))),
    Entry("torch-encoder-seq-first", cm.TorchEncoderSeqFirst, "torch", "nn.TransformerEncoder", "BSD-3-Clause"),
    Entry("torch-multihead-space-time", cm.TorchMultiheadSpaceTime, "torch", "nn.MultiheadAttention",
          "BSD-3-Clause"),
]

BY_NAME = {e.name: e for e in ENTRIES}
