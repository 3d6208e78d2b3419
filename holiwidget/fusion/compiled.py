"""Holistic-CAM's pyramid fusion on the CPU, as compiled loops (numba) that stay in cache.

Torch's operations each stream whole tensors through memory: the PGE weights alone are eight
passes over every native of every scale, and upsampling a stack writes K x H x W floats per
scale. Here every output row is finished while its data is in cache:

1. row interpolation: for each scale, the output row blends two native rows (all columns and
   channels at once, one pass over ``w_s * K`` floats);
2. column interpolation: each output pixel blends two of those columns per scale into two
   K-long running sums, ``sum_s up(x_s)`` and ``sum_s up(y_s)``, and takes their dot product.

Nothing of size K x H x W exists at any time. Rows are shared out over threads (the loops
release the GIL). Stacks are channels-last: (h_s, w_s, K), the layout oneDNN gives them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from ..methods.holistic import PGE_EPS
from .bilinear import taps

__all__ = ["compiled_products"]

_EPS = np.float32(PGE_EPS)
_TWO = np.float32(2.0)
_ZERO = np.float32(0.0)


@njit(nogil=True, cache=True, error_model="numpy")
def _pge(x, total):  # pragma: no cover - compiled
    # PGE of one element, in the order and precision of methods.holistic.pge_from_totals
    g = max(x, _ZERO)  # G+, without a branch, so that the loops around it vectorise
    g2 = g * g
    return (g2 * g) / ((g * total + _TWO) * g2 + _EPS)


@njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _fuse_rows(xs, ys, totals, widths, iy, ly, ix, lx, mean, base, first, stop):  # pragma: no cover
    scales = len(xs)
    width = mean.shape[1]
    channels = xs[0].shape[1] // widths[0]
    weigh = totals.shape[0] > 0  # y is a gradient, to be turned into PGE weights
    total = 0
    for s in range(scales):
        total += xs[s].shape[1]
    rx = np.empty(total, np.float32)  # one output row of every scale, row-interpolated
    ry = np.empty(total, np.float32)
    sx = np.empty(channels, np.float32)  # sum over the scales of up(x) at one output pixel
    sy = np.empty(channels, np.float32)
    inv = np.float32(1.0 / (scales * scales))
    for r in range(first, stop):
        off = 0
        for s in range(scales):
            n = xs[s].shape[1]
            c0, c1 = ly[s, r, 0], ly[s, r, 1]
            x0, x1 = xs[s][iy[s, r, 0]], xs[s][iy[s, r, 1]]
            y0, y1 = ys[s][iy[s, r, 0]], ys[s][iy[s, r, 1]]
            dx, dy = rx[off : off + n], ry[off : off + n]
            for j in range(n):
                dx[j] = c0 * x0[j] + c1 * x1[j]
            if weigh:
                t = totals[s]
                for p in range(0, n, channels):
                    a0, a1 = y0[p : p + channels], y1[p : p + channels]
                    d = dy[p : p + channels]
                    for k in range(channels):
                        d[k] = c0 * _pge(a0[k], t[k]) + c1 * _pge(a1[k], t[k])
            else:
                for j in range(n):
                    dy[j] = c0 * y0[j] + c1 * y1[j]
            off += n
        for c in range(width):
            off = 0
            for s in range(scales):
                p0 = off + ix[s, c, 0] * channels
                p1 = off + ix[s, c, 1] * channels
                c0, c1 = lx[s, c, 0], lx[s, c, 1]
                x0, x1 = rx[p0 : p0 + channels], rx[p1 : p1 + channels]
                y0, y1 = ry[p0 : p0 + channels], ry[p1 : p1 + channels]
                if s == 0:
                    dot = np.float32(0)
                    for k in range(channels):
                        sx[k] = c0 * x0[k] + c1 * x1[k]
                        sy[k] = c0 * y0[k] + c1 * y1[k]
                        dot += sx[k] * sy[k]
                    base[r, c] = dot
                else:
                    for k in range(channels):
                        sx[k] += c0 * x0[k] + c1 * x1[k]
                        sy[k] += c0 * y0[k] + c1 * y1[k]
                off += widths[s] * channels
            dot = np.float32(0)
            for k in range(channels):
                dot += sx[k] * sy[k]
            mean[r, c] = dot * inv


# Worker threads kept between calls (starting threads costs milliseconds on a loaded machine),
# by pool size; a forked child starts without them.
_POOLS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_POOLS.clear)


def _in_threads(calls: list[tuple]) -> None:
    """Run each ``(kernel, *args)``: the first in this thread, the others in worker threads at
    the same time (the kernels release the GIL)."""
    others = calls[1:]
    if others and len(others) not in _POOLS:
        _POOLS[len(others)] = ThreadPoolExecutor(len(others), thread_name_prefix="holiwidget")
    jobs = [_POOLS[len(others)].submit(*call) for call in others]
    calls[0][0](*calls[0][1:])
    for job in jobs:
        job.result()


def compiled_products(
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    size: tuple[int, int],
    *,
    totals: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Channel sums of products of scale-averaged, bilinearly upsampled stacks::

        P = sum_k ( mean_s up(x_s)[k] ) * ( mean_s up(y_s)[k] )
        B = sum_k up(x_0)[k] * up(y_0)[k]                  (the first scale alone)

    ``up`` is bilinear interpolation with ``align_corners=False`` to ``size``, as
    :func:`torch.nn.functional.interpolate` computes it (to float rounding). With
    ``totals``, ``ys`` are gradients G and ``y`` above is their PGE weights
    ``W = G+^3 / ((G+ S_k + 2) G+^2 + 1e-6)``, computed where they are read (no stack of
    weights is ever held; the arithmetic is :func:`~holiwidget.methods.holistic.pge_from_totals`'s).

    Args:
        xs: per scale, channels-last stacks (h_s, w_s, K) float32, C-contiguous.
        ys: the same shapes.
        size: the output (H, W).
        totals: per scale, S_k, the channel sums of the activations over their pixels (S, K).
        threads: how many threads share the output rows.

    Returns:
        P and B, each (H, W) float32.
    """
    for x, y in zip(xs, ys, strict=True):
        for stack in (x, y):
            if stack.dtype != np.float32 or stack.ndim != 3 or not stack.flags.c_contiguous:
                raise ValueError("stacks must be C-contiguous float32 (h, w, K) arrays")
        if x.shape != y.shape or x.shape[2] != xs[0].shape[2]:
            raise ValueError(f"stack shapes differ: {x.shape} and {y.shape}, K {xs[0].shape[2]}")
    height, width = size
    channels = xs[0].shape[2]
    rows = tuple(x.reshape(x.shape[0], -1) for x in xs)
    rows_y = tuple(y.reshape(y.shape[0], -1) for y in ys)
    if totals is None:
        totals = np.zeros((0, channels), dtype=np.float32)
    totals = np.ascontiguousarray(totals, dtype=np.float32)
    iy, ly = zip(*(taps(x.shape[0], height) for x in xs), strict=True)
    ix, lx = zip(*(taps(x.shape[1], width) for x in xs), strict=True)
    weights = (np.stack(iy), np.stack(ly), np.stack(ix), np.stack(lx))
    widths = np.array([x.shape[1] for x in xs], dtype=np.int64)
    mean = np.empty(size, dtype=np.float32)
    base = np.empty(size, dtype=np.float32)
    args = (rows, rows_y, totals, widths, *weights, mean, base)
    bounds = np.linspace(0, height, max(1, threads) + 1).astype(np.int64)
    _in_threads([(_fuse_rows, *args, lo, hi) for lo, hi in itertools.pairwise(bounds)])
    return mean, base
