"""Batched direct solver for the ROAD imputation systems of one image size.

Every ROAD system is the same 8-neighbour operator on the pixel grid restricted to a mask
of removed pixels (see :mod:`holiwidget.metrics._imputation`). Written over *all* pixels,
with identity rows for the kept ones (``u_i = x_i``), each system is a symmetric positive
definite matrix of one fixed sparsity pattern. This module factorises such systems with a
multifrontal Cholesky over a geometric nested dissection of the grid:

- the grid is bisected recursively (the longer side at its middle line) to a fixed depth;
  a node of the tree owns the pixels of its separator line (a leaf: of its whole box), and
  its *front* is those pivots plus the ring of pixels around its box;
- a front is assembled from the operator's entries of its pivots plus the Schur
  complements (updates) of its two children, its pivots are eliminated with dense
  Cholesky (``L``, ``W = L^-1 F_sB``, update ``U = F_BB - W^T W``), level by level, all
  fronts of a level and all systems in one batched call;
- a box whose pixels are *all removed* has factors that depend on geometry only: they are
  computed once per image size (the plan) and reused for every mask and image; a box with
  no removed pixel contributes nothing. Only boxes that straddle the mask's edge are
  factorised per system.

The triangular solves then run for all systems at once. The result equals a sparse direct
solve to rounding (float64).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["solve_masked"]

_WEIGHTS = [
    ((dy, dx), (1 / 12 if dy and dx else 1 / 6))
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if dy or dx
]
_KEPT, _REMOVED, _MIXED = 0, 1, 2


@dataclass
class _Depth:
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
        return self.s + self.b


@dataclass
class _Chunk:
    """Fronts of (system, node) pairs that straddle a mask edge, compressed to their
    removed pixels (kept pixels are decoupled) and padded to the chunk's largest."""

    sys: torch.Tensor  # (K,)
    node: torch.Tensor  # (K,)
    piv_pos: torch.Tensor  # (K, sc) full-front positions of the removed pivots (pad: f)
    ring_pos: torch.Tensor  # (K, bc) full-front positions of the removed ring (pad: f)
    piv_pix: torch.Tensor  # (K, sc) their pixels (pad: n)
    ring_pix: torch.Tensor  # (K, bc)
    chol: torch.Tensor | None = None  # (K, sc, sc)
    w: torch.Tensor | None = None  # (K, sc, bc)
    upd: torch.Tensor | None = None  # (K, bc, bc)


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
def _plan(h: int, w: int, leaf: int = 128) -> tuple[list[_Depth], torch.Tensor]:
    """The dissection tree of an h x w grid and the all-removed factors of its boxes."""
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
    depths: list[_Depth] = []
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
                for (dy, dx), wt in _WEIGHTS:
                    ry, cx = r + dy, c + dx
                    ok = (ry >= 0) & (ry < h) & (cx >= 0) & (cx < w)
                    a = np.flatnonzero(ok)
                    j = ry[ok] * w + cx[ok]
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
            _Depth(
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
    diag = _neighbour_sums(h, w)
    # The all-removed factors of every box but the root (whose system would be singular:
    # with no kept pixel the operator annihilates constants).
    for d in range(depth, 0, -1):
        below = depths[d + 1].cache_u if d < depth else None
        _factor_removed(
            depths[d], None if below is None else below.view(-1, 2, *below.shape[1:]), diag
        )
    return depths, diag


def _neighbour_sums(h: int, w: int) -> torch.Tensor:
    """d_i (summed in-image neighbour weights) as a flat (n + 1,) tensor (dummy: 1)."""
    d = np.zeros((h + 2, w + 2))
    for (dy, dx), wt in _WEIGHTS:
        d[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] += wt
    out = np.ones(h * w + 1)
    out[:-1] = d[1:-1, 1:-1].ravel()
    return torch.from_numpy(out)


def _factor_removed(lv: _Depth, updates: torch.Tensor | None, diag: torch.Tensor) -> None:
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


def _status(depths: list[_Depth], rem2d: torch.Tensor) -> list[torch.Tensor]:
    """Per depth, (S, P) kept / removed / mixed from an integral image of the masks."""
    s_count, h, w = rem2d.shape
    integral = torch.zeros(s_count, h + 1, w + 1, dtype=torch.long)
    integral[:, 1:, 1:] = rem2d.long().cumsum(1).cumsum(2)
    out = []
    for lv in depths:
        r0, r1, c0, c1 = lv.boxes.unbind(1)
        count = (
            integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
        )
        area = (r1 - r0) * (c1 - c0)
        st = torch.full_like(count, _MIXED)
        st[count == 0] = _KEPT
        st[(count == area[None]) & (area[None] > 0)] = _REMOVED
        out.append(st)
    return out


_CHUNK = 32


def _compress(
    lv: _Depth, sys_idx: torch.Tensor, node_idx: torch.Tensor, rem: torch.Tensor, n: int
) -> tuple[list[_Chunk], torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Group the mixed pairs of a level into size-sorted chunks of compressed fronts.

    A chunk's fronts are ``(fc + 1) x (fc + 1)`` with ``fc = sc + bc``: the removed pivots,
    the removed ring, and a last *trash* row and column where everything that does not
    belong to the front (kept pixels, padding) is added and then ignored.

    Returns:
        The chunks; per pair (in the given order) the map from full-front position
        (``f + 1`` slots, the last one padding) to compressed position (trash for a kept
        pixel), the offset of its front in the level's flat buffer and its side
        ``fc + 1``; and the buffer's length.
    """
    s, f = lv.s, lv.f
    m = sys_idx.numel()
    pix = torch.cat([lv.piv[node_idx], lv.ring[node_idx]], dim=1)  # (M, f)
    removed = rem[sys_idx[:, None], pix] > 0
    s_eff = removed[:, :s].sum(1)
    b_eff = removed[:, s:].sum(1)
    order = torch.argsort(b_eff * (s + 1) + s_eff, stable=True)
    cmap = torch.empty((m, f + 1), dtype=torch.long)
    offsets = torch.zeros(m, dtype=torch.long)
    sides = torch.zeros(m, dtype=torch.long)
    chunks = []
    total = 0
    for start in range(0, m, _CHUNK):
        rows = order[start : start + _CHUNK]
        k = rows.numel()
        sc = max(1, int(s_eff[rows].max()))
        bc = max(1, int(b_eff[rows].max()))
        fc = sc + bc
        rem_rows = removed[rows]
        rank_p = torch.cumsum(rem_rows[:, :s].long(), 1) - 1
        rank_b = torch.cumsum(rem_rows[:, s:].long(), 1) - 1
        comp = torch.full((k, f + 1), fc, dtype=torch.long)
        comp[:, :s] = torch.where(rem_rows[:, :s], rank_p, fc)
        comp[:, s:f] = torch.where(rem_rows[:, s:], sc + rank_b, fc)
        cmap[rows] = comp
        offsets[rows] = total + torch.arange(k) * (fc + 1) ** 2
        sides[rows] = fc + 1
        total += k * (fc + 1) ** 2
        # full-front positions of the compressed slots (pad: f) and their pixels (pad: n)
        piv_pos = torch.full((k, sc), f, dtype=torch.long)
        ring_pos = torch.full((k, bc), f, dtype=torch.long)
        rr, cc = torch.nonzero(rem_rows[:, :s], as_tuple=True)
        piv_pos[rr, rank_p[rr, cc]] = cc
        rr, cc = torch.nonzero(rem_rows[:, s:], as_tuple=True)
        ring_pos[rr, rank_b[rr, cc]] = s + cc
        pix_pad = torch.cat([pix[rows], torch.full((k, 1), n, dtype=torch.long)], dim=1)
        chunks.append(
            _Chunk(
                sys=sys_idx[rows],
                node=node_idx[rows],
                piv_pos=piv_pos,
                ring_pos=ring_pos,
                piv_pix=torch.gather(pix_pad, 1, piv_pos),
                ring_pix=torch.gather(pix_pad, 1, ring_pos),
            )
        )
    return chunks, cmap, offsets, sides, total


def _flat(offsets: torch.Tensor, sides: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Flat buffer indices of all (row, col) pairs of compressed positions (R, b) -> (R, b, b)."""
    rows = offsets[:, None] + pos * sides[:, None]
    return rows[:, :, None] + pos[:, None, :]


def _factor_level(
    depths: list[_Depth],
    d: int,
    status: list[torch.Tensor],
    rem: torch.Tensor,
    diag: torch.Tensor,
    chunks_below: list[_Chunk],
    n: int,
) -> list[_Chunk]:
    """Factorise the compressed fronts of the mixed (system, node) pairs at depth d.

    A front holds only the removed pixels among its pivots and ring (a kept pixel couples
    to nothing). It is assembled in a flat buffer shared by the level: the operator's
    entries between removed pixels, the removed pivots' diagonals, and the children's
    updates -- cached ones for children whose box is all removed (kept ring rows sent to
    the trash), computed ones for mixed children. Padding pivots get an identity diagonal.
    """
    lv = depths[d]
    sys_idx, node_idx = torch.nonzero(status[d] == _MIXED, as_tuple=True)
    if sys_idx.numel() == 0:
        return []
    rows_of = torch.full(status[d].shape, -1, dtype=torch.long)
    rows_of[sys_idx, node_idx] = torch.arange(sys_idx.numel())
    chunks, cmap, offsets, sides, total = _compress(lv, sys_idx, node_idx, rem, n)
    buf = torch.zeros(total, dtype=torch.float64)
    s = lv.s
    trash = sides - 1
    # operator entries between removed pixels (value -w) and the removed pivots' diagonals
    ca = torch.gather(cmap, 1, lv.ent_a[node_idx])
    cc = torch.gather(cmap, 1, lv.ent_c[node_idx])
    vals = -lv.ent_w[node_idx]
    rows = offsets[:, None] + ca * sides[:, None]
    buf.index_add_(0, (rows + cc).view(-1), vals.view(-1))
    cc_t = torch.where(lv.ent_ring[node_idx] > 0, cc, trash[:, None])
    buf.index_add_(0, (offsets[:, None] + cc_t * sides[:, None] + ca).view(-1), vals.view(-1))
    dpos = cmap[:, :s]
    buf.index_add_(
        0,
        (offsets[:, None] + dpos * (sides[:, None] + 1)).view(-1),
        diag[lv.piv[node_idx]].view(-1),
    )
    if d + 1 < len(depths):
        nxt = depths[d + 1]
        kids = 2 * node_idx[:, None] + torch.arange(2)  # (M, 2)
        st = status[d + 1][sys_idx[:, None], kids]
        # children with every pixel removed: the cached update; kept ring rows go to trash
        pr, slot = torch.nonzero(st == _REMOVED, as_tuple=True)
        if pr.numel():
            pos = torch.gather(cmap[pr], 1, lv.child_rows[node_idx[pr], slot])
            kept = rem[sys_idx[pr][:, None], nxt.ring[kids[pr, slot]]] <= 0
            pos = torch.where(kept, trash[pr][:, None], pos)
            idx = _flat(offsets[pr], sides[pr], pos)
            buf.index_add_(0, idx.view(-1), nxt.cache_u[kids[pr, slot]].view(-1))
        # mixed children: their compressed updates
        for ch in chunks_below:
            parent = rows_of[ch.sys, ch.node // 2]
            valid = ch.ring_pos < nxt.f
            rel = torch.where(valid, ch.ring_pos - nxt.s, 0)
            full = lv.child_rows[(ch.node // 2)[:, None], (ch.node % 2)[:, None], rel]
            full = torch.where(valid, full, lv.f)  # padding -> the padding slot -> trash
            pos = torch.gather(cmap[parent], 1, full)
            idx = _flat(offsets[parent], sides[parent], pos)
            buf.index_add_(0, idx.view(-1), ch.upd.reshape(-1))
    for ch in chunks:
        k, sc, bc = ch.piv_pos.shape[0], ch.piv_pos.shape[1], ch.ring_pos.shape[1]
        side = sc + bc + 1
        start = int(offsets[rows_of[ch.sys[0], ch.node[0]]])
        front = buf[start : start + k * side * side].view(k, side, side)
        pad = (ch.piv_pos == lv.f).double()
        front.diagonal(dim1=1, dim2=2)[:, :sc] += pad  # padding pivots: identity
        ch.chol = torch.linalg.cholesky(front[:, :sc, :sc])
        ch.w = torch.linalg.solve_triangular(ch.chol, front[:, :sc, sc:-1], upper=False)
        ch.upd = torch.baddbmm(front[:, sc:-1, sc:-1], ch.w.mT, ch.w, alpha=-1.0)
    return chunks


def solve_masked(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Impute the removed pixels of one image under several masks.

    Args:
        image: (C, H, W) float64.
        removed: (S, H, W) bool masks (none of them removes every pixel).

    Returns:
        (S, C, H, W) float64 images whose removed pixels hold the solution.
    """
    c_count, h, w = image.shape
    s_count = removed.shape[0]
    n = h * w
    depths, diag = _plan(h, w)
    rem = torch.zeros(s_count, n + 1, dtype=torch.float64)
    rem[:, :n] = removed.reshape(s_count, n).double()
    status = _status(depths, removed)

    # Right-hand sides over all pixels: b_i for removed, x_i for kept, 0 for the dummy;
    # vectors are laid out (pixel, system, channel) so that the cached factors, shared by
    # all systems, solve for all of them in one call.
    # The neighbour sum is separable: 12 sum_j w_ij v_j = ([1 2 1] x [1 2 1] - 4 delta) v.
    x = image.reshape(c_count, n).T  # (n, C)
    rem_t = rem.T.contiguous()  # (n + 1, S)
    xk = torch.zeros(h + 2, w + 2, s_count, c_count, dtype=torch.float64)
    xk[1:-1, 1:-1] = x.view(h, w, 1, c_count) * (1.0 - rem_t[:n]).view(h, w, s_count, 1)
    t = xk[:, :-2] + xk[:, 2:]
    t.add_(xk[:, 1:-1], alpha=2.0)
    acc = t[:-2] + t[2:]
    acc.add_(t[1:-1], alpha=2.0).sub_(xk[1:-1, 1:-1], alpha=4.0).div_(12.0)
    rhs = torch.zeros(n + 1, s_count, c_count, dtype=torch.float64)
    rhs[:n] = torch.where(rem_t[:n, :, None] > 0, acc.view(n, s_count, c_count), x[:, None])

    # Factorise the fronts that straddle a mask edge, bottom-up.
    last = len(depths) - 1
    chunks: list[list[_Chunk]] = [[] for _ in depths]
    for d in range(last, -1, -1):
        below = chunks[d + 1] if d < last else []
        chunks[d] = _factor_level(depths, d, status, rem, diag, below, n)

    # Forward elimination of the right-hand sides, bottom-up.
    cols = s_count * c_count
    ys: list[tuple[torch.Tensor | None, list[torch.Tensor]]] = [(None, [])] * len(depths)
    carry = None
    for d in range(last, -1, -1):
        lv = depths[d]
        p_count, s, b, f = lv.piv.shape[0], lv.s, lv.b, lv.f
        fr = torch.zeros(p_count, f + 1, s_count, c_count, dtype=torch.float64)
        fr[:, :s] = rhs[lv.piv]
        if carry is not None:
            idx = (torch.arange(p_count)[:, None, None] * (f + 1) + lv.child_rows).reshape(-1)
            fr.view(-1, s_count, c_count).index_add_(0, idx, carry)
        ring_rhs = torch.zeros(p_count, b + 1, s_count, c_count, dtype=torch.float64)
        removed_here = (status[d] == _REMOVED).T  # (P, S)
        y_cached = None
        if lv.cache_l is not None and removed_here.any():
            yc = torch.linalg.solve_triangular(
                lv.cache_l, fr[:, :s].reshape(p_count, s, cols), upper=False
            )
            rb = fr[:, s:f].reshape(p_count, b, cols) - lv.cache_w.mT @ yc
            # kept ring rows receive nothing; only boxes removed in that system count
            gate = rem_t[lv.ring] * removed_here[:, None, :]
            ring_rhs[:, :b] = rb.view(p_count, b, s_count, c_count) * gate[..., None]
            y_cached = yc
        y_mixed = []
        for ch in chunks[d]:
            sys_col = ch.sys[:, None]
            rs = fr[ch.node[:, None], ch.piv_pos, sys_col]
            ym = torch.linalg.solve_triangular(ch.chol, rs, upper=False)
            rb = fr[ch.node[:, None], ch.ring_pos, sys_col] - ch.w.mT @ ym
            pos = torch.where(ch.ring_pos < f, ch.ring_pos - s, b)
            ring_rhs[ch.node[:, None], pos, sys_col] = rb
            y_mixed.append(ym)
        ys[d] = (y_cached, y_mixed)
        if d:  # rows laid out as the parents' child_rows: (parent, child, ring row)
            carry = ring_rhs[:, :b].reshape(-1, s_count, c_count)

    # Back substitution, top-down. ``ur`` holds the solution on removed pixels and zero on
    # kept ones, so a ring read through the (all-removed) cached W needs no masking.
    ur = torch.zeros(n + 1, s_count, c_count, dtype=torch.float64)
    for d in range(last + 1):
        lv = depths[d]
        p_count, s, b = lv.piv.shape[0], lv.s, lv.b
        y_cached, y_mixed = ys[d]
        if y_cached is not None:
            ub = ur[lv.ring].view(p_count, b, cols)
            uc = torch.linalg.solve_triangular(
                lv.cache_l.mT, y_cached - lv.cache_w @ ub, upper=True
            ).view(p_count, s, s_count, c_count)
            # every pixel is the pivot of one node: its slot in ur is still zero here
            ur[lv.piv] = uc * (status[d] == _REMOVED).T[:, None, :, None]
        for ch, ym in zip(chunks[d], y_mixed, strict=True):
            sys_col = ch.sys[:, None]
            ub = ur[ch.ring_pix, sys_col]
            um = torch.linalg.solve_triangular(ch.chol.mT, ym - ch.w @ ub, upper=True)
            ur[ch.piv_pix, sys_col] = um
        ur[n] = 0.0
    u = torch.where(rem_t[:n, :, None] > 0, ur[:n], x[:, None])
    return u.permute(1, 2, 0).reshape(s_count, c_count, h, w)
