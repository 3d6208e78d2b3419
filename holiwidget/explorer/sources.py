"""The explorer's image sources: what the image chooser offers, with stable cache keys.

Samples, the ``images=`` argument, the files of a folder and uploaded files each become an
:class:`ImageSource`; nothing here needs a widget or a model.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HoliwidgetError
from ..images import IMAGE_SUFFIXES
from ..samples import SAMPLES

__all__ = ["ImageSource", "folder_sources", "given_sources", "sample_sources", "upload_sources"]


@dataclass(frozen=True)
class ImageSource:
    """One image the explorer can show.

    Attributes:
        key: a unique, stable key (the cache is keyed by it).
        label: what the image chooser shows.
        item: what :func:`holiwidget.explain` accepts: a sample name, a path, a PIL image or
            an array; ``None`` for an image of a saved dataset (browsing only).
        name: the image's id in the datasets the explorer makes (an uploaded file keeps
            its name); ``None``: the one :func:`holiwidget.explain` gives.
    """

    key: str
    label: str
    item: object = None
    name: str | None = None


def sample_sources() -> list[ImageSource]:
    """The embedded sample images."""
    return [ImageSource(f"sample:{name}", f"sample: {name}", name) for name in SAMPLES]


def given_sources(images: object) -> list[ImageSource]:
    """Sources for the explorer's ``images=`` argument (paths, sample names, PIL, arrays)."""
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise HoliwidgetError(
            f"images is a {type(images).__name__}; pass a path, a sample name, a PIL image, an "
            "array, or a list of them"
        )
    out = []
    for i, item in enumerate(images):
        if isinstance(item, str) and item in SAMPLES and not Path(item).exists():
            out.append(ImageSource(f"sample:{item}", f"sample: {item}", item))
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item).expanduser().resolve()
            out.append(ImageSource(f"file:{path}", f"file: {path.name}", path))
        elif isinstance(item, (Image.Image, np.ndarray)):
            out.append(ImageSource(f"given:{i}:{id(item)}", f"image {i}", item))
        else:
            raise HoliwidgetError(
                f"image {i} is a {type(item).__name__}; pass paths, sample names, PIL images or arrays"
            )
    return out


def folder_sources(folder: str | os.PathLike) -> list[ImageSource]:
    """Every image file (by extension) directly inside ``folder``, sorted by name."""
    path = Path(folder).expanduser()
    if not str(folder).strip():
        raise HoliwidgetError("type a folder path first, then press 'add folder'")
    if not path.is_dir():
        raise HoliwidgetError(f"no such folder: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise HoliwidgetError(f"no image files in {path} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return [ImageSource(f"file:{p.resolve()}", f"file: {p.name}", p.resolve()) for p in files]


def upload_sources(files: Iterable[dict]) -> list[ImageSource]:
    """Sources for files from an ipywidgets ``FileUpload`` (dicts with name and content)."""
    out = []
    for f in files:
        name = str(f.get("name", "upload"))
        content = bytes(f["content"])
        try:
            with Image.open(io.BytesIO(content)) as img:
                img.load()
                # upright as a phone shows it; its mode (16-bit too) is converted by
                # holiwidget.images when the image is prepared, as for files
                rgb = ImageOps.exif_transpose(img)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise HoliwidgetError(
                f"cannot read {name} as an image ({type(exc).__name__}); upload a JPEG or PNG "
                f"of at most {Image.MAX_IMAGE_PIXELS or 0:,} pixels"
            ) from None
        digest = hashlib.sha1(content).hexdigest()[:12]
        out.append(ImageSource(f"upload:{digest}", f"upload: {name}", rgb, Path(name).stem))
    return out
