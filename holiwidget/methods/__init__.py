"""Attribution methods: Holistic-CAM and the paper's baselines, one module per family.

- :mod:`.holistic`: Holistic-CAM's element-wise weighted positive gradients (PGE) and its
  fundamental-scale denoising with the low-pass wrap (FSD).
- :mod:`.gradient`: single-scale gradient methods: Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM.
- :mod:`.eigen`: Eigen-CAM (no gradient, no class).
- :mod:`.relevance` (with :mod:`.lrp_rules`): Relevance-CAM, from one LRP propagation.
- :mod:`.iia`: IIA, iterated integrated attributions from 11 scaled inputs.
- CAMERAS is Holistic-CAM's fusion with plain gradients (:mod:`holiwidget.fusion`).
- :mod:`.finish`: the common ending (ReLU, upsampling, min-max) that turns raw maps into
  [0, 1] maps at the input size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from ..errors import HoliwidgetError
from .relevance import relevancecam_unsupported

#: Every method the engine computes, in the order of the dataset's ``cam`` dimension.
METHODS = (
    "holistic",
    "gradcam",
    "gradcampp",
    "xgradcam",
    "eigencam",
    "layercam",
    "cameras",
    "relevancecam",
    "iia",
)
#: Methods that run the eight-scale input pyramid.
PYRAMID_METHODS = frozenset({"holistic", "cameras"})
#: Methods that need the gradients of the pyramid's passes.
GRADIENT_METHODS = frozenset(
    {"holistic", "cameras", "gradcam", "gradcampp", "xgradcam", "layercam"}
)
#: Methods with network passes of their own (an LRP propagation; IIA's 11 scaled inputs).
OWN_PASS_METHODS = frozenset({"relevancecam", "iia"})
#: Readable names, for figures and the explorer.
LABELS = {
    "holistic": "Holistic-CAM",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "eigencam": "Eigen-CAM",
    "layercam": "Layer-CAM",
    "cameras": "CAMERAS",
    "relevancecam": "Relevance-CAM",
    "iia": "IIA",
}
#: One fixed colour per method (matplotlib's tab10), for every view that tells methods apart.
COLORS = {
    "holistic": "tab:red",
    "gradcam": "tab:blue",
    "gradcampp": "tab:green",
    "xgradcam": "tab:orange",
    "eigencam": "tab:purple",
    "layercam": "tab:brown",
    "cameras": "tab:pink",
    "relevancecam": "tab:olive",
    "iia": "tab:cyan",
}

__all__ = [
    "COLORS",
    "GRADIENT_METHODS",
    "LABELS",
    "METHODS",
    "OWN_PASS_METHODS",
    "PYRAMID_METHODS",
    "parse_methods",
]

log = logging.getLogger(__name__)


def parse_methods(methods: str | Sequence[str], model: nn.Module | None = None) -> list[str]:
    """Validate method names (a list, a comma-separated string, or ``"all"``).

    With a model, ``"all"`` leaves out the methods that cannot explain it (Relevance-CAM has
    LRP rules for ResNets, VGGs and MobileNetV2 only) and logs why; a method named
    explicitly is kept, and refused with the reason when the model is explained.
    """
    every = isinstance(methods, str) and methods == "all"
    if isinstance(methods, str):
        methods = list(METHODS) if every else [m.strip() for m in methods.split(",")]
    chosen = list(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise HoliwidgetError(
            f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)} or all"
        )
    if every and model is not None:
        why = relevancecam_unsupported(model)
        if why is not None:
            log.warning("leaving relevancecam out of 'all': %s", why)
            chosen.remove("relevancecam")
    return chosen
