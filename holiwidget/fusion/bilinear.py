"""Bilinear interpolation (``align_corners=False``) as matrices, bands and taps.

Bilinear interpolation is separable: resizing a map ``X`` (h x w) to (H x W) is
``R_y @ X @ R_x.T``, where each row of ``R_y`` (H x h) and ``R_x`` (W x w) holds at most two
non-zero weights. The fusion's three ways read these weights in three shapes: whole
matrices, dense blocks over the band of inputs a tile of outputs reads, and per-output taps.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Band", "bands", "bilinear_matrix", "taps"]

#: One tile of outputs ``[r0, r1)``, the contiguous inputs ``[lo, hi)`` it reads, and the
#: (r1 - r0, hi - lo) block of weights.
Band = tuple[int, int, int, int, torch.Tensor]


@functools.lru_cache(maxsize=512)
def _matrix_cpu64(n_in: int, n_out: int) -> torch.Tensor:
    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(0)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T.contiguous()


def bilinear_matrix(
    n_in: int, n_out: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The (n_out x n_in) matrix of 1-D linear interpolation, ``align_corners=False``.

    ``bilinear(X) == bilinear_matrix(h, H) @ X @ bilinear_matrix(w, W).T`` for a 2-D map ``X``,
    exactly as :func:`torch.nn.functional.interpolate` with ``mode="bilinear"`` computes it.

    Args:
        n_in: input length.
        n_out: output length.
        device: where the matrix lives.
        dtype: its floating-point type.

    Returns:
        The interpolation matrix; each row has at most two non-zero weights summing to one.
    """
    return _matrix_cpu64(n_in, n_out).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=512)
def bands(n_in: int, n_out: int, tile: int, device: str, dtype: torch.dtype) -> tuple[Band, ...]:
    """Tiles of ``tile`` output indices, each with the contiguous band of inputs it reads."""
    matrix = _matrix_cpu64(n_in, n_out)
    out = []
    for r0 in range(0, n_out, tile):
        r1 = min(r0 + tile, n_out)
        used = torch.nonzero(matrix[r0:r1].abs().sum(0)).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        block = matrix[r0:r1, lo:hi].to(device=device, dtype=dtype).contiguous()
        out.append((r0, r1, lo, hi, block))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index: the two input indices it reads (n_out, 2) int64, and their weights
    (n_out, 2) float32 (the second weight 0 where one input suffices)."""
    matrix = _matrix_cpu64(n_in, n_out).numpy()
    first = np.argmax(matrix != 0, axis=1)
    second = np.minimum(first + 1, n_in - 1)
    rows = np.arange(n_out)
    weights = np.stack([matrix[rows, first], matrix[rows, second]], axis=1)
    weights[second == first, 1] = 0
    return np.stack([first, second], axis=1).astype(np.int64), weights.astype(np.float32)
