"""Holistic-CAM (Chen et al., ACM MM 2024): PGE weights and fundamental-scale denoising.

The fusion across the eight-scale input pyramid (the primary attribution map, PHA) is
:mod:`holiwidget.fusion`; this module holds what comes before it (PGE) and after it (FSD).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import HoliwidgetError

__all__ = [
    "MAX_BOX",
    "MAX_MEDIAN",
    "PGE_EPS",
    "Denoising",
    "denoise_settings",
    "holistic_map",
    "low_pass_wrap",
    "pge_from_totals",
    "pge_weights",
]

#: PGE's eps, once in the denominator.
PGE_EPS = 1e-6
#: The largest median kernel: OpenCV's 8-bit median filter counts its window in 16-bit
#: histogram bins, which hold a 255 x 255 window (65025 values) on every map. Beyond that it
#: depends on the map: from 299 on it fails (an assertion inside OpenCV) or gives wrong medians.
MAX_MEDIAN = 255
#: The largest box kernel. OpenCV's 8-bit box filter is exact up to 46339 (its 32-bit sums
#: overflow beyond); a box many times the map's side is just the map's mean, so 4095 leaves
#: room for large tensor inputs (the paper's 91 at 224 pixels is 4095 at 10080) and catches
#: slips such as 9100 for 91.
MAX_BOX = 4095


def pge_weights(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Element-wise weighted positive gradients (PGE) at one scale, native resolution.

    ::

        G+    = ReLU(G)
        S_k   = sum_ab A[k, a, b]
        alpha = G+^2 / (2 G+^2 + S_k G+^3 + 1e-6)      (0 where G+ == 0)
        W     = alpha * G+                              element-wise, no spatial reduction

    Args:
        activation: A, (..., K, h, w).
        gradient: G = dy_c/dA, same shape.

    Returns:
        W, same shape.
    """
    return pge_from_totals(gradient, activation.sum(dim=(-2, -1), keepdim=True))


def pge_from_totals(
    gradient: torch.Tensor, totals: torch.Tensor, *, overwrite: bool = False
) -> torch.Tensor:
    """:func:`pge_weights` from G and the per-channel spatial sums S_k (..., K, 1, 1) of A.

    ``overwrite=True`` lets it use ``gradient``'s memory (which then holds ReLU(G)): one
    temporary of G's size less.
    """
    g = torch.relu_(gradient) if overwrite else torch.relu(gradient)
    g2 = g * g
    den = (g * totals).add_(2).mul_(g2).add_(PGE_EPS)  # 2 G+^2 + S_k G+^3 + eps
    return g2.mul_(g).div_(den)  # alpha * G+ = G+^3 / den (0 where G+ == 0)


@dataclass(frozen=True)
class Denoising:
    """Holistic-CAM's fundamental-scale denoising (FSD) parameters, validated when made.

    The one home of the defaults (the paper's: tau 0.5, median 51, box 91, for 224 x 224).

    Attributes:
        threshold: the fusion denoising threshold tau, in (0, 1] (Python or numpy number).
        median: the median kernel m of the low-pass wrap (odd, 1 to :data:`MAX_MEDIAN`;
            1 is no filter).
        box: the box kernel b of the low-pass wrap, the low-pass cutoff (odd, 1 to
            :data:`MAX_BOX`).

    Raises:
        HoliwidgetError: a value out of range, in one line with the defaults.
    """

    threshold: float = 0.5
    median: int = 51
    box: int = 91

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < float(t) <= 1:
            raise HoliwidgetError(
                f"threshold must be in (0, 1], got {t!r}; the default is {Denoising.threshold}"
            )
        limits = (
            ("median", MAX_MEDIAN, " (OpenCV's 8-bit median filter breaks above)"),
            ("box", MAX_BOX, ""),
        )
        for name, most, why in limits:
            k = getattr(self, name)
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= most:
                raise HoliwidgetError(
                    f"{name} kernel must be an odd integer from 1 to {most}{why}, got {k!r} "
                    f"(defaults: median {Denoising.median}, box {Denoising.box})"
                )
            if k % 2 == 0:
                raise HoliwidgetError(
                    f"{name} kernel must be odd, got {k!r}; use {k - 1} or {k + 1} "
                    f"(defaults: median {Denoising.median}, box {Denoising.box})"
                )
            object.__setattr__(self, name, int(k))
        object.__setattr__(self, "threshold", float(t))

    def as_dict(self) -> dict[str, float | int]:
        """``{"threshold": ..., "median": ..., "box": ...}``."""
        return {"threshold": self.threshold, "median": self.median, "box": self.box}

    def apply(
        self, primary: np.ndarray, fundamental: np.ndarray, *, denoise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The final map from a kept PHA and M_f: see :func:`holistic_map`."""
        pha = np.asarray(primary, dtype=np.float32)
        if denoise:
            lpw = low_pass_wrap(fundamental, self.threshold, self.median, self.box)
            h = pha * lpw.astype(np.float32)
        else:
            lpw = np.full(pha.shape, 255, dtype=np.uint8)
            h = pha
        return _finished(h), lpw


def low_pass_wrap(fundamental: np.ndarray, threshold: float, median: int, box: int) -> np.ndarray:
    """The low-pass wrap (LPW): the 8-bit mask that denoising multiplies into the PHA.

    ::

        u   = minmax(min(minmax(M_f), tau))
        q   = uint8(round(255 u))
        lpw = box_b(median_m(q))      median: edge-replicated border; box: reflect-101,
                                      rounded to uint8

    A constant fundamental-scale map gives an all-255 mask (no denoising) instead of NaN.

    Args:
        fundamental: M_f, the fundamental-scale map (H, W).
        threshold: tau in (0, 1].
        median: odd median kernel m.
        box: odd box kernel b.

    Returns:
        The mask as uint8 (H, W).
    """
    return _box(_median(_saturated(fundamental, threshold), median), box)


def _saturated(fundamental: np.ndarray, threshold: float) -> np.ndarray:
    """``uint8(round(255 minmax(min(minmax(M_f), tau))))``; all 255 for a constant M_f."""
    f = np.asarray(fundamental, dtype=np.float32)
    lo, hi = f.min(), f.max()
    if not hi > lo:
        return np.full(f.shape, 255, dtype=np.uint8)
    u = np.minimum((f - lo) / (hi - lo), np.float32(threshold))
    u = u / u.max()
    return np.round(u * np.float32(255)).astype(np.uint8)


def _median(q: np.ndarray, median: int) -> np.ndarray:
    return cv2.medianBlur(q, int(median)) if median > 1 else q


def _box(q: np.ndarray, box: int) -> np.ndarray:
    return cv2.blur(q, (int(box), int(box))) if box > 1 else q


def _finished(h: np.ndarray) -> np.ndarray:
    """``(H - min) / (max - min + 1e-8)`` as float32; all zero for a constant H."""
    lo, hi = h.min(), h.max()
    if not hi > lo:
        return np.zeros(h.shape, dtype=np.float32)
    return ((h - lo) / (hi - lo + np.float32(1e-8))).astype(np.float32)


def denoise_settings(
    primary: np.ndarray, fundamental: np.ndarray, settings: Sequence[Denoising | None]
) -> np.ndarray:
    """The final maps of one kept PHA and M_f under many denoising settings at once.

    Each map equals :meth:`Denoising.apply` with that setting (None: no denoising, H = PHA),
    bit for bit. The work is shared: the saturation depends on tau only and the median
    filter on (tau, m) only, so each is computed once and reused across the box kernels.

    Args:
        primary: PHA (H, W).
        fundamental: M_f (H, W).
        settings: the settings (None for denoising off).

    Returns:
        (len(settings), H, W) float32 maps in [0, 1].
    """
    pha = np.asarray(primary, dtype=np.float32)
    out = np.empty((len(settings), *pha.shape), dtype=np.float32)
    saturated: dict[float, np.ndarray] = {}
    medians: dict[tuple[float, int], np.ndarray] = {}
    for i, setting in enumerate(settings):
        if setting is None:
            out[i] = _finished(pha)
            continue
        t, m = setting.threshold, setting.median
        if t not in saturated:
            saturated[t] = _saturated(fundamental, t)
        if (t, m) not in medians:
            medians[t, m] = _median(saturated[t], m)
        out[i] = _finished(pha * _box(medians[t, m], setting.box).astype(np.float32))
    return out


def holistic_map(
    primary: np.ndarray,
    fundamental: np.ndarray,
    threshold: float = Denoising.threshold,
    median: int = Denoising.median,
    box: int = Denoising.box,
    *,
    denoise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The final Holistic-CAM map from the kept PHA and fundamental-scale map.

    ``H = PHA * LPW``, then ``(H - min) / (max - min + 1e-8)``; a constant ``H`` gives an
    all-zero map. No network pass is involved: this is what the explorer's sliders call.

    Args:
        primary: the primary attribution map PHA (H, W).
        fundamental: the fundamental-scale map M_f (H, W).
        threshold: fusion denoising threshold tau.
        median: median kernel m (odd).
        box: box kernel b (odd), the low-pass cutoff.
        denoise: False gives the map without denoising (``H = PHA``).

    Returns:
        The map in [0, 1] (float32) and the low-pass wrap (uint8; all 255 when not denoising).
    """
    return Denoising(threshold, median, box).apply(primary, fundamental, denoise=denoise)
