"""Attribution datasets: building them, and writing them whole (netCDF or zarr) or not at all."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import warnings
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr
import zarr
from torch import nn

from .errors import HoliwidgetError
from .models import class_names, model_info
from .outputs import atomic_output, check_output

__all__ = [
    "CHECKSUM_ATTR",
    "DamagedDatasetError",
    "build_dataset",
    "check_dataset_output",
    "checksum",
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


#: The attribute holding the checksum of a saved dataset's arrays.
CHECKSUM_ATTR = "checksum"


class DamagedDatasetError(HoliwidgetError):
    """A dataset file that cannot be read, or whose values changed since it was written.

    Attributes:
        reason: what is wrong, without the path (for callers that word their own advice).
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged or not a dataset ({reason}); write it again")
        self.reason = reason


def checksum(ds: xr.Dataset) -> str:
    """SHA-256 over the names, dimensions and values of every variable and coordinate.

    Stable across netCDF and zarr round trips (NaNs counted as one value, booleans as bytes,
    strings by their text), so a value changed on disk is detected when the file is opened.
    """
    digest = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        digest.update(f"{name}({','.join(map(str, var.dims))})".encode())
        values = np.asarray(var.values)
        if values.dtype.kind not in "biufc":  # text: object, str or StringDType arrays
            digest.update("\x1f".join(map(str, values.ravel().tolist())).encode())
            continue
        if values.dtype == bool:
            values = values.astype(np.uint8)
        elif values.dtype.kind == "f":
            values = np.where(np.isnan(values), np.nan, values).astype(values.dtype)
        digest.update(str(values.dtype).encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return f"sha256:{digest.hexdigest()}"


def _written_by_us(path: Path) -> bool:
    """Whether ``path`` is a dataset that holiwidget wrote: :func:`save_dataset` stamps each
    with a checksum; older outputs carry holiwidget's title."""

    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        if path.is_dir():
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        else:
            with h5py.File(path, "r") as fh:
                attrs = dict(fh.attrs)
    except Exception:  # anything unreadable is not ours to replace
        return False
    return text(attrs.get("title", "")).startswith("holiwidget") or text(
        attrs.get(CHECKSUM_ATTR, "")
    ).startswith("sha256:")


def check_dataset_output(path: str | os.PathLike) -> Path:
    """Check, before any work, that a dataset can be written to ``path`` (.nc or .zarr).

    Raises:
        HoliwidgetError: unknown format, a missing or read-only folder, or a path that holds
            a file or folder holiwidget did not write (it is never replaced).
    """
    out = Path(path)
    kind = dataset_format(out)
    check_output(out, "dataset", folder=kind == "zarr")
    if out.exists() and not _written_by_us(out):
        raise HoliwidgetError(
            f"{out} holds a {'folder' if out.is_dir() else 'file'} that holiwidget did not "
            "write; it is left alone: choose another output path or move it away"
        )
    return out


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a dataset to netCDF (``.nc``, h5netcdf) or zarr (``.zarr``), atomically.

    The output appears whole or not at all (see :mod:`holiwidget.outputs`); an existing
    output is replaced only when holiwidget wrote it, never a user's file or folder. A
    checksum of the arrays goes into ``attrs["checksum"]``: :func:`open_dataset` verifies it.
    Zarr stores are written with consolidated metadata.

    Args:
        ds: the dataset.
        path: the output file.

    Returns:
        The path written.
    """
    out = check_dataset_output(path)
    kind = dataset_format(out)
    stamped = ds.assign_attrs({CHECKSUM_ATTR: checksum(ds)})
    with atomic_output(out, "dataset", replaces=_written_by_us) as part:
        try:
            if kind == "netcdf":
                # in memory first: HDF5 crashes the process when a disk fills during a write
                data = stamped.to_netcdf(engine="h5netcdf", encoding=_string_encoding(ds))
            else:
                with warnings.catch_warnings():
                    # zarr 3 marks consolidated metadata as outside its spec; xarray and zarr
                    # read it, and without it every xr.open_zarr warns instead
                    warnings.filterwarnings("ignore", message="Consolidated metadata is currently")
                    stamped.to_zarr(part, mode="w", consolidated=True)
        except (OSError, TypeError, ValueError) as exc:
            if isinstance(exc, OSError) and kind == "zarr":
                raise  # a full disk, a lost permission: atomic_output says so
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HoliwidgetError(f"cannot write {out} ({first}); nothing was written") from None
        if kind == "netcdf":
            with open(part, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    return out


def _string_encoding(ds: xr.Dataset) -> dict:
    return {name: {"dtype": str} for name, var in ds.variables.items() if var.dtype == object}


def _load(path: Path) -> xr.Dataset:
    if dataset_format(path) == "netcdf":
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    # each array's own metadata, not the consolidated copy: a damaged array is noticed
    with xr.open_zarr(path, consolidated=False) as ds:
        return ds.load()


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a dataset written by :func:`save_dataset` fully into memory, checked.

    Raises:
        HoliwidgetError: no such path, a file that is not a readable netCDF or zarr dataset
            (garbage, truncated), or arrays that do not match the checksum stored at save
            time (the file was changed or damaged on disk).
    """
    p = Path(path)
    if not p.exists():
        raise HoliwidgetError(f"no such dataset: {p}")
    try:
        ds = _load(p)
    except HoliwidgetError:
        raise
    except Exception as exc:  # h5py, zarr and xarray raise many kinds
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DamagedDatasetError(p, f"cannot be read: {type(exc).__name__}: {first}") from None
    stored = ds.attrs.pop(CHECKSUM_ATTR, None)
    if stored is not None and stored != checksum(ds):
        raise DamagedDatasetError(
            p, "its values differ from the checksum stored when it was written"
        )
    return ds
