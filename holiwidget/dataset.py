"""Attribution datasets: building them, and writing them whole (netCDF or zarr) or not at all."""

from __future__ import annotations

import functools
import json
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from .errors import HoliwidgetError
from .models import class_names, model_info
from .outputs import atomic_output, check_output

__all__ = [
    "build_dataset",
    "dataset_format",
    "open_dataset",
    "package_versions",
    "save_dataset",
]

_PACKAGES = (
    "holiwidget",
    "torch",
    "torchvision",
    "numpy",
    "numba",
    "xarray",
    "opencv-python-headless",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the numbers, for a result's attrs."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:  # looked up once: about 1 ms a package
    out = [("python", platform.python_version())]
    for name in _PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "unknown"))
    return tuple(out)


def build_dataset(
    *,
    attribution: np.ndarray,
    primary: np.ndarray | None,
    fundamental: np.ndarray | None,
    display: np.ndarray,
    ids: list[str],
    methods: list[str],
    layers: list[str],
    logits: torch.Tensor,
    targets: torch.Tensor,
    model: nn.Module,
    scale_used: np.ndarray | None = None,
    params: dict,
    device: str,
) -> xr.Dataset:
    """Assemble the engine's arrays into a labelled dataset (see :func:`holiwidget.explain`)."""
    probs = torch.softmax(logits.double(), dim=1)
    tgt = targets.long()
    names = class_names(logits.shape[1])
    size = attribution.shape[-2:]
    coords = {
        "image": ("image", np.array(ids, dtype=object)),
        "cam": ("cam", np.array(methods, dtype=object)),
        "layer": ("layer", np.array(layers, dtype=object)),
        "y": ("y", np.arange(size[0], dtype=np.int32)),
        "x": ("x", np.arange(size[1], dtype=np.int32)),
        "rgb": ("rgb", np.array(["r", "g", "b"], dtype=object)),
        "target": ("image", tgt.numpy().astype(np.int64)),
        "target_name": ("image", np.array([names[i] for i in tgt.tolist()], dtype=object)),
        "probability": ("image", probs.gather(1, tgt[:, None])[:, 0].numpy().astype(np.float32)),
        "top1": ("image", logits.argmax(1).numpy().astype(np.int64)),
    }
    data = {
        "attribution": (("image", "cam", "layer", "y", "x"), attribution.astype(np.float32)),
        "input": (("image", "y", "x", "rgb"), display.astype(np.uint8)),
    }
    if primary is not None:
        data["primary"] = (("image", "layer", "y", "x"), primary.astype(np.float32))
        data["fundamental"] = (("image", "layer", "y", "x"), fundamental.astype(np.float32))
    if scale_used is not None:
        sides = [s[0] for s in params["scales"]]
        data["scale_used"] = (("image", "scale"), scale_used.astype(bool))
        coords["scale"] = ("scale", np.array(sides, dtype=np.int32))
    info = model_info(model)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {
        "title": "holiwidget attributions",
        "model": info["model"] or "unknown",
        "weights": str(info["weights"]),
        "parameters": json.dumps(params, sort_keys=True),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "device": device,
        "method_reference": "Chen et al., Holistic-CAM, ACM MM 2024, doi:10.1145/3664647.3681707",
    }
    ds["attribution"].attrs = {
        "long_name": "attribution map",
        "units": "1",
        "valid_range": [0.0, 1.0],
    }
    ds["input"].attrs = {"long_name": "input image as the network sees it (resized)"}
    if primary is not None:
        ds["primary"].attrs = {"long_name": "Holistic-CAM primary attribution map (PHA)"}
        ds["fundamental"].attrs = {"long_name": "Holistic-CAM fundamental-scale map (M_f)"}
    return ds


def dataset_format(path: str | os.PathLike) -> str:
    """The output format for a path: ``"netcdf"`` (.nc) or ``"zarr"`` (.zarr)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".nc", ".nc4", ".netcdf", ".h5"):
        return "netcdf"
    if suffix == ".zarr":
        return "zarr"
    raise HoliwidgetError(
        f"cannot tell the format of {path}; name the output *.nc (netCDF) or *.zarr"
    )


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a dataset to netCDF (``.nc``, h5netcdf) or zarr (``.zarr``), atomically.

    The data go to a temporary file beside the target, which is renamed into place only
    when complete: the output appears whole or not at all.

    Args:
        ds: the dataset.
        path: the output file.

    Returns:
        The path written.
    """
    out = Path(path)
    kind = dataset_format(out)
    check_output(out, folder=kind == "zarr")
    with atomic_output(out) as part:
        try:
            if kind == "netcdf":
                ds.to_netcdf(part, engine="h5netcdf", encoding=_string_encoding(ds))
            else:
                ds.to_zarr(part, mode="w", consolidated=False)
        except (OSError, TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HoliwidgetError(f"cannot write {out} ({first}); nothing was written") from None
    return out


def _string_encoding(ds: xr.Dataset) -> dict:
    return {name: {"dtype": str} for name, var in ds.variables.items() if var.dtype == object}


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a dataset written by :func:`save_dataset` fully into memory."""
    p = Path(path)
    if not p.exists():
        raise HoliwidgetError(f"no such dataset: {p}")
    if dataset_format(p) == "netcdf":
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            return ds.load()
    with xr.open_zarr(p, consolidated=False) as ds:
        return ds.load()
