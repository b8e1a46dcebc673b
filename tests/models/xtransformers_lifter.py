"""A thin lifter shell around x-transformers' ``Encoder`` (a third-party package, pinned in the
``test`` extra): keypoints (B, F, J, 2) in, poses (B, F, J, 3) out, attention over frames.

The encoder computes its rotary positions in ``forward`` from the clip length
(``arange(x.shape[1] + mem_len + offset, device=x.device)``), runs them through a method decorated
with ``next(arg for arg in args if is_tensor(arg))`` and ``autocast(tensor.device.type)``, and
passes them to every attention layer; the shell adds a key padding mask made from the clip length
(every fifth frame masked). Before issue 27: ``TraceFailure ... StopIteration`` at the decorator.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from x_transformers import Encoder

J = 17


class XTLifter(nn.Module):
    def __init__(self, frames: int = 27, dim: int = 64, depth: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(J * 2, dim)
        self.encoder = Encoder(dim=dim, depth=depth, heads=heads, attn_dim_head=dim // heads,
                               rotary_pos_emb=True, rotary_emb_dim=32)
        self.head = nn.Linear(dim, J * 3)

    def forward(self, x):
        b, f, j, c = x.shape
        mask = torch.ones(b, f, dtype=torch.bool, device=x.device)
        mask[:, ::5] = False  # x-transformers: False = a key no frame attends to
        h = self.encoder(self.embed(x.reshape(b, f, j * c)), mask=mask)
        return self.head(h).reshape(b, f, j, 3)


def build(name: str = "xt", batch: int = 2, frames: int = 27):
    torch.manual_seed(0)
    return XTLifter(frames=frames).eval(), torch.randn(batch, frames, J, 2)
