"""Insertion and deletion curves for the explorer, from :mod:`holiwidget.metrics.causal`.

The explorer computes no metric of its own: when the metrics module (or its ``insertion`` /
``deletion`` functions) is missing, the curves button stays disabled and says why.
"""

from __future__ import annotations

import importlib
import inspect
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
    """``holiwidget.metrics.causal`` if it provides ``insertion`` and ``deletion``, else None."""
    try:
        module = importlib.import_module("holiwidget.metrics.causal")
    except ImportError:
        return None
    if callable(getattr(module, "insertion", None)) and callable(getattr(module, "deletion", None)):
        return module
    return None


def compute_curves(
    model: nn.Module,
    rgb: np.ndarray,
    saliency: np.ndarray,
    target: int,
    device: str | torch.device = "cpu",
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Insertion and deletion curves of one map.

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
    values = {
        "model": model,
        "images": x,
        "saliency": np.asarray(saliency, dtype=np.float32)[None],
        "targets": [int(target)],
        "device": device,
    }
    out = {}
    for name in ("insertion", "deletion"):
        fn = getattr(causal, name)
        args, kwargs = _bind(fn, values)
        out[name] = _as_curve(fn(*args, **kwargs))
    return out


# Parameter names the metric functions may use for each value the explorer passes.
_ALIASES = {
    "model": ("model", "net", "network", "classifier"),
    "images": ("images", "image", "x", "inputs", "input", "tensor"),
    "saliency": ("saliency", "saliencies", "maps", "map", "attribution", "attributions", "cam"),
    "targets": ("targets", "target", "classes", "class_index", "labels", "label"),
    "device": ("device",),
}


def _bind(fn: object, values: dict) -> tuple[list, dict]:
    """Arguments for ``fn(model, images, saliency, targets[, device])`` by parameter name,
    else by position."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return [values[k] for k in ("model", "images", "saliency", "targets")], {}
    kwargs = {}
    for key, names in _ALIASES.items():
        for pname in names:
            if pname in params:
                value = values[key]
                if key == "targets" and pname in ("target", "class_index", "label"):
                    value = value[0]
                kwargs[pname] = value
                break
    if len([k for k in kwargs if k != "device"]) == 4:
        return [], kwargs
    return [values[k] for k in ("model", "images", "saliency", "targets")], {}


def _as_curve(result: object) -> tuple[np.ndarray, np.ndarray, float]:
    """(fractions, probabilities, auc) from a metric's result (object, dict or tuple)."""
    if isinstance(result, dict):
        curve, auc = result.get("curve"), result.get("auc", result.get("score"))
    elif isinstance(result, tuple) and len(result) == 2:
        auc, curve = (result[0], result[1]) if np.ndim(result[0]) == 0 else result[::-1]
    else:
        curve = getattr(result, "curve", None)
        auc = getattr(result, "auc", getattr(result, "score", None))
    ys = np.asarray(curve, dtype=np.float64).reshape(-1, np.shape(curve)[-1])[0]
    xs = np.linspace(0.0, 1.0, len(ys))
    if auc is None:
        auc = float(np.trapezoid(ys, xs))
    return xs, ys, float(np.asarray(auc).reshape(-1)[0])
