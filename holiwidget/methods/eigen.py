"""Eigen-CAM (Muhammad & Yilmaz 2020): the first principal component of the activations."""

from __future__ import annotations

import torch

__all__ = ["eigen_projection"]


def eigen_projection(activation: torch.Tensor) -> torch.Tensor:
    """Signed projection of each image's activations on their first principal direction.

    A (K x h x w) is reshaped to (h*w) x K, its columns are centred, and the rows are
    projected on the first right-singular vector. The SVD leaves the sign arbitrary;
    holiwidget fixes it so that the projection correlates positively with the channel-mean
    activation (pytorch-grad-cam leaves it as the solver returns it, so its map can be the
    mirror image, ``ReLU(-p)`` instead of ``ReLU(p)``).

    Args:
        activation: (N, K, h, w).

    Returns:
        (N, h, w) projections, before the ReLU.
    """
    n, k, h, w = activation.shape
    x = activation.double().reshape(n, k, h * w).transpose(1, 2)  # (N, hw, K)
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = torch.einsum("npk,nk->np", x, vh[:, 0, :])
    mean = activation.double().mean(dim=1).reshape(n, h * w)
    corr = ((proj - proj.mean(1, keepdim=True)) * (mean - mean.mean(1, keepdim=True))).sum(1)
    sign = torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign[:, None]).reshape(n, h, w).to(activation.dtype)
