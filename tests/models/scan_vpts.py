"""Small lifters that mix tokens without attention: a state-space scan written as a
``torch.autograd.Function`` over the flattened frames x joints grid (issue 27, pattern 7).

* :class:`ScanLifter` — joint tokens (B, F, J, C); each block runs a gated linear recurrence
  ``h_t = a * h_(t-1) + u_t`` over the F·J grid (frame-major), then an MLP.
* :class:`HybridScanLifter` — blocks alternate attention over the joints of a frame ((B·F, J, C),
  spatial) with a scan over the frames of each joint ((B·J, F, C), temporal).
* :class:`FixedScanLifter` — the scan loops over ``range(self.num_frame)``: it runs on F frames only,
  so it has no tokens for HoT (refused).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from author_vpts import Attention, Mlp

C, DIM = 2, 32


class LinearScan(torch.autograd.Function):
    """``h_t = a * h_(t-1) + u_t`` along axis 1 of u (B, L, D), a (D,): a loop over positions."""

    @staticmethod
    def forward(ctx, u, a, steps=None):
        h = torch.zeros_like(u[:, 0])
        out = []
        for t in range(u.shape[1] if steps is None else steps):
            h = a * h + u[:, t]
            out.append(h)
        hs = torch.stack(out, 1)
        ctx.save_for_backward(hs, a)
        return hs

    @staticmethod
    def backward(ctx, grad):
        hs, a = ctx.saved_tensors
        carry = torch.zeros_like(grad[:, 0])
        du = torch.empty_like(grad)
        da = torch.zeros_like(a)
        for t in reversed(range(grad.shape[1])):
            carry = grad[:, t] + a * carry
            du[:, t] = carry
            if t > 0:
                da = da + (carry * hs[:, t - 1]).sum(0)
        return du, da, None


class ScanMixer(nn.Module):
    def __init__(self, dim, steps=None):
        super().__init__()
        self.steps = steps
        self.inp = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.decay = nn.Parameter(torch.full((dim,), 2.0))

    def forward(self, x):  # (B, L, D)
        y = LinearScan.apply(self.inp(x), torch.sigmoid(self.decay), self.steps)
        return self.out(y)


class ScanBlock(nn.Module):
    """A scan over the flattened frames x joints grid of (B, F, J, C) tokens, then an MLP."""

    def __init__(self, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.scan = ScanMixer(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x):
        b, f, j, c = x.shape
        x = x + self.scan(self.norm1(x).reshape(b, f * j, c)).reshape(b, f, j, c)
        return x + self.mlp(self.norm2(x))


class ScanLifter(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, depth=3):
        super().__init__()
        self.embed = nn.Linear(C, DIM)
        self.time_embed = nn.Parameter(torch.randn(1, num_frame, 1, DIM) * 0.02)
        self.blocks = nn.ModuleList([ScanBlock(DIM) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 3)

    def forward(self, x):
        x = self.embed(x) + self.time_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class SpatialBlock(nn.Module):
    def __init__(self, dim, heads=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x):  # (B·F, J, C)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimeScanBlock(SpatialBlock):
    def __init__(self, dim, steps=None):
        super().__init__(dim)
        del self.attn
        self.scan = ScanMixer(dim, steps)

    def forward(self, x):  # (B·J, F, C)
        x = x + self.scan(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HybridScanLifter(nn.Module):
    def __init__(self, num_frame=27, num_joints=17, depth=3, steps=None):
        super().__init__()
        self.embed = nn.Linear(C, DIM)
        self.time_embed = nn.Parameter(torch.randn(1, num_frame, DIM) * 0.02)
        self.spatial = nn.ModuleList([SpatialBlock(DIM) for _ in range(depth)])
        self.temporal = nn.ModuleList([TimeScanBlock(DIM, steps) for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 3)

    def forward(self, x):
        b, f, j, c = x.shape
        x = self.embed(x)
        for i, (sp, tm) in enumerate(zip(self.spatial, self.temporal)):
            x = sp(x.reshape(b * f, j, DIM)).reshape(b, f, j, DIM)
            x = x.permute(0, 2, 1, 3).reshape(b * j, f, DIM)
            x = tm(x + self.time_embed if i == 0 else x)
            x = x.reshape(b, j, f, DIM).permute(0, 2, 1, 3)
        return self.head(self.norm(x))


class FixedScanLifter(HybridScanLifter):
    def __init__(self, num_frame=27, num_joints=17, depth=3):
        super().__init__(num_frame, num_joints, depth, steps=num_frame)


ALL = {
    "scan": (ScanLifter, (2, 27, 17, C)),
    "hybrid_scan": (HybridScanLifter, (2, 27, 17, C)),
}
REFUSED = {"fixed_scan": (FixedScanLifter, (2, 27, 17, C))}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded model in eval mode and a matching input batch."""
    cls, shape = {**ALL, **REFUSED}[name]
    torch.manual_seed(seed)
    return cls().eval(), torch.randn(shape)
