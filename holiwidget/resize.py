"""Bilinear resizing as banded matrix products, and the fused channel products built on it.

Bilinear interpolation with ``align_corners=False`` is separable: resizing a map ``X`` (h x w)
to (H x W) is ``R_y @ X @ R_x.T`` where each row of ``R_y`` (H x h) and ``R_x`` (W x w) holds at
most two non-zero weights. Holistic-CAM needs, for every output pixel, the channel sum of the
product of two scale-averaged, upsampled stacks::

    P = sum_k ( mean_s up(X_s)[k] ) * ( mean_s up(Y_s)[k] )

Upsampling all ``K`` channels of every scale at once needs ``K x H x W`` floats per scale
(over 400 MB for ResNet-50's layer4). Here the channels are processed in small chunks whose
upsampled stacks stay in the processor's cache, and each resize is a sequence of small dense
matrix products over the band of input rows that an output tile actually reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["bilinear_matrix", "channel_products", "resize_maps"]

# Output rows (or columns) handled by one dense product. Small tiles waste few zero weights.
_ROW_TILE = 16
_COL_TILE = 32
# Working set of one channel chunk: the accumulated stacks, in float32 elements.
_CHUNK_ELEMENTS = 16_000_000
# Stacks with at most this many native pixels per output pixel, summed over scales, are fused
# through per-tile Gram matrices (for a 224 x 224 input: ResNet-50's layer4 0.06, layer3 0.24;
# layer2, at 0.95, is faster upsampled).
_GRAM_MAX_DENSITY = 0.35
# Candidate Gram tile sides (the cheapest for the stack is taken), and the float32 elements
# that one group of tiles may hold at once.
_GRAM_TILES = (8, 12, 16, 24, 32, 48, 56)
_GRAM_GROUP_ELEMENTS = 6_000_000
# Inputs at most this wide are resized along the columns by one dense product.
_DENSE_WIDTH = 64


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
def _bands(
    n_in: int, n_out: int, tile: int, device: str, dtype: torch.dtype
) -> tuple[tuple[int, int, int, int, torch.Tensor], ...]:
    """Tiles of output indices with the contiguous band of inputs they read."""
    matrix = _matrix_cpu64(n_in, n_out)
    bands = []
    for r0 in range(0, n_out, tile):
        r1 = min(r0 + tile, n_out)
        used = torch.nonzero(matrix[r0:r1].abs().sum(0)).flatten()
        lo, hi = int(used.min()), int(used.max()) + 1
        block = matrix[r0:r1, lo:hi].to(device=device, dtype=dtype).contiguous()
        bands.append((r0, r1, lo, hi, block))
    return tuple(bands)


def _resize_columns(x: torch.Tensor, width: int) -> torch.Tensor:
    """(C, h, w) -> (h, width, C): resize the last axis; channels become the innermost axis.

    The per-row matrices (w x C) go to the matrix product as they lie in memory, whether
    ``x`` is contiguous or channels-last (as oneDNN produces it): no copy first.
    """
    rows = x.permute(1, 2, 0)  # (h, w, C), a view
    w = x.shape[-1]
    if w <= _DENSE_WIDTH:
        return torch.matmul(bilinear_matrix(w, width, device=x.device, dtype=x.dtype), rows)
    out = x.new_empty((x.shape[1], width, x.shape[0]))
    for c0, c1, lo, hi, block in _bands(w, width, _COL_TILE, str(x.device), x.dtype):
        out[:, c0:c1] = torch.matmul(block, rows[:, lo:hi])
    return out


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over the last (channel) axis of a * b; a matrix-vector product sums short axes fast."""
    ones = a.new_ones(a.shape[-1])
    return torch.mv((a * b).view(-1, a.shape[-1]), ones).view(a.shape[:-1])


def _columns_all_scales(stacks: Sequence[torch.Tensor], width: int) -> list:
    """Each scale's stack resized along the columns, as (h_s, width * n) matrices."""
    return [_resize_columns(stack, width).reshape(stack.shape[1], -1) for stack in stacks]


def _tile_mean(
    cols: Sequence[torch.Tensor],
    bands: Sequence,
    t: int,
    base_index: int,
    base: torch.Tensor | None,
) -> torch.Tensor:
    """Sum over scales of one tile of output rows; the base scale's part may be given."""
    tile = None
    for i, c in enumerate(cols):
        if i == base_index and base is not None:
            tile = base.clone() if tile is None else tile.add_(base)
            continue
        _, _, lo, hi, block = bands[i][t]
        tile = block @ c[lo:hi] if tile is None else tile.addmm_(block, c[lo:hi])
    return tile


def channel_products(
    natives: Mapping[str, Sequence[torch.Tensor]],
    products: Sequence[tuple[str, str]],
    size: tuple[int, int],
    *,
    base_products: Sequence[tuple[str, str]] = (),
    base_index: int = 0,
    derived: Mapping[str, tuple[Callable[..., torch.Tensor], tuple[str, ...]]] | None = None,
) -> tuple[dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
    """Channel sums of products of scale-averaged, bilinearly upsampled stacks.

    For every pair ``(a, b)`` in ``products``::

        P[a, b] = sum_k ( mean_s up(a_s)[k] ) * ( mean_s up(b_s)[k] )

    and for every pair in ``base_products`` the same at one scale only::

        B[a, b] = sum_k up(a_base)[k] * up(b_base)[k]

    where ``up`` is bilinear interpolation (``align_corners=False``) to ``size``. The means are
    taken separately before the product, as Holistic-CAM's fusion and CAMERAS require.
    Nothing of size K x H x W is ever held. Fine stacks (shallow layers) are upsampled chunk
    by chunk of channels and tile by tile of output rows. Coarse stacks (deep layers, many
    channels) never are: for each tile of output pixels, the channel sums of products of the
    native pixels it reads form a small Gram matrix (one dense product over all K channels),
    and the interpolation weights are applied to that.

    Args:
        natives: name -> per-scale stacks, each (K, h_s, w_s), all with the same K.
        products: pairs of names whose scale means are multiplied.
        size: the output (H, W).
        base_products: pairs multiplied at the scale ``base_index`` alone.
        base_index: position of the base scale in every sequence of ``natives``.
        derived: name -> (function, input names): stacks computed per channel chunk from
            other stacks, scale by scale, e.g. ``{"w": (pge_from_totals, ("g", "s"))}``. The
            function must act on each channel independently; computing it chunk by chunk
            keeps the data in cache and never holds the whole derived stack.

    Returns:
        Two dicts mapping each pair to its (H, W) map: the scale-averaged products and the
        base-scale products.
    """
    height, width = size
    names = sorted({n for pair in (*products, *base_products) for n in pair})
    derived = {n: d for n, d in (derived or {}).items() if n in names}
    sources = sorted(
        {n for n in names if n not in derived} | {i for _, ins in derived.values() for i in ins}
    )
    scaled = {n for pair in products for n in pair}
    based = {n for pair in base_products for n in pair}
    first = natives[sources[0]][0]
    channels = first.shape[0]
    device, dtype = first.device, first.dtype
    shapes = {
        n: [tuple(s.shape[1:]) for s in natives[sources[0] if n in derived else n]] for n in names
    }
    if sum(h * w for h, w in shapes[names[0]]) <= _GRAM_MAX_DENSITY * height * width:
        return _gram_products(natives, products, size, base_products, base_index, derived, names)
    rows_per_channel = sum(sum(h for h, _ in shapes[n]) for n in names)
    chunk = max(1, min(channels, _CHUNK_ELEMENTS // (width * rows_per_channel)))
    bands = {
        n: [_bands(h, height, _ROW_TILE, str(device), dtype) for h, _ in shapes[n]] for n in names
    }
    tiles = [band[:2] for band in bands[names[0]][0]]

    out = {pair: torch.zeros(size, device=device, dtype=dtype) for pair in products}
    base_out = {pair: torch.zeros(size, device=device, dtype=dtype) for pair in base_products}
    for k0 in range(0, channels, chunk):
        k1 = min(k0 + chunk, channels)
        chunk_stacks = {n: [s[k0:k1] for s in natives[n]] for n in sources}
        for n, (fn, inputs) in derived.items():
            per_scale = zip(*(chunk_stacks[i] for i in inputs), strict=True)
            chunk_stacks[n] = [fn(*args) for args in per_scale]
        cols = {n: _columns_all_scales(chunk_stacks[n], width) for n in names}
        del chunk_stacks
        for t, (r0, r1) in enumerate(tiles):
            shape = (r1 - r0, width, k1 - k0)
            bases: dict[str, torch.Tensor] = {}
            for n in sorted(based):
                _, _, lo, hi, block = bands[n][base_index][t]
                bases[n] = block @ cols[n][base_index][lo:hi]
            means = {
                n: _tile_mean(cols[n], bands[n], t, base_index, bases.get(n)).view(shape)
                for n in scaled
            }
            for a, b in products:
                out[(a, b)][r0:r1] += _channel_dot(means[a], means[b])
            for a, b in base_products:
                base_out[(a, b)][r0:r1] += _channel_dot(bases[a].view(shape), bases[b].view(shape))
    for a, b in products:
        out[(a, b)] /= len(shapes[a]) * len(shapes[b])
    return out, base_out


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
    matrix = _matrix_cpu64(n_in, n_out)
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

    return min(_GRAM_TILES, key=cost)


def _gram_products(
    natives: Mapping[str, Sequence[torch.Tensor]],
    products: Sequence[tuple[str, str]],
    size: tuple[int, int],
    base_products: Sequence[tuple[str, str]],
    base_index: int,
    derived: Mapping[str, tuple[Callable[..., torch.Tensor], tuple[str, ...]]],
    names: Sequence[str],
) -> tuple[dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
    """:func:`channel_products` through per-tile Gram matrices (coarse stacks).

    For an output tile, ``P = sum_k mean_s up(a_s)[k] mean_s up(b_s)[k]`` is
    ``U G U^T`` on the diagonal, with ``G = a^T b`` the (P x P) Gram matrix over all channels
    of the native pixels the tile reads and ``U`` the separable bilinear weights. All tiles go
    through the same batched products, in groups that bound the memory.
    """
    stacks = {n: list(natives[n]) for n in names if n not in derived}
    for n, (fn, inputs) in derived.items():
        stacks[n] = [fn(*args) for args in zip(*(natives[i] for i in inputs), strict=True)]
    first = stacks[names[0]][0]
    channels = first.shape[0]
    shapes = tuple(tuple(int(d) for d in t.shape[1:]) for t in stacks[names[0]])
    every = list(range(len(shapes)))
    out: dict[tuple[str, str], torch.Tensor] = {}
    base_out: dict[tuple[str, str], torch.Tensor] = {}
    for pairs, scales, scale, store in (
        (products, every, 1.0 / len(shapes) ** 2, out),
        (base_products, [base_index], 1.0, base_out),
    ):
        if not pairs:
            continue
        sub = tuple(shapes[s] for s in scales)
        tile = _gram_tile(sub, tuple(size), channels)
        plan = _gram_plan(sub, tuple(size), tile, str(first.device), first.dtype)
        # pixels as rows: a channels-last stack (as oneDNN makes it) is a view, no copy
        pixels = {
            n: torch.cat([stacks[n][s].permute(1, 2, 0).reshape(-1, channels) for s in scales])
            for n in {x for pair in pairs for x in pair}
        }
        for a, b in pairs:
            store[(a, b)] = _gram_fuse(plan, pixels[a], pixels[b], size) * scale
    return out, base_out


def _gram_fuse(
    plan: _GramPlan, a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``sum_k up(a)[k] up(b)[k]`` over every tile of ``plan``; ``a``, ``b``: (pixels, K)."""
    tile, (gy, gx) = plan.tile, plan.grid
    tiles, pixels = plan.index.shape
    channels = a.shape[1]
    band = sum(plan.cols)
    per_tile = pixels * (2 * channels + pixels + tile * band) + tile * tile * band
    group = max(1, _GRAM_GROUP_ELEMENTS // per_tile)
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


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of a stack of 2-D maps (..., h, w)."""
    if maps.shape[-2:] == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(1, -1, *maps.shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(
        *lead, *size
    )
