"""Insertion and deletion curves for the explorer, from :mod:`holiwidget.metrics.causal`.

The explorer computes no metric of its own; it calls the metrics library on the image as
the network sees it and the current map.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..images import prepare_images
from ..metrics import causal

__all__ = ["compute_curves"]


def compute_curves(
    model: nn.Module,
    rgb: np.ndarray,
    saliency: np.ndarray,
    target: int,
    device: str | torch.device = "cpu",
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Insertion and deletion curves of one map (RISE protocol, 224 pixels per step).

    Args:
        model: the classifier.
        rgb: the image as the network sees it, (H, W, 3) uint8.
        saliency: the map, (H, W).
        target: the explained class.
        device: where to run the model.

    Returns:
        ``{"insertion": (fractions, probabilities, auc), "deletion": (...)}``.
    """
    x = prepare_images(np.asarray(rgb)).tensor[:1]
    maps = np.asarray(saliency, dtype=np.float32)[None]
    out = {}
    for name in ("insertion", "deletion"):
        result = getattr(causal, name)(model, x, maps, [int(target)], device=device)
        out[name] = (
            np.asarray(result.fractions, dtype=np.float64),
            np.asarray(result.curves, dtype=np.float64)[0],
            float(np.asarray(result.auc)[0]),
        )
    return out
