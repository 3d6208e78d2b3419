"""The nested dissection of a pixel grid that the batched ROAD solver factorises over.

Every ROAD system is the same 8-neighbour operator on the pixel grid restricted to a mask
of removed pixels (see :mod:`holiwidget.metrics.road.system`). The grid is bisected
recursively (the longer side at its middle line) to a fixed depth; a node of the tree owns
the pixels of its separator line (a leaf: of its whole box), and its *front* is those
pivots plus the ring of pixels around its box. The plan of an image size holds, per depth,
every node's pivots, ring and operator entries as padded index tensors, and the factors of
each box with *all* pixels removed: those depend on geometry only, so they are computed
once per image size and reused for every mask and image
(:mod:`holiwidget.metrics.road.multifrontal` factorises the rest).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .system import in_image_neighbours, neighbour_sums

__all__ = ["Depth", "plan"]


@dataclass
class Depth:
    """The nodes at one depth of the dissection tree (node p has children 2p, 2p+1)."""

    boxes: torch.Tensor  # (P, 4) r0, r1, c0, c1
    piv: torch.Tensor  # (P, s) pixel ids, padded with n (a dummy pixel)
    ring: torch.Tensor  # (P, b) pixel ids, padded with n
    ent_a: torch.Tensor  # (P, E) pivot slot of each operator entry
    ent_c: torch.Tensor  # (P, E) front position of the entry's neighbour
    ent_flat: torch.Tensor  # (P, E) a * f + c
    ent_flat_t: torch.Tensor  # (P, E) c * f + a for ring columns, else a trash position
    ent_w: torch.Tensor  # (P, E) neighbour weight (0 for padding)
    ent_ring: torch.Tensor  # (P, E) 1.0 where the neighbour is on the ring
    child_flat: torch.Tensor | None  # (P, 2, bc * bc) where children's updates land
    child_rows: torch.Tensor | None  # (P, 2, bc) front rows of the children's rings
    s: int
    b: int
    cache_l: torch.Tensor | None = None  # (P, s, s) factors with every pixel removed
    cache_w: torch.Tensor | None = None  # (P, s, b)
    cache_u: torch.Tensor | None = None  # (P, b, b)

    @property
    def f(self) -> int:
        """The side of a front: ``s`` pivots plus ``b`` ring pixels."""
        return self.s + self.b


def _ring(r0: int, r1: int, c0: int, c1: int, h: int, w: int) -> list[int]:
    if r1 <= r0 or c1 <= c0:
        return []
    ids = []
    for c in range(max(c0 - 1, 0), min(c1 + 1, w)):
        if r0 - 1 >= 0:
            ids.append((r0 - 1) * w + c)
        if r1 < h:
            ids.append(r1 * w + c)
    for r in range(r0, r1):
        if c0 - 1 >= 0:
            ids.append(r * w + c0 - 1)
        if c1 < w:
            ids.append(r * w + c1)
    return ids


def _split(box: tuple[int, int, int, int], w: int) -> tuple[list[int], list[tuple]]:
    """Separator pixels and the two child boxes of a box."""
    r0, r1, c0, c1 = box
    if r1 <= r0 or c1 <= c0:
        return [], [box, box]
    if r1 - r0 >= c1 - c0:
        m = r0 + (r1 - r0) // 2
        return [m * w + c for c in range(c0, c1)], [(r0, m, c0, c1), (m + 1, r1, c0, c1)]
    m = c0 + (c1 - c0) // 2
    return [r * w + m for r in range(r0, r1)], [(r0, r1, c0, m), (r0, r1, m + 1, c1)]


@functools.lru_cache(maxsize=2)
def plan(h: int, w: int, leaf: int = 128) -> tuple[list[Depth], torch.Tensor]:
    """The dissection tree of an h x w grid and the all-removed factors of its boxes.

    Cached for the last two image sizes: a size's plan serves every mask and image.

    Args:
        h, w: the grid's size.
        leaf: boxes are bisected until none holds more than this many pixels.

    Returns:
        The depths, root first (pixel ids padded with ``n = h * w``, a dummy pixel), and
        the (n + 1,) diagonal d_i of the operator (the dummy's: 1).
    """
    n = h * w
    boxes = [[(0, h, 0, w)]]
    while max((b[1] - b[0]) * (b[3] - b[2]) for b in boxes[-1]) > leaf:
        boxes.append([c for b in boxes[-1] for c in _split(b, w)[1]])
    depth = len(boxes) - 1
    pivots = []
    for d, level in enumerate(boxes):
        if d == depth:
            pivots.append(
                [[r * w + c for r in range(b[0], b[1]) for c in range(b[2], b[3])] for b in level]
            )
        else:
            pivots.append([_split(b, w)[0] for b in level])
    rings = [[_ring(*b, h, w) for b in level] for level in boxes]

    pos = np.full(n + 1, -1, dtype=np.int64)
    depths: list[Depth] = []
    rr_all, cc_all = np.divmod(np.arange(n), w)
    for d, level in enumerate(boxes):
        p_count = len(level)
        s = max(1, max(len(x) for x in pivots[d]))
        b = max(1, max(len(x) for x in rings[d]))
        f = s + b
        piv = np.full((p_count, s), n, dtype=np.int64)
        ring = np.full((p_count, b), n, dtype=np.int64)
        ents = []
        child_rows = (
            np.zeros((p_count, 2, max(1, max(len(x) for x in rings[d + 1]))), dtype=np.int64)
            if d < depth
            else None
        )
        for p in range(p_count):
            pv, rg = np.asarray(pivots[d][p], dtype=np.int64), np.asarray(rings[d][p], np.int64)
            piv[p, : pv.size] = pv
            ring[p, : rg.size] = rg
            pos[pv] = np.arange(pv.size)
            pos[rg] = s + np.arange(rg.size)
            if pv.size:
                r, c = rr_all[pv], cc_all[pv]
                for a, j, wt in in_image_neighbours(r, c, h, w):
                    cpos = pos[j]
                    keep = cpos >= 0  # others lie inside a child box: handled there
                    ents.append((p, a[keep], cpos[keep], wt))
            if child_rows is not None:
                for k in range(2):
                    crg = np.asarray(rings[d + 1][2 * p + k], dtype=np.int64)
                    mapped = pos[crg]
                    if np.any(mapped < 0):  # pragma: no cover - a planning bug
                        raise AssertionError("child ring outside the parent front")
                    child_rows[p, k, : crg.size] = mapped
            pos[pv] = -1
            pos[rg] = -1
        counts = np.zeros(p_count, dtype=np.int64)
        for e in ents:
            counts[e[0]] += e[1].size
        e_max = max(1, int(counts.max()))
        ent_a = np.zeros((p_count, e_max), dtype=np.int64)
        ent_c = np.zeros((p_count, e_max), dtype=np.int64)
        ent_w = np.zeros((p_count, e_max))
        fill = np.zeros(p_count, dtype=np.int64)
        for p, a, cpos, wt in ents:
            k = fill[p]
            sl = slice(k, k + a.size)
            ent_a[p, sl], ent_c[p, sl] = a, cpos
            ent_w[p, sl] = wt
            fill[p] += a.size
        on_ring = ent_c >= s
        flat = ent_a * f + ent_c
        # Transposed entries for ring columns; pivot-pivot pairs appear twice already.
        flat_t = np.where(on_ring, ent_c * f + ent_a, flat)
        child_flat = None
        if child_rows is not None:
            child_flat = torch.from_numpy(
                (child_rows[..., :, None] * f + child_rows[..., None, :]).reshape(p_count, 2, -1)
            )
        depths.append(
            Depth(
                boxes=torch.tensor(level, dtype=torch.long),
                piv=torch.from_numpy(piv),
                ring=torch.from_numpy(ring),
                ent_a=torch.from_numpy(ent_a),
                ent_c=torch.from_numpy(ent_c),
                ent_flat=torch.from_numpy(flat),
                ent_flat_t=torch.from_numpy(flat_t),
                ent_w=torch.from_numpy(ent_w),
                ent_ring=torch.from_numpy(on_ring.astype(np.float64)),
                child_flat=child_flat,
                child_rows=None if child_rows is None else torch.from_numpy(child_rows),
                s=s,
                b=b,
            )
        )
    diag = _diagonal(h, w)
    # The all-removed factors of every box but the root (whose system would be singular:
    # with no kept pixel the operator annihilates constants).
    for d in range(depth, 0, -1):
        below = depths[d + 1].cache_u if d < depth else None
        _factor_removed(
            depths[d], None if below is None else below.view(-1, 2, *below.shape[1:]), diag
        )
    return depths, diag


def _diagonal(h: int, w: int) -> torch.Tensor:
    """d_i (summed in-image neighbour weights) as a flat (n + 1,) tensor (dummy: 1)."""
    out = np.ones(h * w + 1)
    out[:-1] = neighbour_sums(h, w).ravel()
    return torch.from_numpy(out)


def _factor_removed(lv: Depth, updates: torch.Tensor | None, diag: torch.Tensor) -> None:
    """Factorise every front of a depth with all pixels removed (the plan's cache).

    Args:
        lv: the depth; ``cache_l``, ``cache_w``, ``cache_u`` are set on it.
        updates: the children's cached updates, (P, 2, bc, bc), or None at the leaves.
        diag: (n + 1,) d_i.
    """
    p_count, s, f = lv.piv.shape[0], lv.s, lv.f
    n = diag.numel() - 1
    front = torch.zeros(p_count, f * f, dtype=torch.float64)
    real = (lv.piv < n).double()
    dvals = torch.where(real > 0, diag[lv.piv], torch.ones((), dtype=torch.float64))
    front.view(p_count, f, f).diagonal(dim1=1, dim2=2)[:, :s] = dvals
    vals = -lv.ent_w  # padding entries have weight 0
    front.scatter_add_(1, lv.ent_flat, vals)
    front.scatter_add_(1, lv.ent_flat_t, vals * lv.ent_ring)
    if updates is not None:
        front.scatter_add_(1, lv.child_flat.reshape(p_count, -1), updates.reshape(p_count, -1))
    front = front.view(p_count, f, f)
    lv.cache_l = torch.linalg.cholesky(front[:, :s, :s])
    lv.cache_w = torch.linalg.solve_triangular(lv.cache_l, front[:, :s, s:], upper=False)
    lv.cache_u = torch.baddbmm(front[:, s:, s:], lv.cache_w.mT, lv.cache_w, alpha=-1.0)
