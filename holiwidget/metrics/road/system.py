"""The ROAD imputation system: its 8-neighbour weights, and the reference direct solve.

Each removed pixel ``i`` is the weighted mean of its in-image 8-neighbours::

    d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j,     d_i = sum_{j in image} w_ij

with ``w = 1/6`` for the 4 direct and ``1/12`` for the 4 diagonal neighbours (Rong et al.,
ICML 2022; the system pytorch-grad-cam's ``NoisyLinearImputer`` builds). The matrix is
symmetric positive definite whenever at least one pixel is kept.

Two solvers give the same solution (to float64 rounding):

- :func:`impute_direct` (here): per mask, the system over the removed pixels assembled in
  one vectorised step with ``scipy.sparse`` and factorised by SuperLU (symmetric mode,
  minimum-degree ordering on A + A^T) -- the reference;
- :func:`holiwidget.metrics.road.multifrontal.solve_masked`: all masks of one image at
  once, by a batched multifrontal Cholesky over a nested dissection of the pixel grid
  (:mod:`holiwidget.metrics.road.dissection`) that reuses the factors of fully removed
  boxes; several times faster.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ...errors import HoliwidgetError

__all__ = ["NEIGHBOUR_WEIGHTS", "impute_direct", "in_image_neighbours", "neighbour_sums"]

#: (row offset, column offset) -> weight of that neighbour in the imputation.
NEIGHBOUR_WEIGHTS: dict[tuple[int, int], float] = {
    (dy, dx): (1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
}


def in_image_neighbours(
    rows: np.ndarray, cols: np.ndarray, h: int, w: int
) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """The in-image neighbours of some pixels of an h x w grid, one offset at a time.

    Args:
        rows, cols: (K,) the pixels' coordinates.
        h, w: the grid's size.

    Yields:
        For each neighbour offset (in :data:`NEIGHBOUR_WEIGHTS`' order): the positions in
        ``rows`` / ``cols`` of the pixels whose neighbour lies in the image, those
        neighbours' flat pixel ids ``row * w + col``, and the offset's weight.
    """
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS.items():
        rr, cc = rows + dy, cols + dx
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        yield np.flatnonzero(ok), rr[ok] * w + cc[ok], wt


def neighbour_sums(h: int, w: int) -> np.ndarray:
    """The diagonal ``d_i = sum_{j in image} w_ij`` of every pixel of an h x w grid.

    Args:
        h, w: the grid's size.

    Returns:
        (h, w) float64 (1 away from the border, less on it).
    """
    d = np.zeros((h + 2, w + 2))
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS.items():
        d[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] += wt
    return d[1:-1, 1:-1]


def _check(image: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, dtype=np.float64)
    rem = np.asarray(removed, dtype=bool)
    if img.ndim != 3 or rem.shape != img.shape[1:]:
        raise HoliwidgetError(
            f"imputation needs an image (C, H, W) and a mask (H, W), got {img.shape} and {rem.shape}"
        )
    if rem.all():
        raise HoliwidgetError(
            "every pixel is removed, so linear imputation is undefined; keep at least one pixel"
        )
    return img, rem


def impute_direct(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Solve the imputation system with a sparse direct factorisation (SuperLU).

    The system over the removed pixels is assembled in one vectorised step (one entry list
    per neighbour offset, no element-wise insertion) and factorised once for all channels.

    Args:
        image: (C, H, W) values (any float dtype; solved in float64).
        removed: (H, W) bool, True where a pixel is removed.

    Returns:
        (C, H, W) float64: the image with the removed pixels imputed (no noise).
    """
    img, rem = _check(image, removed)
    c, h, w = img.shape
    flat = rem.ravel()
    idx = np.flatnonzero(flat)
    n = idx.size
    out = img.reshape(c, -1).copy()
    if n == 0:
        return out.reshape(c, h, w)
    var = np.full(h * w, -1, dtype=np.int64)
    var[idx] = np.arange(n)
    r, col = np.divmod(idx, w)
    diag = neighbour_sums(h, w).ravel()[idx]
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    rhs = np.zeros((n, c))
    for eq, nb, wt in in_image_neighbours(r, col, h, w):
        v = var[nb]
        inner = v >= 0
        rows.append(eq[inner])
        cols.append(v[inner])
        vals.append(np.full(int(inner.sum()), -wt))
        np.add.at(rhs, eq[~inner], wt * img.reshape(c, -1)[:, nb[~inner]].T)
    vals.insert(0, diag)
    a = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    out[:, idx] = lu.solve(rhs).T
    return out.reshape(c, h, w)
