"""Choosing the compute device."""

from __future__ import annotations

import torch

from .errors import HoliwidgetError

__all__ = ["DEVICE_TYPES", "resolve_device"]

#: The device types holiwidget runs models on (and moves them between).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then the CPU; anything else must be available.

    Only devices a model can run on and come back from are accepted: the CPU, an existing
    CUDA device, or MPS. ``"meta"`` (tensors without values) and other device types are
    refused, so that no model is ever moved where its weights would be lost.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device.

    Returns:
        The device.

    Raises:
        HoliwidgetError: for an unknown, unusable or unavailable device.
    """
    if isinstance(device, torch.device):
        choice = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            choice = torch.device(device)
        except (RuntimeError, TypeError):
            raise HoliwidgetError(
                f"unknown device {device!r}; use auto, cpu, cuda or mps"
            ) from None
    if choice.type not in DEVICE_TYPES:
        raise HoliwidgetError(
            f"device {device!r} cannot run a model here (holiwidget runs on "
            f"{', '.join(DEVICE_TYPES)}); use auto, cpu, cuda or mps"
        )
    if choice.type == "cuda":
        if not torch.cuda.is_available():
            raise HoliwidgetError(
                f"device {device!r} asked for, but CUDA is not available here; use --device auto or cpu"
            )
        count = torch.cuda.device_count()
        if choice.index is not None and choice.index >= count:
            raise HoliwidgetError(
                f"device {device!r} asked for, but there are {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}); use --device cuda or auto"
            )
    if choice.type == "mps" and not _mps_available():
        raise HoliwidgetError(
            f"device {device!r} asked for, but MPS is not available here; use --device auto or cpu"
        )
    return choice


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
