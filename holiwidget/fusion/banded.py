"""The banded way (torch): scale means of upsampled stacks, chunk of channels by chunk.

For fine stacks (shallow and mid-depth layers) every chunk of channels is resized along the
columns once per scale, then tile of output rows by tile, each resize a small dense product
over the band of input rows that the tile reads (:func:`holiwidget.fusion.bilinear.bands`);
the chunk's upsampled stacks stay in cache and nothing of size K x H x W is held.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..methods.holistic import pge_from_totals
from .bilinear import bands, bilinear_matrix
from .policy import CHUNK_ELEMENTS, COL_TILE, DENSE_WIDTH, ROW_TILE

__all__ = ["banded_products"]


def _resize_columns(x: torch.Tensor, width: int) -> torch.Tensor:
    """(C, h, w) -> (h, width, C): resize the last axis; channels become the innermost axis.

    The per-row matrices (w x C) go to the matrix product as they lie in memory, whether
    ``x`` is contiguous or channels-last (as oneDNN produces it): no copy first.
    """
    rows = x.permute(1, 2, 0)  # (h, w, C), a view
    w = x.shape[-1]
    if w <= DENSE_WIDTH:
        return torch.matmul(bilinear_matrix(w, width, device=x.device, dtype=x.dtype), rows)
    out = x.new_empty((x.shape[1], width, x.shape[0]))
    for c0, c1, lo, hi, block in bands(w, width, COL_TILE, str(x.device), x.dtype):
        out[:, c0:c1] = torch.matmul(block, rows[:, lo:hi])
    return out


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over the last (channel) axis of a * b; a matrix-vector product sums short axes fast."""
    ones = a.new_ones(a.shape[-1])
    return torch.mv((a * b).view(-1, a.shape[-1]), ones).view(a.shape[:-1])


def _scale_sum(cols: Sequence[torch.Tensor], tile: Sequence, first: torch.Tensor) -> torch.Tensor:
    """Sum over the scales of one tile of output rows, the first scale's part given."""
    out = first.clone()
    for c, (_, _, lo, hi, block) in zip(cols[1:], tile[1:], strict=True):
        out.addmm_(block, c[lo:hi])
    return out


def banded_products(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    size: tuple[int, int],
    *,
    totals: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``P = sum_k mean_s up(x_s)[k] mean_s up(y_s)[k]`` and ``B`` at the first scale alone.

    See :func:`holiwidget.fusion.products.torch_products`, which picks this way for fine
    stacks; arguments and results are the same.
    """
    height, width = size
    channels = xs[0].shape[0]
    device, dtype = xs[0].device, xs[0].dtype
    heights = [x.shape[1] for x in xs]
    chunk = max(1, min(channels, CHUNK_ELEMENTS // (width * 2 * sum(heights))))
    tiles = [bands(h, height, ROW_TILE, str(device), dtype) for h in heights]
    mean = torch.zeros(size, device=device, dtype=dtype)
    base = torch.zeros(size, device=device, dtype=dtype)
    for k0 in range(0, channels, chunk):
        ks = slice(k0, min(k0 + chunk, channels))
        y_chunk = [y[ks] for y in ys]
        if totals is not None:
            y_chunk = [pge_from_totals(g, t[ks]) for g, t in zip(y_chunk, totals, strict=True)]
        cols_x = [_resize_columns(x[ks], width).reshape(x.shape[1], -1) for x in xs]
        cols_y = [_resize_columns(y, width).reshape(y.shape[1], -1) for y in y_chunk]
        del y_chunk
        for t, (r0, r1, lo, hi, block) in enumerate(tiles[0]):
            shape = (r1 - r0, width, ks.stop - ks.start)
            at = [band[t] for band in tiles]
            bx = block @ cols_x[0][lo:hi]
            by = block @ cols_y[0][lo:hi]
            base[r0:r1] += _channel_dot(bx.view(shape), by.view(shape))
            mx = _scale_sum(cols_x, at, bx).view(shape)
            my = _scale_sum(cols_y, at, by).view(shape)
            mean[r0:r1] += _channel_dot(mx, my)
    mean /= len(xs) ** 2
    return mean, base
