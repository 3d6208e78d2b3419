"""Loading torchvision classifiers with pretrained, file or random weights."""

from __future__ import annotations

import difflib
import os
import urllib.error
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from .errors import HoliwidgetError

__all__ = ["class_names", "load_model", "model_info"]

_INFO_ATTR = "_holiwidget_info"


def _classification_models() -> list[str]:
    return sorted(tvm.list_models(module=tvm))


def load_model(name: str, weights: str | os.PathLike | None = "DEFAULT") -> nn.Module:
    """A torchvision classifier in evaluation mode.

    Args:
        name: a torchvision classification model, e.g. ``"resnet50"``, ``"vgg16"``,
            ``"vgg16_bn"``, ``"mobilenet_v2"``.
        weights: ``"DEFAULT"`` or a torchvision weights name (``"IMAGENET1K_V2"``,
            ``"ResNet50_Weights.IMAGENET1K_V2"``), downloaded and cached by torchvision
            itself; a path to a state-dict file (``.pth``) saved from the same architecture;
            or ``None`` for random initialisation (seed with :func:`torch.manual_seed`).

    Returns:
        The model, on the CPU, in evaluation mode.

    Raises:
        HoliwidgetError: unknown model or weights, unreadable or mismatched file, or a
            download that cannot be made (the message says how to pass a file instead).
    """
    known = _classification_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=4)
        hint = f"closest: {', '.join(close)}" if close else "see torchvision.models.list_models()"
        raise HoliwidgetError(f"unknown model {name!r} ({hint})")
    label: str | None
    if weights is None:
        model = tvm.get_model(name, weights=None)
        label = None
    elif isinstance(weights, os.PathLike) or _looks_like_path(str(weights)):
        model = _from_state_dict(name, Path(weights))
        label = str(Path(weights).name)
    else:
        model, label = _from_torchvision(name, str(weights))
    model.eval()
    setattr(model, _INFO_ATTR, {"model": name, "weights": label})
    return model


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.endswith((".pth", ".pt", ".bin"))
        or Path(text).exists()
    )


def _from_state_dict(name: str, path: Path) -> nn.Module:
    if not path.is_file():
        raise HoliwidgetError(
            f"weights file not found: {path}; pass the path of a saved state_dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise HoliwidgetError(
            f"cannot read weights file {path} ({type(exc).__name__}); save it with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HoliwidgetError(
            f"{path} does not hold a state_dict; save it with torch.save(model.state_dict(), path)"
        )
    model = tvm.get_model(name, weights=None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise HoliwidgetError(
            f"weights in {path} do not fit {name} ({first}); pass weights saved from {name}"
        ) from None
    return model


def _from_torchvision(name: str, weights: str) -> tuple[nn.Module, str]:
    try:
        enum = tvm.get_model_weights(name)
        member = weights.split(".")[-1]
        chosen = enum.DEFAULT if member == "DEFAULT" else enum[member]
    except (KeyError, ValueError):
        options = ", ".join(["DEFAULT", *[w.name for w in tvm.get_model_weights(name)]])
        raise HoliwidgetError(
            f"unknown weights {weights!r} for {name}; choose {options}, a file path, or None"
        ) from None
    try:
        model = tvm.get_model(name, weights=chosen)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise HoliwidgetError(
            f"cannot download {chosen} ({type(exc).__name__}: no internet?); "
            f"pass a saved state_dict instead: load_model({name!r}, weights='path/to/{name}.pth') "
            f"or --weights path/to/{name}.pth"
        ) from None
    return model, str(chosen)


def model_info(model: nn.Module) -> dict[str, str | None]:
    """The model's name and weights as :func:`load_model` recorded them (else the class name)."""
    info = getattr(model, _INFO_ATTR, None)
    if info is not None:
        return dict(info)
    return {"model": type(model).__name__, "weights": "unknown"}


def class_names(num_classes: int) -> list[str]:
    """Readable class names: ImageNet's for 1000 classes, else ``class 0``, ``class 1``, ..."""
    if num_classes == 1000:
        return list(tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [f"class {i}" for i in range(num_classes)]
