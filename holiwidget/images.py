"""Reading and preparing input images: paths, sample names, PIL images, arrays or tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import HoliwidgetError
from .samples import SAMPLES, load_sample

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "PreparedImages",
    "prepare_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: File name endings of the images a folder is searched for (what PIL reads).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: What ``explain`` accepts as one image.
ImageInput = str | os.PathLike | Image.Image | np.ndarray


@dataclass
class PreparedImages:
    """A batch ready for the network.

    Attributes:
        tensor: (N, 3, H, W) float32, ImageNet-normalised.
        display: (N, H, W, 3) uint8, the images as the network sees them (for overlays).
        ids: one unique name per image.
    """

    tensor: torch.Tensor
    display: np.ndarray
    ids: list[str]


def _read_path(path: Path) -> Image.Image:
    if not path.exists():
        raise HoliwidgetError(
            f"no such image file: {path} (or name a sample: {', '.join(SAMPLES)})"
        )
    if path.is_dir():
        raise HoliwidgetError(f"{path} is a folder; pass image files (e.g. {path}/*.jpg)")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise HoliwidgetError(
            f"cannot read {path} as an image ({exc}); pass a JPEG or PNG file"
        ) from None


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise HoliwidgetError(
            f"{label} has shape {a.shape}; give H x W (grayscale) or H x W x 3/4 (RGB/RGBA) images"
        )
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise HoliwidgetError(f"{label} has dtype {a.dtype}; give uint8 or float images")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise HoliwidgetError(f"{label} contains NaN or infinite values; clean the image first")
    if np.issubdtype(np.asarray(array).dtype, np.floating):
        if a.min() < 0 or a.max() > 1:
            raise HoliwidgetError(
                f"{label} is a float image with values outside [0, 1]; scale it to [0, 1] or pass uint8"
            )
        a = a * 255.0
    elif a.min() < 0 or a.max() > 255:
        raise HoliwidgetError(f"{label} has integer values outside 0..255; pass uint8 images")
    return np.round(a).astype(np.uint8)


def _to_rgb(item: object, index: int) -> tuple[np.ndarray, str]:
    label = f"image {index}"
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.exists() and str(item) in SAMPLES:
            return load_sample(str(item)), str(item)
        img = _read_path(path)
        return np.asarray(img.convert("RGB")), path.stem
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB")), f"image{index}"
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, label), f"image{index}"
    raise HoliwidgetError(
        f"{label} is a {type(item).__name__}; pass file paths, sample names, PIL images or arrays"
    )


def _unique(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}-{seen[i]}")
    return out


def _from_tensor(tensor: torch.Tensor) -> PreparedImages:
    t = tensor.detach()
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise HoliwidgetError(
            f"an image tensor must be (N, 3, H, W), got {tuple(tensor.shape)}; "
            "convert grayscale with .expand(-1, 3, -1, -1)"
        )
    if t.shape[0] == 0:
        raise HoliwidgetError("the image tensor holds no image; pass at least one")
    if not torch.is_floating_point(t):
        raise HoliwidgetError(
            "an image tensor must be float and ImageNet-normalised; pass arrays for raw pixels"
        )
    if not torch.isfinite(t).all():
        raise HoliwidgetError(
            "the image tensor contains NaN or infinite values; clean the input first"
        )
    t = t.float()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = ((t.cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    display = pixels.permute(0, 2, 3, 1).numpy()
    return PreparedImages(t, display, [f"image{i}" for i in range(t.shape[0])])


def prepare_images(
    images: ImageInput | Sequence[ImageInput] | torch.Tensor, size: int = 224
) -> PreparedImages:
    """Read images and turn them into a normalised batch.

    Each image is converted to RGB (grayscale and RGBA are converted, not rejected), resized
    to ``size x size`` (bilinear, no crop), scaled to [0, 1] and normalised with the ImageNet
    mean and standard deviation. A float tensor (N, 3, H, W) is taken as already normalised
    and used as is.

    Args:
        images: one image or a sequence of them: file paths, names of embedded samples,
            PIL images, (H, W[, C]) arrays (uint8, or float in [0, 1]), or a tensor.
        size: the input side length (224 as in the paper).

    Returns:
        The prepared batch.
    """
    if isinstance(images, torch.Tensor):
        return _from_tensor(images)
    items = (
        [images]
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))
        else list(images)
    )
    if not items:
        raise HoliwidgetError(
            "no images given; pass at least one path, sample name, PIL image or array"
        )
    rgbs, ids = [], []
    for i, item in enumerate(items):
        rgb, name = _to_rgb(item, i)
        if rgb.shape[0] < 2 or rgb.shape[1] < 2:
            raise HoliwidgetError(
                f"image {i} ({name}) is only {rgb.shape[1]}x{rgb.shape[0]} pixels; give a real image"
            )
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR)
        rgbs.append(np.asarray(resized))
        ids.append(name)
    display = np.stack(rgbs)
    x = torch.from_numpy(display).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return PreparedImages((x - mean) / std, display, _unique(ids))
