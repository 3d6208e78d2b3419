"""Batched direct solver for the ROAD imputation systems of one image size.

Written over *all* pixels, with identity rows for the kept ones (``u_i = x_i``), each ROAD
system (:mod:`holiwidget.metrics.road.system`) is a symmetric positive definite matrix of
one fixed sparsity pattern. This module factorises such systems with a multifrontal
Cholesky over the nested dissection of the grid (:mod:`holiwidget.metrics.road.dissection`):

- a front is assembled from the operator's entries of its pivots plus the Schur
  complements (updates) of its two children, its pivots are eliminated with dense
  Cholesky (``L``, ``W = L^-1 F_sB``, update ``U = F_BB - W^T W``), level by level, all
  fronts of a level and all systems in one batched call;
- a box whose pixels are *all removed* has factors that depend on geometry only: the plan
  holds them, reused for every mask and image; a box with no removed pixel contributes
  nothing. Only boxes that straddle the mask's edge are factorised per system.

The triangular solves then run for all systems at once. The result equals a sparse direct
solve to rounding (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dissection import Depth, plan

__all__ = ["solve_masked"]

_KEPT, _REMOVED, _MIXED = 0, 1, 2


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


def _status(depths: list[Depth], rem2d: torch.Tensor) -> list[torch.Tensor]:
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
    lv: Depth, sys_idx: torch.Tensor, node_idx: torch.Tensor, rem: torch.Tensor, n: int
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
    depths: list[Depth],
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
    depths, diag = plan(h, w)
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
