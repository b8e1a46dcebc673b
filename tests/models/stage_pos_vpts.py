"""Small hierarchical VPTs with one full-length (1, F, C) embedding sliced to the current length
inside every strided stage (issue 27, pattern 6): ``x = x + self.pos[:, :x.shape[1]]`` where x has
F, F/3 or F/9 rows, so in the later stages the rows are stage positions, not frames.

* :class:`SlicedStageFormer` — stages on F, F/3, F/9 tokens joined by stride-3 ``Conv1d``;
  returns the centre frame (B, 1, J, 3).
* :class:`SlicedSliceFormer` — stages joined by strided slices ``x[:, ::3]``, the length read as
  ``x.size(1)``; returns the last stage's tokens (B, F/9, J, 3).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from frame_use_vpts import StridedFormer

J, C, DIM = 17, 2, 32


class SlicedStageFormer(StridedFormer):
    """StridedFormer's stages and strided convolutions, with one (1, F, C) embedding for all stages."""

    def __init__(self, num_frame=27, heads=4, depths=(2, 2, 1)):
        super().__init__(num_frame, J, C, DIM, heads, depths=depths)
        del self.pos_embeds
        self.pos = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = self.reduce[i - 1](x.transpose(1, 2)).transpose(1, 2)
            x = x + self.pos[:, : x.shape[1]]
            for blk in blocks:
                x = blk(x)
        x = self.norm(x)
        return self.head(x[:, x.shape[1] // 2]).view(b, 1, j, 3)


class SlicedSliceFormer(SlicedStageFormer):
    """The stages joined by strided slices instead of convolutions; returns the last stage's tokens."""

    def __init__(self, num_frame=27, heads=4, depths=(2, 2, 1)):
        super().__init__(num_frame, heads, depths)
        del self.reduce

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x.reshape(b, f, j * c))
        for i, blocks in enumerate(self.stages):
            if i > 0:
                x = x[:, ::3]
            length = x.size(1)
            x = x + self.pos[:, :length]
            for blk in blocks:
                x = blk(x)
        return self.head(self.norm(x)).view(b, -1, j, 3)


ALL = {
    "sliced_stage": (SlicedStageFormer, (2, 27, J, C)),
    "sliced_slice": (SlicedSliceFormer, (2, 27, J, C)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = ALL[name]
    torch.manual_seed(seed)
    return cls().eval(), torch.randn(shape)
