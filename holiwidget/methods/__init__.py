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

__all__ = ["GRADIENT_METHODS", "LABELS", "METHODS", "OWN_PASS_METHODS", "PYRAMID_METHODS"]
