"""The energy-based pointing game (EPG; Wang et al., Score-CAM, CVPRW 2020).

The share of a map's energy inside the ground-truth boxes of the explained class::

    EPG(L) = sum_ij L_ij M_ij / sum_ij L_ij,    M_ij = 1 inside any box of the class

Boxes are given in the pixel frame of the image *file* (``width`` x ``height``) and mapped
to the frame the network sees (the image resized to ``H x W`` without a crop, as
:func:`holiwidget.images.prepare_images` does)::

    x' = x * W / width,   y' = y * H / height

A pixel ``(i, j)`` (the unit square ``[j, j+1) x [i, i+1)``) belongs to a box when it
overlaps it: ``floor(x0') <= j < ceil(x1')`` and ``floor(y0') <= i < ceil(y1')``.

ImageNet objects are mostly central, so a centre prior -- a Gaussian centred on the image,
``exp(-((x - cx)^2 / (2 (s W)^2) + (y - cy)^2 / (2 (s H)^2)))`` with ``s = 0.25`` -- is
reported beside a method's EPG as its baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import HoliwidgetError

__all__ = ["box_mask", "centre_prior", "centre_prior_epg", "energy_pointing_game"]

_TOLERANCE = 1e-6


def box_mask(
    boxes: np.ndarray | Sequence[Sequence[float]],
    source_size: tuple[int, int],
    size: tuple[int, int] = (224, 224),
) -> np.ndarray:
    """Map boxes from a file's pixel frame to the resized frame and rasterise them.

    Args:
        boxes: (K, 4) x0, y0, x1, y1 in the file's pixels (0 <= x0 < x1 <= width, likewise y).
        source_size: the file's (width, height).
        size: the network input's (H, W).

    Returns:
        (H, W) bool, True on pixels that overlap any box.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
        raise HoliwidgetError(f"boxes must be (K, 4) x0, y0, x1, y1 with K >= 1, got {b.shape}")
    width, height = source_size
    h, w = size
    if min(width, height, h, w) <= 0:
        raise HoliwidgetError(f"sizes must be positive, got {source_size} and {size}")
    if not np.isfinite(b).all():
        raise HoliwidgetError("box coordinates must be finite numbers")
    tol = _TOLERANCE * max(width, height)
    for x0, y0, x1, y1 in b:
        if not (-tol <= x0 < x1 <= width + tol and -tol <= y0 < y1 <= height + tol):
            raise HoliwidgetError(
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} image "
                "or empty; give x0 < x1 <= width and y0 < y1 <= height in the file's pixels"
            )
    mask = np.zeros((h, w), dtype=bool)
    sx, sy = w / width, h / height
    for x0, y0, x1, y1 in b:
        c0 = max(0, math.floor(x0 * sx + _TOLERANCE))
        c1 = min(w, math.ceil(x1 * sx - _TOLERANCE))
        r0 = max(0, math.floor(y0 * sy + _TOLERANCE))
        r1 = min(h, math.ceil(y1 * sy - _TOLERANCE))
        mask[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = True
    return mask


def energy_pointing_game(
    maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor
) -> np.ndarray:
    """EPG = sum(L * M) / sum(L) per map.

    Args:
        maps: (H, W) or (N, H, W) non-negative maps.
        masks: (H, W) (shared) or (N, H, W) box masks (bool or 0/1).

    Returns:
        (N,) float64 in [0, 1]; NaN for a map that is zero everywhere (no energy).
    """
    lm = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, np.float64)
    mk = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if lm.ndim == 2:
        lm = lm[None]
    if mk.ndim == 2:
        mk = mk[None]
    if lm.ndim != 3 or mk.ndim != 3 or lm.shape[-2:] != mk.shape[-2:]:
        raise HoliwidgetError(
            f"maps {lm.shape} and box masks {mk.shape} must be (N, H, W) of the same H x W"
        )
    if mk.shape[0] not in (1, lm.shape[0]):
        raise HoliwidgetError(f"{mk.shape[0]} masks for {lm.shape[0]} maps; give one or one each")
    if not np.isfinite(lm).all() or (lm < 0).any():
        raise HoliwidgetError("maps must be finite and non-negative (energies)")
    if not np.isin(mk, (0, 1)).all():
        raise HoliwidgetError("box masks must be bool or 0/1")
    total = lm.sum(axis=(1, 2))
    inside = (lm * mk).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def centre_prior(height: int = 224, width: int = 224, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the image, peak 1: the centre-prior baseline map.

    ``exp(-((x - cx)^2 / (2 (sigma W)^2) + (y - cy)^2 / (2 (sigma H)^2)))`` at pixel
    centres, ``cx = W / 2``, ``cy = H / 2``.

    Args:
        height, width: the map's size.
        sigma: the standard deviation as a fraction of the side.

    Returns:
        (H, W) float64.
    """
    if height <= 0 or width <= 0 or not sigma > 0:
        raise HoliwidgetError(
            f"centre prior needs a positive size and sigma, got {height}x{width}, {sigma}"
        )
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def centre_prior_epg(masks: np.ndarray | torch.Tensor, sigma: float = 0.25) -> np.ndarray:
    """EPG of the centre prior for each box mask: the baseline to report beside a method's.

    Args:
        masks: (H, W) or (N, H, W) box masks.
        sigma: the prior's standard deviation as a fraction of the side.

    Returns:
        (N,) float64.
    """
    mk = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if mk.ndim == 2:
        mk = mk[None]
    if mk.ndim != 3:
        raise HoliwidgetError(f"box masks must be (H, W) or (N, H, W), got {mk.shape}")
    prior = centre_prior(mk.shape[1], mk.shape[2], sigma)
    return energy_pointing_game(np.broadcast_to(prior, mk.shape), mk)
