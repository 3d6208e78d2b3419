"""Fused channel products of scale-averaged, upsampled stacks through torch (any device)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .banded import banded_products
from .gram import gram_products
from .policy import GRAM_MAX_DENSITY

__all__ = ["torch_products"]


def torch_products(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    size: tuple[int, int],
    *,
    totals: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel sums of products of scale-averaged, bilinearly upsampled stacks::

        P = sum_k ( mean_s up(x_s)[k] ) * ( mean_s up(y_s)[k] )
        B = sum_k up(x_0)[k] * up(y_0)[k]                  (the first scale alone)

    ``up`` is bilinear interpolation (``align_corners=False``) to ``size``. The means are
    taken separately before the product, as Holistic-CAM's fusion and CAMERAS require. With
    ``totals``, ``ys`` are gradients G and ``y`` above is their PGE weights
    (:func:`holiwidget.methods.holistic.pge_from_totals`), computed chunk by chunk. Nothing
    of size K x H x W is ever held: coarse stacks (at most
    :data:`~holiwidget.fusion.policy.GRAM_MAX_DENSITY` native pixels per output pixel over
    the scales) go the Gram way, finer ones the banded way.

    Args:
        xs: per scale, stacks (K, h_s, w_s), contiguous or channels-last.
        ys: the same shapes.
        size: the output (H, W).
        totals: per scale, S_k, the activations' channel sums over their pixels (K, 1, 1).

    Returns:
        P and B, each (H, W), on the stacks' device.
    """
    natives = sum(x.shape[1] * x.shape[2] for x in xs)
    way = gram_products if natives <= GRAM_MAX_DENSITY * size[0] * size[1] else banded_products
    return way(xs, ys, size, totals=totals)
