"""The explorer's state without any widget: image sources, the pass cache, re-denoising.

Everything here is plain Python, numpy and xarray, so it can be tested and benchmarked
without a browser. The explorer's current state is one :class:`xarray.Dataset` (one image):
the engine's variables plus ``lpw`` (the low-pass wrap per layer) and the explorer's own
settings in ``attrs["explorer"]`` (JSON).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from ..capture import prepared
from ..errors import HoliwidgetError
from ..images import IMAGE_SUFFIXES, prepare_images
from ..layers import probe_outputs
from ..methods import METHODS
from ..methods.holistic import holistic_map
from ..models import class_names
from ..samples import SAMPLES

__all__ = [
    "ImageSource",
    "PassCache",
    "Predictions",
    "candidate_layers",
    "folder_sources",
    "given_sources",
    "predict",
    "redenoise",
    "sample_sources",
    "upload_sources",
]


@dataclass(frozen=True)
class ImageSource:
    """One image the explorer can show.

    Attributes:
        key: a unique, stable key (the cache is keyed by it).
        label: what the image chooser shows.
        item: what :func:`holiwidget.explain` accepts: a sample name, a path, a PIL image or
            an array; ``None`` for an image of a saved dataset (browsing only).
    """

    key: str
    label: str
    item: object = None


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
        out.append(ImageSource(f"upload:{digest}", f"upload: {name}", rgb))
    return out


@dataclass(frozen=True)
class Predictions:
    """The class probabilities of one image at the fundamental scale (one forward pass)."""

    probabilities: np.ndarray
    names: list[str]

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The k most probable classes: (index, name, probability)."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), self.names[i], float(self.probabilities[i])) for i in order]

    def label(self, index: int) -> str:
        """``"281 tabby, tabby cat (54.3%)"``."""
        return f"{index} {self.names[index]} ({100 * float(self.probabilities[index]):.1f}%)"


def predict(model: nn.Module, item: object, device: str | torch.device = "cpu") -> Predictions:
    """One forward pass at 224 x 224: the softmax probabilities of every class."""
    x = prepare_images(item).tensor[:1]
    with prepared(model, torch.device(device)), torch.no_grad():
        logits = model(x.to(device))
    probs = torch.softmax(logits.double(), dim=1)[0].cpu().numpy()
    return Predictions(probs, class_names(len(probs)))


def candidate_layers(model: nn.Module, extra: Sequence[str] = ()) -> list[str]:
    """Layers the explorer offers: every distinct non-negative 4-D output, in model order.

    One probe pass on a fixed random input finds the modules whose output is a 4-D tensor
    with a spatial side above 1 and no negative value (post-activation outputs, which CAM
    methods assume). Modules sharing one output tensor (a block and its last in-place ReLU)
    are listed once, by the outermost name (or by the name given in ``extra``: those are
    always included).
    """
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    # The last call of each module, as the engine records it.
    seen = {name: (ptr, nonneg) for name, ptr, hw, nonneg in probe_outputs(model) if min(hw) > 1}
    # Modules sharing one tensor (in-place activations, a block and its last layer): the
    # name given in ``extra``, else the first one whose output was non-negative when its
    # hook ran (a batch norm before an in-place ReLU was not).
    chosen: dict[int, str] = {seen[n][0]: n for n in extra if n in seen}
    for name in sorted(seen, key=order.__getitem__):
        ptr, nonneg = seen[name]
        if nonneg and ptr not in chosen:
            chosen[ptr] = name
    names = set(chosen.values()) | set(extra)
    return sorted(names, key=lambda n: order.get(n, len(order)))


class PassCache:
    """Datasets from :func:`holiwidget.explain`, one per (image, target, layers), LRU-bounded.

    A request for some layers and methods is served without a network pass when an entry for
    the same image and target holds all of them (a subset is selected).
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int, tuple[str, ...]], xr.Dataset] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def methods_for(self, image: str, target: int, layers: Sequence[str]) -> list[str]:
        """The methods already computed for exactly this (image, target, layers)."""
        ds = self._entries.get((image, int(target), tuple(layers)))
        return [] if ds is None else [str(m) for m in ds["cam"].values]

    def get(
        self, image: str, target: int, layers: Sequence[str], methods: Sequence[str]
    ) -> xr.Dataset | None:
        """A copy holding exactly ``layers`` and ``methods`` (in that order), or None."""
        want_l, want_m = list(layers), list(methods)
        for key in reversed(self._entries):
            k_image, k_target, k_layers = key
            if k_image != image or k_target != int(target) or not set(want_l) <= set(k_layers):
                continue
            ds = self._entries[key]
            have_m = {str(m) for m in ds["cam"].values}
            if not set(want_m) <= have_m:
                continue
            self._entries.move_to_end(key)
            return ds.sel(layer=want_l, cam=want_m).copy(deep=True)
        return None

    def put(self, image: str, target: int, layers: Sequence[str], ds: xr.Dataset) -> None:
        """Keep a dataset as the newest entry; the oldest beyond ``size`` are dropped."""
        self._entries[(image, int(target), tuple(layers))] = ds
        self._entries.move_to_end((image, int(target), tuple(layers)))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def order_methods(methods: Iterable[str]) -> list[str]:
    """Methods in the engine's canonical order, without repeats."""
    wanted = set(methods)
    return [m for m in METHODS if m in wanted]


def with_lpw(ds: xr.Dataset) -> xr.Dataset:
    """Add an (image, layer, y, x) uint8 ``lpw`` variable (all 255) if the dataset lacks it."""
    if "primary" in ds.data_vars and "lpw" not in ds.data_vars:
        shape = ds["primary"].shape
        ds["lpw"] = (("image", "layer", "y", "x"), np.full(shape, 255, dtype=np.uint8))
        ds["lpw"].attrs = {"long_name": "Holistic-CAM low-pass wrap (0..255)"}
    return ds


def redenoise(ds: xr.Dataset, threshold: float, median: int, box: int, denoise: bool) -> None:
    """Recompute Holistic-CAM maps and low-pass wraps in place from the kept PHA and M_f.

    No network pass: :func:`holiwidget.holistic_map` per (image, layer). Updates
    ``attribution`` (cam ``holistic``, when shown), ``lpw`` and the ``parameters`` attribute.
    """
    if "primary" not in ds.data_vars:
        return
    with_lpw(ds)
    prim = ds["primary"].values
    fund = ds["fundamental"].values
    lpw = ds["lpw"].values
    att = ds["attribution"].values
    cams = [str(c) for c in ds["cam"].values]
    hi = cams.index("holistic") if "holistic" in cams else None
    for i in range(prim.shape[0]):
        for li in range(prim.shape[1]):
            cam, wrap = holistic_map(
                prim[i, li], fund[i, li], threshold, median, box, denoise=denoise
            )
            lpw[i, li] = wrap
            if hi is not None:
                att[i, hi, li] = cam
    params = json.loads(ds.attrs.get("parameters", "{}"))
    params.update(
        threshold=float(threshold), median=int(median), box=int(box), denoise=bool(denoise)
    )
    ds.attrs["parameters"] = json.dumps(params, sort_keys=True)
