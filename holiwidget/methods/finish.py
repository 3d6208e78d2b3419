"""How raw attribution maps become comparable [0, 1] maps at the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["finish_maps", "minmax", "resize_maps"]


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each 2-D map of a stack (..., h, w) to [0, 1].

    ``(x - min) / (max - min)``; a constant map becomes all zeros, never NaN. (No absolute
    epsilon: maps whose values are all tiny still span [0, 1].)

    Args:
        maps: the stack of maps.

    Returns:
        The normalised stack, same shape.
    """
    flat = maps.flatten(-2)
    lo = flat.min(-1, keepdim=True).values
    span = flat.max(-1, keepdim=True).values - lo
    out = torch.where(
        span > 0, (flat - lo) / torch.where(span > 0, span, 1), torch.zeros_like(flat)
    )
    return out.view_as(maps)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of a stack of 2-D maps (..., h, w)."""
    if maps.shape[-2:] == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(1, -1, *maps.shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(
        *lead, *size
    )


def finish_maps(native: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The baselines' common ending: ReLU, bilinear upsampling to the input size, min-max.

    Args:
        native: raw maps (N, h, w) at the layer's resolution.
        size: the input (H, W).

    Returns:
        (N, H, W) maps in [0, 1].
    """
    return minmax(resize_maps(torch.relu(native), size))
