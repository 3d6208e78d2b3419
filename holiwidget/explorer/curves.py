"""Insertion and deletion curves for the explorer, from :mod:`holiwidget.metrics.causal`.

The explorer computes no metric of its own; it calls the metrics library on the image as
the network sees it and the current map.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import numpy as np
import torch
from torch import nn

from ..images import prepare_images

__all__ = ["MISSING", "causal_module", "compute_curves"]

log = logging.getLogger(__name__)

#: Why the curves cannot be computed when the metrics module is missing.
MISSING = "needs holiwidget.metrics.causal (insertion and deletion), which is not installed"


def causal_module() -> ModuleType | None:
    """``holiwidget.metrics.causal`` if it can be imported, else None."""
    try:
        return importlib.import_module("holiwidget.metrics.causal")
    except ImportError:
        return None


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
    causal = causal_module()
    if causal is None:
        from ..errors import HoliwidgetError

        raise HoliwidgetError(MISSING)
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
