"""Attribution methods: Holistic-CAM and the paper's baselines, one module per family.

- :mod:`.holistic`: Holistic-CAM's element-wise weighted positive gradients (PGE) and its
  fundamental-scale denoising with the low-pass wrap (FSD).
- :mod:`.gradient`: single-scale gradient methods: Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM.
- :mod:`.eigen`: Eigen-CAM (no gradient, no class).
- CAMERAS is Holistic-CAM's fusion with plain gradients (:mod:`holiwidget.fusion`).
- :mod:`.finish`: the common ending (ReLU, upsampling, min-max) that turns raw maps into
  [0, 1] maps at the input size.
"""

from __future__ import annotations

#: Every method the engine computes, in the order of the dataset's ``cam`` dimension.
METHODS = ("holistic", "gradcam", "gradcampp", "xgradcam", "eigencam", "layercam", "cameras")
#: Methods that run the eight-scale input pyramid.
PYRAMID_METHODS = frozenset({"holistic", "cameras"})
#: Methods that need gradients.
GRADIENT_METHODS = frozenset(METHODS) - {"eigencam"}
#: Readable names, for figures and the explorer.
LABELS = {
    "holistic": "Holistic-CAM",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "eigencam": "Eigen-CAM",
    "layercam": "Layer-CAM",
    "cameras": "CAMERAS",
}

__all__ = ["GRADIENT_METHODS", "LABELS", "METHODS", "PYRAMID_METHODS"]
