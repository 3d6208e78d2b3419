"""The explorer's network passes: predictions, the layers it offers, the pass cache.

Plain Python, numpy and xarray (no widget), so that they are tested without a browser.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..capture import prepared
from ..images import prepare_images
from ..layers import probe_outputs
from ..methods import METHODS
from ..models import class_names

__all__ = ["PassCache", "Predictions", "candidate_layers", "order_methods", "predict"]


@dataclass(frozen=True)
class Predictions:
    """The class probabilities of one image at the fundamental scale (one forward pass)."""

    probabilities: np.ndarray
    names: list[str]

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes: (index, name, probability)."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), self.names[i], float(self.probabilities[i])) for i in order]

    def label(self, index: int) -> str:
        """``"281 tabby, tabby cat (54.3%)"``."""
        return f"{index} {self.names[index]} ({100 * float(self.probabilities[index]):.1f}%)"


def predict(model: nn.Module, item: object, device: str | torch.device = "cpu") -> Predictions:
    """One forward pass at 224 x 224: the softmax probabilities of every class."""
    x = prepare_images(item).tensor[:1]
    with prepared(model, torch.device(device)), torch.no_grad():
        logits = model(x.to(device))
    probs = torch.softmax(logits.double(), dim=1)[0].cpu().numpy()
    return Predictions(probs, class_names(len(probs)))


def candidate_layers(model: nn.Module, extra: Sequence[str] = ()) -> list[str]:
    """Layers the explorer offers: every distinct non-negative 4-D output, in model order.

    One probe pass on a fixed random input finds the modules whose output is a 4-D tensor
    with a spatial side above 1 and no negative value (post-activation outputs, which CAM
    methods assume). Modules sharing one output tensor (a block and its last in-place ReLU)
    are listed once, by the outermost name (or by the name given in ``extra``: those are
    always included).
    """
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    # The last call of each module, as the engine records it.
    seen = {name: (ptr, nonneg) for name, ptr, hw, nonneg in probe_outputs(model) if min(hw) > 1}
    # Modules sharing one tensor (in-place activations, a block and its last layer): the
    # name given in ``extra``, else the first one whose output was non-negative when its
    # hook ran (a batch norm before an in-place ReLU was not).
    chosen: dict[int, str] = {seen[n][0]: n for n in extra if n in seen}
    for name in sorted(seen, key=order.__getitem__):
        ptr, nonneg = seen[name]
        if nonneg and ptr not in chosen:
            chosen[ptr] = name
    names = set(chosen.values()) | set(extra)
    return sorted(names, key=lambda n: order.get(n, len(order)))


class PassCache:
    """Datasets from :func:`holiwidget.explain`, one per (image, target, layers), LRU-bounded.

    A request for some layers and methods is served without a network pass when an entry for
    the same image and target holds all of them (a subset is selected).
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int, tuple[str, ...]], xr.Dataset] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def methods_for(self, image: str, target: int, layers: Sequence[str]) -> list[str]:
        """The methods already computed for exactly this (image, target, layers)."""
        ds = self._entries.get((image, int(target), tuple(layers)))
        return [] if ds is None else [str(m) for m in ds["cam"].values]

    def get(
        self, image: str, target: int, layers: Sequence[str], methods: Sequence[str]
    ) -> xr.Dataset | None:
        """A copy holding exactly ``layers`` and ``methods`` (in that order), or None."""
        want_l, want_m = list(layers), list(methods)
        for key in reversed(self._entries):
            k_image, k_target, k_layers = key
            if k_image != image or k_target != int(target) or not set(want_l) <= set(k_layers):
                continue
            ds = self._entries[key]
            have_m = {str(m) for m in ds["cam"].values}
            if not set(want_m) <= have_m:
                continue
            self._entries.move_to_end(key)
            return ds.sel(layer=want_l, cam=want_m).copy(deep=True)
        return None

    def put(self, image: str, target: int, layers: Sequence[str], ds: xr.Dataset) -> None:
        """Keep a dataset as the newest entry; the oldest beyond ``size`` are dropped."""
        self._entries[(image, int(target), tuple(layers))] = ds
        self._entries.move_to_end((image, int(target), tuple(layers)))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def order_methods(methods: Iterable[str]) -> list[str]:
    """Methods in the engine's canonical order, without repeats."""
    wanted = set(methods)
    return [m for m in METHODS if m in wanted]
