"""Insertion and deletion for the explorer, from :mod:`holiwidget.metrics.causal`.

The explorer computes no metric of its own: it calls the metrics library on the image as the
network sees it and one map (the curves view) or every map of the grid (``score all maps``:
one batched run, the maps of all cells paired with the one image).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..images import prepare_images
from ..metrics import causal

__all__ = ["CurveSet", "score_maps"]

#: One map's curves: ``{"insertion": (fractions, probabilities, auc), "deletion": (...)}``.
CurveSet = dict[str, tuple[np.ndarray, np.ndarray, float]]


def score_maps(
    model: nn.Module,
    rgb: np.ndarray,
    maps: np.ndarray,
    target: int,
    device: str | torch.device = "cpu",
) -> list[CurveSet]:
    """Insertion and deletion curves of maps of one image (RISE protocol, 224 pixels a step).

    Args:
        model: the classifier.
        rgb: the image as the network sees it, (H, W, 3) uint8.
        maps: (M, H, W) saliency maps (or one (H, W) map), all scored in one batched run.
        target: the explained class.
        device: where to run the model.

    Returns:
        One :data:`CurveSet` per map, in order.
    """
    x = prepare_images(np.asarray(rgb)).tensor[:1]
    stack = np.asarray(maps, dtype=np.float32)
    stack = stack[None] if stack.ndim == 2 else stack
    scores = causal.insertion_deletion(model, x, stack, [int(target)], device=device)
    out: list[CurveSet] = []
    for i in range(stack.shape[0]):
        out.append(
            {
                kind.kind: (
                    np.asarray(kind.fractions, dtype=np.float64),
                    np.asarray(kind.curves, dtype=np.float64)[i],
                    float(np.asarray(kind.auc)[i]),
                )
                for kind in (scores.insertion, scores.deletion)
            }
        )
    return out
