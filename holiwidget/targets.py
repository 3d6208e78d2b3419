"""Which class each image explains: the given ones, or each image's top-1 class."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .checks import class_indices
from .errors import HoliwidgetError

__all__ = ["target_chooser", "target_tensor", "targets_from"]


def targets_from(target: object, n: int) -> torch.Tensor | None:
    """The targets of ``n`` images: None (each image's top-1 class), one class index for
    all, or one per image (see :func:`holiwidget.checks.class_indices`)."""
    if target is None or (isinstance(target, str) and target == "auto"):
        return None
    values = class_indices(target, "target")
    if isinstance(values, int):
        values = [values] * n
    if len(values) != n:
        raise HoliwidgetError(
            f"{len(values)} targets for {n} images; give one target per image or one for all"
        )
    return torch.tensor(values, dtype=torch.long)


def target_chooser(given: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a recorded pass explains: each image's top-1 class, or the given classes
    (checked against the model's classes once its logits are known)."""

    def choose(logits: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        if given is None:
            return logits.argmax(dim=1)
        bad = given[(given < 0) | (given >= classes)]
        if bad.numel():
            raise HoliwidgetError(
                f"target {int(bad[0])} is outside the model's {classes} classes (0..{classes - 1})"
            )
        return given.to(logits.device)

    return choose


def target_tensor(targets: object, n: int, device: torch.device) -> torch.Tensor:
    """``n`` integer class indices, one per image, as an int64 tensor on ``device``."""
    t = torch.as_tensor(targets)
    if t.shape != (n,) or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise HoliwidgetError(
            f"targets must be {n} integer class indices, one per image; got shape "
            f"{tuple(t.shape)} of {t.dtype}"
        )
    return t.to(device=device, dtype=torch.int64)
