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
import math
from collections.abc import Callable, Mapping, Sequence

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
# layer2, at 0.95, is faster upsampled). A Gram tile is sized to read about this many native
# pixels: 56 x 56 output pixels for layer4, 28 x 28 for layer3.
_GRAM_MAX_DENSITY = 0.35
_GRAM_TILE_NATIVES = 190
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


@functools.lru_cache(maxsize=64)
def _gram_plan(
    shapes: tuple[tuple[int, int], ...], size: tuple[int, int], device: str, dtype: torch.dtype
) -> tuple:
    """Per output tile: its rows and columns, and per scale the native window and weights."""
    density = sum(h * w for h, w in shapes) / (size[0] * size[1])
    tile = max(8, round(math.sqrt(_GRAM_TILE_NATIVES / density)))
    rows = [_bands(h, size[0], tile, device, dtype) for h, _ in shapes]
    cols = [_bands(w, size[1], tile, device, dtype) for _, w in shapes]
    plan = []
    for ti in range(len(rows[0])):
        for tj in range(len(cols[0])):
            windows = tuple(
                (
                    rows[s][ti][2],
                    rows[s][ti][3],
                    cols[s][tj][2],
                    cols[s][tj][3],
                    rows[s][ti][4],
                    cols[s][tj][4],
                )
                for s in range(len(shapes))
            )
            plan.append((*rows[0][ti][:2], *cols[0][tj][:2], windows))
    return tuple(plan)


def _window_matrix(
    stacks: Sequence[torch.Tensor], windows: tuple, scales: Sequence[int]
) -> torch.Tensor:
    """The native pixels a tile reads, all scales one after the other: (P, K).

    Pixels are rows, so a channels-last stack (as oneDNN produces it) is copied row by row.
    """
    parts = []
    for s in scales:
        a0, a1, b0, b1, _, _ = windows[s]
        pixels = stacks[s].permute(1, 2, 0)[a0:a1, b0:b1]
        parts.append(pixels.reshape(-1, stacks[s].shape[0]))
    return torch.cat(parts)


def _apply_weights(gram: torch.Tensor, windows: tuple, scales: Sequence[int]) -> torch.Tensor:
    """sum_{p, q} U[i, j, p] U[i, j, q] gram[p, q] with U the separable bilinear weights.

    With ``U[i, j, (s, a, b)] = ry_s[i, a] rx_s[j, b]`` the rows are contracted first, both
    sides for the same output row ``i``, leaving one small (B x B) matrix per output row over
    the native columns of all scales (B of them); the columns then take one batched product.
    """
    dims = [(windows[s][1] - windows[s][0], windows[s][3] - windows[s][2]) for s in scales]
    sizes = [a * b for a, b in dims]
    ry = [windows[s][4] for s in scales]
    rows, total = ry[0].shape[0], gram.shape[1]
    # left[i, (s, b), q] = sum_a ry_s[i, a] gram[(s, a, b), q]
    left = torch.cat(
        [
            (r @ block.reshape(a, b * total)).view(rows, b, total)
            for r, (a, b), block in zip(ry, dims, torch.split(gram, sizes), strict=True)
        ],
        dim=1,
    )
    # pair[i, (s, b), (t, d)] = sum_c ry_t[i, c] left[i, (s, b), (t, c, d)]
    pair = torch.cat(
        [
            torch.einsum("ia,ixab->ixb", r, block.reshape(rows, -1, a, b))
            for r, (a, b), block in zip(ry, dims, torch.split(left, sizes, dim=2), strict=True)
        ],
        dim=2,
    )
    rx = torch.cat([windows[s][5] for s in scales], dim=1)  # (columns, B)
    return (torch.matmul(rx, pair) * rx).sum(-1)


def _gram_products(
    natives: Mapping[str, Sequence[torch.Tensor]],
    products: Sequence[tuple[str, str]],
    size: tuple[int, int],
    base_products: Sequence[tuple[str, str]],
    base_index: int,
    derived: Mapping[str, tuple[Callable[..., torch.Tensor], tuple[str, ...]]],
    names: Sequence[str],
) -> tuple[dict[tuple[str, str], torch.Tensor], dict[tuple[str, str], torch.Tensor]]:
    """:func:`channel_products` through per-tile Gram matrices (coarse stacks)."""
    stacks = {n: list(natives[n]) for n in names if n not in derived}
    for n, (fn, inputs) in derived.items():
        stacks[n] = [fn(*args) for args in zip(*(natives[i] for i in inputs), strict=True)]
    first = stacks[names[0]][0]
    shapes = tuple(tuple(int(d) for d in t.shape[1:]) for t in stacks[names[0]])
    plan = _gram_plan(shapes, tuple(size), str(first.device), first.dtype)
    every = range(len(shapes))
    out = {p: first.new_empty(size) for p in products}
    base_out = {p: first.new_empty(size) for p in base_products}
    for r0, r1, c0, c1, windows in plan:
        if products:
            patches = {n: _window_matrix(stacks[n], windows, every) for n in names}
            for a, b in products:
                gram = patches[a] @ patches[b].T
                out[(a, b)][r0:r1, c0:c1] = _apply_weights(gram, windows, every) / len(shapes) ** 2
        if base_products:
            patches = {n: _window_matrix(stacks[n], windows, [base_index]) for n in names}
            for a, b in base_products:
                gram = patches[a] @ patches[b].T
                base_out[(a, b)][r0:r1, c0:c1] = _apply_weights(gram, windows, [base_index])
    return out, base_out


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of a stack of 2-D maps (..., h, w)."""
    if maps.shape[-2:] == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(1, -1, *maps.shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(
        *lead, *size
    )
