"""Single-scale gradient methods on one layer's output A (N, K, h, w) and gradient G = dy_c/dA.

Each function returns raw maps (N, h, w) at the layer's resolution, before the common ReLU,
upsampling and min-max of :func:`holiwidget.methods.finish.finish_maps`.
"""

from __future__ import annotations

import torch

__all__ = ["gradcam", "gradcampp", "layercam", "xgradcam"]


def _weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nk,nkhw->nhw", weights, activation)


def gradcam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ij g_ij^k``, ``L = sum_k w_k A^k``."""
    return _weighted_sum(gradient.mean(dim=(2, 3)), activation)


def gradcampp(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018).

    ``alpha = g^2 / (2 g^2 + (sum_ab A_ab^k) g^3 + 1e-6)`` (0 where ``g == 0``),
    ``w_k = sum_ij alpha_ij^k ReLU(g_ij^k)``, ``L = sum_k w_k A^k``.
    """
    g2 = gradient * gradient
    g3 = g2 * gradient
    total = activation.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + total * g3 + 1e-6)
    alpha = torch.where(gradient != 0, alpha, torch.zeros_like(alpha))
    return _weighted_sum((alpha * torch.relu(gradient)).sum(dim=(2, 3)), activation)


def xgradcam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_ij^k / (sum_ab A_ab^k + 1e-7)) g_ij^k``."""
    total = activation.sum(dim=(2, 3), keepdim=True) + 1e-7
    return _weighted_sum((gradient * activation / total).sum(dim=(2, 3)), activation)


def layercam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Layer-CAM (Jiang et al. 2021): ``L = sum_k ReLU(g^k) * A^k``, element-wise."""
    return (torch.relu(gradient) * activation).sum(dim=1)
