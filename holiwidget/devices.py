"""Choosing the compute device."""

from __future__ import annotations

import torch

from .errors import HoliwidgetError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then the CPU; anything else must be available.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device.

    Returns:
        The device.
    """
    if isinstance(device, torch.device):
        choice = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            choice = torch.device(device)
        except (RuntimeError, TypeError):
            raise HoliwidgetError(
                f"unknown device {device!r}; use auto, cpu, cuda or mps"
            ) from None
    if choice.type == "cuda" and not torch.cuda.is_available():
        raise HoliwidgetError(
            f"device {device!r} asked for, but CUDA is not available here; use --device auto or cpu"
        )
    if choice.type == "mps" and not torch.backends.mps.is_available():
        raise HoliwidgetError(
            f"device {device!r} asked for, but MPS is not available here; use --device auto or cpu"
        )
    return choice
