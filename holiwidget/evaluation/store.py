"""Evaluation results: per-image records kept on disk as they finish, and the results dataset.

While a run is under way each finished image is written at once to its own file in a
folder beside the output (``RESULTS.zarr.partial/``), atomically (a temporary file renamed
into place): an interrupted run loses at most the images in flight, never a finished one,
and no file is ever half-written. Re-running the same command reads the finished images
back (from that folder, and from an earlier complete ``RESULTS.zarr``) and computes only
the rest; each image is stored under its name, so none is counted twice. At the end the
results are written whole to ``RESULTS.zarr`` and the folder is removed.

A run with a different protocol (model weights, layers, methods, step, seed, ...) refuses
to reuse the stored images and says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..dataset import open_dataset, package_versions, save_dataset
from ..errors import HoliwidgetError
from ..methods import LABELS
from ..metrics.causal import curve_fractions
from ..outputs import atomic_output, write_bytes
from .scoring import ImageRecord, Protocol

__all__ = ["ResultStore", "build_results", "records_from_results"]

log = logging.getLogger(__name__)

#: Per-image variables and their dimensions after ``image``.
_DIMS = {
    "score": ("cam", "layer", "metric"),
    "insertion_curve": ("cam", "layer", "step"),
    "deletion_curve": ("cam", "layer", "step"),
    "road_morf": ("cam", "layer", "percentile"),
    "road_lerf": ("cam", "layer", "percentile"),
}
#: Per-image scalars, kept as coordinates along ``image``.
_SCALARS = (
    "label",
    "target",
    "prediction",
    "correct",
    "probability",
    "boxes",
    "centre_prior_epg",
)
_DESCRIPTIONS = {
    "score": "per-image score of each map (area under the curve, ROAD combined, EPG)",
    "insertion_curve": "softmax probability of the target while pixels are inserted",
    "deletion_curve": "softmax probability of the target while pixels are deleted",
    "road_morf": "ROAD: p(imputed) - p(original), most relevant pixels removed first",
    "road_lerf": "ROAD: p(imputed) - p(original), least relevant pixels removed first",
    "label": "annotated class (-1: none)",
    "target": "explained class",
    "prediction": "model's top-1 class",
    "correct": "top-1 prediction equals the label",
    "probability": "softmax probability of the target on the unperturbed image",
    "boxes": "number of boxes of the image (0: excluded from EPG)",
    "centre_prior_epg": "EPG of a centred Gaussian (sigma 0.25): the EPG baseline",
}


def build_results(
    records: Iterable[ImageRecord],
    protocol: Protocol,
    skipped: dict[str, str],
    problems: Sequence[str] = (),
) -> xr.Dataset:
    """The results dataset of finished records (in the given order).

    Args:
        records: scored images (none with an error).
        protocol: the protocol they were scored with.
        skipped: image -> why it was left out.
        problems: mismatches between the image files and the annotations (one line each).

    Returns:
        ``score`` (image, cam, layer, metric), the curves, per-image coordinates, and the
        protocol in ``attrs``.
    """
    done = list(records)
    if not done:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise HoliwidgetError(f"no image could be scored ({reasons})")
    data = {}
    for name, dims in _DIMS.items():
        if name in done[0].values:
            data[name] = (("image", *dims), np.stack([r.values[name] for r in done]))
    coords = {
        "image": ("image", np.array([r.image for r in done], dtype=object)),
        "cam": ("cam", np.array(protocol.methods, dtype=object)),
        "cam_label": ("cam", np.array([LABELS[m] for m in protocol.methods], dtype=object)),
        "layer": ("layer", np.array(protocol.layers, dtype=object)),
        "metric": ("metric", np.array(protocol.metrics, dtype=object)),
        "percentile": ("percentile", np.asarray(protocol.percentiles, dtype=np.float64)),
        **{k: ("image", np.array([r.values[k] for r in done])) for k in _SCALARS},
    }
    if "insertion_curve" in data:
        pixels = protocol.input_size**2
        coords["fraction"] = ("step", curve_fractions(pixels, protocol.step))
    ds = xr.Dataset(data, coords=coords)
    if "road_morf" not in data:
        ds = ds.drop_vars("percentile")
    for name, text in _DESCRIPTIONS.items():
        if name in ds.variables:
            ds[name].attrs["long_name"] = text
    ds.attrs = {
        "title": "holiwidget evaluation",
        "protocol": protocol.to_json(),
        "skipped": json.dumps(skipped, sort_keys=True),
        "input_problems": json.dumps(list(problems)),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "scores": "insertion/deletion: AUC of the curve over the changed fraction; overall = "
        "insertion - deletion; road: (mean LeRF - mean MoRF) / 2; epg: energy in the boxes",
    }
    return ds


def records_from_results(ds: xr.Dataset) -> list[ImageRecord]:
    """Turn a results dataset back into per-image records (to resume from it)."""
    names = [n for n in (*_DIMS, *_SCALARS) if n in ds.variables]
    return [
        ImageRecord(str(image), None, {n: ds[n].values[i] for n in names})
        for i, image in enumerate(ds["image"].values)
    ]


def _file_name(image: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", image)
    return f"{image}.npz" if safe == image else f"{safe}-{zlib.crc32(image.encode()):08x}.npz"


class ResultStore:
    """Finished images of one run on disk, for resuming (see the module's notes).

    Args:
        output: the results path (``*.zarr`` or ``*.nc``).
        protocol: the run's protocol.
    """

    def __init__(self, output: str | os.PathLike, protocol: Protocol) -> None:
        self.output = Path(output)
        self.protocol = protocol
        self.partial = self.output.with_name(self.output.name + ".partial")

    def _check(self, found: str, where: Path) -> None:
        if found == self.protocol.to_json():
            return
        mine, theirs = json.loads(self.protocol.to_json()), json.loads(found)
        diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
        raise HoliwidgetError(
            f"{where} holds results of another protocol (differs in {', '.join(diff)}); "
            "choose another output path or delete it"
        )

    def load(self) -> dict[str, ImageRecord]:
        """The images finished earlier (with this protocol), by name; skipped ones included."""
        done: dict[str, ImageRecord] = {}
        if self.output.exists():
            ds = open_dataset(self.output)
            self._check(ds.attrs.get("protocol", ""), self.output)
            done.update({r.image: r for r in records_from_results(ds)})
            for image, reason in json.loads(ds.attrs.get("skipped", "{}")).items():
                done[image] = ImageRecord(image, reason)
        if self.partial.is_dir():
            marker = self.partial / "protocol.json"
            if marker.is_file():
                self._check(marker.read_text(), self.partial)
            for f in sorted(self.partial.glob("*.npz")):
                record = _read_record(f)
                if record is not None:
                    done[record.image] = record
        return done

    def add(self, record: ImageRecord) -> None:
        """Keep a finished image (atomically)."""
        if not self.partial.is_dir():
            self.partial.mkdir(parents=False, exist_ok=True)
            write_bytes(
                self.partial / "protocol.json", self.protocol.to_json().encode(), "protocol"
            )
        arrays = {f"v_{k}": np.asarray(v) for k, v in record.values.items()}
        arrays["image"] = np.array(record.image)
        arrays["error"] = np.array(record.error or "")
        path = self.partial / _file_name(record.image)
        with atomic_output(path, "result") as part, open(part, "wb") as fh:
            np.savez(fh, **arrays)

    def finish(self, ds: xr.Dataset) -> Path:
        """Write the results whole, then drop the per-image files."""
        path = save_dataset(ds, self.output)
        shutil.rmtree(self.partial, ignore_errors=True)
        return path


def _read_record(path: Path) -> ImageRecord | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            values = {k[2:]: z[k] for k in z.files if k.startswith("v_")}
            return ImageRecord(str(z["image"]), str(z["error"]) or None, values)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable partial result %s (%s)", path.name, exc)
        return None
