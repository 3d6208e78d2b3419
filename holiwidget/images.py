"""Reading and preparing input images: paths, sample names, PIL images, arrays or tensors."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .checks import positive_int
from .errors import HoliwidgetError
from .samples import SAMPLES, load_sample

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "PreparedImages",
    "image_size",
    "pixel_limit",
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


#: The EXIF orientations that swap width and height (a quarter turn, maybe mirrored).
_QUARTER_TURNS = (5, 6, 7, 8)
#: JPEG's decoding reductions (``Image.draft``), smallest first.
_JPEG_REDUCTIONS = (2, 4, 8)


def pixel_limit() -> int | None:
    """The most pixels an image file may decode to: PIL's ``Image.MAX_IMAGE_PIXELS``
    (about 89.5 megapixels unless changed; None: no limit), read at each call."""
    return Image.MAX_IMAGE_PIXELS


def _is_jpeg(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(3) == b"\xff\xd8\xff"


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file opened (header only; nothing decoded yet), PIL's decompression-bomb
    warning silenced: the pixel limit is holiwidget's to apply (:func:`_reduce`). A JPEG
    above twice the limit, which PIL refuses to open, is opened without PIL's check; any
    other file above it is refused here. Every failure, also while the caller decodes, is
    a one-line HoliwidgetError."""
    if not path.exists():
        raise HoliwidgetError(
            f"no such image file: {path} (or name a sample: {', '.join(SAMPLES)})"
        )
    if path.is_dir():
        raise HoliwidgetError(f"{path} is a folder; pass image files (e.g. {path}/*.jpg)")
    with warnings.catch_warnings():
        # holiwidget checks the size itself (_reduce)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            try:
                img = Image.open(path)
            except Image.DecompressionBombError:
                if not _is_jpeg(path):
                    limit = pixel_limit() or 0
                    raise HoliwidgetError(
                        f"{path} has more than {_megapixels(2 * limit)} (PIL's "
                        f"decompression-bomb limit); shrink it below {_megapixels(limit)}, "
                        "or save it as JPEG (decoded at a reduced scale)"
                    ) from None
                # the header alone, without PIL's check: _reduce decodes it at a reduced scale
                img = JpegImagePlugin.JpegImageFile(path)
            with img:
                yield img
        except HoliwidgetError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise HoliwidgetError(
                f"cannot read {path} as an image ({exc}); pass a JPEG or PNG file"
            ) from None


def _reduce(img: Image.Image, path: Path, limit: int) -> None:
    """Set a JPEG above ``limit`` pixels to decode at the smallest reduction (1/2, 1/4, 1/8)
    that fits; refuse any other file, or a JPEG that does not fit even at 1/8."""
    width, height = img.size
    size = f"{path} is {width}x{height} ({_megapixels(width * height)}), above the limit of "
    if img.format not in ("JPEG", "MPO"):
        raise HoliwidgetError(
            f"{size}{_megapixels(limit)} (PIL's Image.MAX_IMAGE_PIXELS); shrink it first, or "
            "save it as JPEG (decoded at a reduced scale)"
        )
    fits = [s for s in _JPEG_REDUCTIONS if -(-width // s) * -(-height // s) <= limit]
    if not fits:
        raise HoliwidgetError(
            f"{size}{_megapixels(limit)} even decoded at 1/8 scale; shrink it first "
            "(or raise PIL.Image.MAX_IMAGE_PIXELS)"
        )
    img.draft(img.mode, (width // fits[0], height // fits[0]))
    if img.size[0] * img.size[1] > limit:
        raise HoliwidgetError(
            f"{size}{_megapixels(limit)} and this JPEG cannot be decoded at a reduced scale; "
            "shrink it first"
        )


def _orientation(img: Image.Image) -> int:
    """The image's EXIF orientation (1: none, also for unreadable EXIF data)."""
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # broken EXIF data: the pixels are still fine
        return 1


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """The (width, height) of an image file as it is displayed (after its EXIF orientation),
    at full resolution: the frame of its annotation boxes. Reads the header only.

    Args:
        path: the image file.

    Returns:
        Width and height in pixels.

    Raises:
        HoliwidgetError: for a missing or unreadable file, or one above the pixel limit
            that cannot be decoded at a reduced scale (see :func:`prepare_images`).
    """
    with _opened(Path(path)) as img:
        width, height = img.size
        turned = _orientation(img) in _QUARTER_TURNS
    return (height, width) if turned else (width, height)


def _read_path(path: Path) -> Image.Image:
    """An image file decoded (reduced if it is a JPEG above the pixel limit) and turned
    upright by its EXIF orientation."""
    with _opened(path) as img:
        limit = pixel_limit()
        if limit is not None and img.size[0] * img.size[1] > limit:
            _reduce(img, path, limit)
        img.load()
        try:
            return ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF data: the pixels as stored
            return img.copy()


def _pil_to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8; 16-bit (``I;16``, ``I``) and float (``F``) images
    go through the array rules (16-bit scaled to 8 bits)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        return _array_to_rgb(np.asarray(img).astype(np.int64), label, bits=16)
    if img.mode == "F":
        return _array_to_rgb(np.asarray(img), label)
    try:
        return np.asarray(img.convert("RGB"))
    except ValueError as exc:
        raise HoliwidgetError(
            f"{label} has PIL mode {img.mode}, which does not convert to RGB ({exc}); "
            "convert it first"
        ) from None


def _array_to_rgb(array: np.ndarray, label: str, bits: int | None = None) -> np.ndarray:
    """An (H, W[, 1|3|4]) array as (H, W, 3) uint8.

    uint8 is taken as is; uint16 (or ``bits=16``) is scaled from 0..65535 to 0..255; other
    integers must be in 0..255; floats in [0, 1]."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise HoliwidgetError(
            f"{label} has shape {a.shape}; give H x W (grayscale) or H x W x 3/4 (RGB/RGBA) images"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise HoliwidgetError(f"{label} has no pixels (shape {a.shape}); give a real image")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise HoliwidgetError(f"{label} has dtype {a.dtype}; give uint8, uint16 or float images")
    if bits is None and a.dtype.kind == "u" and a.dtype.itemsize == 2:
        bits = 16
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise HoliwidgetError(f"{label} contains NaN or infinite values; clean the image first")
    if np.issubdtype(np.asarray(array).dtype, np.floating):
        if a.min() < 0 or a.max() > 1:
            raise HoliwidgetError(
                f"{label} is a float image with values outside [0, 1]; scale it to [0, 1] or pass uint8"
            )
        a = a * 255.0
    elif bits == 16:
        if a.min() < 0 or a.max() > 65535:
            raise HoliwidgetError(
                f"{label} is a 16-bit image with values outside 0..65535; pass uint8 or uint16"
            )
        a = a / 257.0  # 65535 -> 255
    elif a.min() < 0 or a.max() > 255:
        raise HoliwidgetError(
            f"{label} has integer values outside 0..255; pass uint8 (or uint16 for 16 bits)"
        )
    return np.round(a).astype(np.uint8)


def _to_rgb(item: object, index: int) -> tuple[np.ndarray, str]:
    label = f"image {index}"
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.exists() and str(item) in SAMPLES:
            return load_sample(str(item)), str(item)
        return _pil_to_rgb(_read_path(path), f"{label} ({path})"), path.stem
    if isinstance(item, Image.Image):
        return _pil_to_rgb(item, label), f"image{index}"
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
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise HoliwidgetError(f"the image tensor {tuple(tensor.shape)} has no pixels")
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

    - Files are turned upright by their EXIF orientation (as a phone photo is displayed);
      PIL images and arrays are taken as they are.
    - 16-bit images (PIL modes ``I;16`` and ``I``, uint16 arrays) are scaled from 0..65535
      to 0..255; other integer arrays must be in 0..255, float arrays in [0, 1].
    - A file above :func:`pixel_limit` pixels (PIL's ``Image.MAX_IMAGE_PIXELS``, about 89.5
      megapixels): a JPEG is decoded at 1/2, 1/4 or 1/8 scale (the smallest reduction that
      fits, before the resize to ``size``), any other file is refused.

    Args:
        images: one image or a sequence of them: file paths, names of embedded samples,
            PIL images, (H, W[, C]) arrays (uint8, uint16, or float in [0, 1]), or a tensor.
        size: the input side length (224 as in the paper).

    Returns:
        The prepared batch.

    Raises:
        HoliwidgetError: for anything else (None, numbers, bytes, ...), and for files that
            are missing, unreadable or too large.
    """
    size = positive_int(size, "size")
    if isinstance(images, torch.Tensor):
        return _from_tensor(images)
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        items = [images]
    elif isinstance(images, Iterable) and not isinstance(images, (bytes, bytearray, dict)):
        items = list(images)
    else:
        what = "None" if images is None else f"of type {type(images).__name__}"
        hint = (
            "; for file contents use PIL.Image.open(io.BytesIO(data))"
            if isinstance(images, (bytes, bytearray))
            else ""
        )
        raise HoliwidgetError(
            f"images is {what}; pass a path, sample name, PIL image, array or tensor, "
            f"or a list of them{hint}"
        )
    if not items:
        raise HoliwidgetError(
            "no images given; pass at least one path, sample name, PIL image or array"
        )
    rgbs, ids = [], []
    for i, item in enumerate(items):
        rgb, name = _to_rgb(item, i)
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR)
        rgbs.append(np.asarray(resized))
        ids.append(name)
    display = np.stack(rgbs)
    x = torch.from_numpy(display).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return PreparedImages((x - mean) / std, display, _unique(ids))
