"""The Gram way (torch): fused channel products of coarse stacks through per-tile Gram matrices.

For an output tile, ``P = sum_k mean_s up(x_s)[k] mean_s up(y_s)[k]`` is ``U G U^T`` on the
diagonal, with ``G = x^T y`` the (P x P) Gram matrix over all channels of the native pixels
the tile reads and ``U`` the separable bilinear weights. Deep layers (few native pixels,
many channels) are never upsampled: one dense product over all K channels per tile, and the
interpolation weights applied to that. All tiles go through the same batched products, in
groups that bound the memory.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..methods.holistic import pge_from_totals
from .bilinear import bilinear_matrix
from .policy import GRAM_GROUP_ELEMENTS, GRAM_TILES

__all__ = ["gram_products"]


@dataclass(frozen=True)
class _GramPlan:
    """Every output tile of one Gram fusion, padded to common window sizes so that all tiles
    are handled by the same batched products.

    Output tiles are ``tile x tile`` pixels on a grid of ``grid`` tiles (the output padded up
    to whole tiles; padded pixels get zero weights). Per scale, each tile reads a window of
    ``rows[s] x cols[s]`` native pixels; ``index`` lists them, per tile, in the natives of
    all scales stacked one after the other (scale, native row, native column).
    """

    tile: int
    grid: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    index: torch.Tensor  # (tiles, P) long
    ry: tuple[torch.Tensor, ...]  # per scale: (grid rows, tile, rows[s]) weights
    rx: tuple[torch.Tensor, ...]  # per scale: (grid columns, tile, cols[s]) weights


def _windows(n_in: int, n_out: int, tile: int, tiles: int) -> tuple[list[int], int, torch.Tensor]:
    """Per tile of output indices: the first native index read, the common window length, and
    the (tiles, tile, length) weights (zero where a window reads beyond what a tile needs)."""
    matrix = bilinear_matrix(n_in, n_out, dtype=torch.float64)
    spans = []
    for t in range(tiles):
        used = torch.nonzero(matrix[t * tile : (t + 1) * tile].abs().sum(0)).flatten()
        spans.append((int(used.min()), int(used.max()) + 1))
    length = min(n_in, max(hi - lo for lo, hi in spans))
    starts = [min(lo, n_in - length) for lo, _ in spans]
    weights = torch.zeros(tiles, tile, length, dtype=torch.float64)
    for t, lo in enumerate(starts):
        block = matrix[t * tile : (t + 1) * tile, lo : lo + length]
        weights[t, : block.shape[0]] = block
    return starts, length, weights


@functools.lru_cache(maxsize=64)
def _gram_plan(
    shapes: tuple[tuple[int, int], ...],
    size: tuple[int, int],
    tile: int,
    device: str,
    dtype: torch.dtype,
) -> _GramPlan:
    grid = (-(-size[0] // tile), -(-size[1] // tile))
    rows = [_windows(h, size[0], tile, grid[0]) for h, _ in shapes]
    cols = [_windows(w, size[1], tile, grid[1]) for _, w in shapes]
    offsets = [0]
    for h, w in shapes:
        offsets.append(offsets[-1] + h * w)
    index = []
    for ti in range(grid[0]):
        for tj in range(grid[1]):
            parts = []
            for s, (_, w) in enumerate(shapes):
                r0, c0 = rows[s][0][ti], cols[s][0][tj]
                r = torch.arange(r0, r0 + rows[s][1]).view(-1, 1)
                c = torch.arange(c0, c0 + cols[s][1]).view(1, -1)
                parts.append((offsets[s] + r * w + c).flatten())
            index.append(torch.cat(parts))
    return _GramPlan(
        tile=tile,
        grid=grid,
        rows=tuple(r[1] for r in rows),
        cols=tuple(c[1] for c in cols),
        index=torch.stack(index).to(device),
        ry=tuple(r[2].to(device=device, dtype=dtype) for r in rows),
        rx=tuple(c[2].to(device=device, dtype=dtype) for c in cols),
    )


def _gram_tile(shapes: tuple[tuple[int, int], ...], size: tuple[int, int], channels: int) -> int:
    """The tile side with the fewest operations: Gram products (P^2 K per tile, P the native
    pixels a tile reads) against the weighting and the per-tile overhead of small tiles."""

    def cost(tile: int) -> float:
        plan = _gram_plan(shapes, size, tile, "cpu", torch.float32)
        tiles, pixels = plan.index.shape
        band = sum(plan.cols)
        per_tile = pixels * pixels * channels + tile * pixels * pixels + tile * tile * band * band
        return tiles * (per_tile + 20_000)

    return min(GRAM_TILES, key=cost)


def _fuse_scales(
    xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], size: tuple[int, int]
) -> torch.Tensor:
    """``sum_k sum_s up(x_s)[k] sum_s up(y_s)[k]`` of every tile (not yet divided by S^2)."""
    channels = xs[0].shape[0]
    shapes = tuple(tuple(int(d) for d in t.shape[1:]) for t in xs)
    tile = _gram_tile(shapes, tuple(size), channels)
    plan = _gram_plan(shapes, tuple(size), tile, str(xs[0].device), xs[0].dtype)
    # pixels as rows: a channels-last stack (as oneDNN makes it) is a view, no copy
    px = torch.cat([x.permute(1, 2, 0).reshape(-1, channels) for x in xs])
    py = torch.cat([y.permute(1, 2, 0).reshape(-1, channels) for y in ys])
    return _gram_fuse(plan, px, py, size)


def gram_products(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    size: tuple[int, int],
    *,
    totals: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``P = sum_k mean_s up(x_s)[k] mean_s up(y_s)[k]`` and ``B`` at the first scale alone.

    See :func:`holiwidget.fusion.products.torch_products`, which picks this way for coarse
    stacks; arguments and results are the same.
    """
    if totals is not None:
        ys = [pge_from_totals(g, t) for g, t in zip(ys, totals, strict=True)]
    mean = _fuse_scales(xs, ys, size) * (1.0 / len(xs) ** 2)
    base = _fuse_scales(xs[:1], ys[:1], size)
    return mean, base


def _gram_fuse(
    plan: _GramPlan, a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``sum_k up(a)[k] up(b)[k]`` over every tile of ``plan``; ``a``, ``b``: (pixels, K)."""
    tile, (gy, gx) = plan.tile, plan.grid
    tiles, pixels = plan.index.shape
    channels = a.shape[1]
    band = sum(plan.cols)
    per_tile = pixels * (2 * channels + pixels + tile * band) + tile * tile * band
    group = max(1, GRAM_GROUP_ELEMENTS // per_tile)
    result = a.new_empty((tiles, tile, tile))
    for t0 in range(0, tiles, group):
        t1 = min(t0 + group, tiles)
        index = plan.index[t0:t1].flatten()
        pa = a.index_select(0, index).view(t1 - t0, pixels, channels)
        pb = b.index_select(0, index).view(t1 - t0, pixels, channels)
        gram = torch.bmm(pa, pb.transpose(1, 2))  # (tiles, P, P)
        del pa, pb
        ti = torch.arange(t0, t1, device=a.device)
        ry = [r[ti // gx] for r in plan.ry]  # per scale (tiles, tile, rows)
        rx = torch.cat([c[ti % gx] for c in plan.rx], dim=2)  # (tiles, tile, band)
        sizes = [h * w for h, w in zip(plan.rows, plan.cols, strict=True)]
        n = t1 - t0
        # left[t, i, (s, col), q] = sum_row ry_s[t, i, row] gram[t, (s, row, col), q]
        left = torch.cat(
            [
                torch.matmul(r, g.reshape(n, h, w * pixels)).view(n, tile, w, pixels)
                for r, h, w, g in zip(
                    ry, plan.rows, plan.cols, torch.split(gram, sizes, dim=1), strict=True
                )
            ],
            dim=2,
        )
        del gram
        # pair[t, i, (s, col), (s', col')] = sum_row' ry_s'[t, i, row'] left[t, i, (s, col), q]
        pair = torch.cat(
            [
                torch.einsum("ntr,ntxrc->ntxc", r, g.reshape(n, tile, band, h, w))
                for r, h, w, g in zip(
                    ry, plan.rows, plan.cols, torch.split(left, sizes, dim=3), strict=True
                )
            ],
            dim=3,
        )
        del left
        # result[t, i, j] = sum_{x, y} rx[t, j, x] pair[t, i, x, y] rx[t, j, y]
        result[t0:t1] = (torch.matmul(rx.unsqueeze(1), pair) * rx.unsqueeze(1)).sum(-1)
    grid = result.view(gy, gx, tile, tile).permute(0, 2, 1, 3).reshape(gy * tile, gx * tile)
    return grid[: size[0], : size[1]].contiguous()
