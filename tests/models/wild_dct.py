"""A stand-in for a small third-party DCT package (in the style of torch-dct helpers): pure
Python loops over ``x.shape``, which torch.fx cannot trace."""

from __future__ import annotations

import math

import torch


def dct_matrix(n: int, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II basis, (n, n): row k is the k-th cosine."""
    rows = []
    for k in range(n):
        scale = math.sqrt(1.0 / n) if k == 0 else math.sqrt(2.0 / n)
        rows.append([scale * math.cos(math.pi * (i + 0.5) * k / n) for i in range(n)])
    return torch.tensor(rows, dtype=dtype)


def _move(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, list[int]]:
    dims = [d for d in range(len(x.shape))]
    dims[dim], dims[-1] = dims[-1], dims[dim]
    return x.permute(*dims), dims


def dct(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """DCT-II along ``dim`` (orthonormal)."""
    sizes = [s for s in x.shape]
    y, dims = _move(x, dim)
    y = y @ dct_matrix(sizes[dim], x.dtype).T
    return y.permute(*dims)


def idct(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of :func:`dct`."""
    sizes = [s for s in x.shape]
    y, dims = _move(x, dim)
    y = y @ dct_matrix(sizes[dim], x.dtype)
    return y.permute(*dims)
