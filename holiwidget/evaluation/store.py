"""Evaluation results: per-image records kept on disk as they finish, and the results dataset.

While a run is under way each finished image is written at once to its own file in a
folder beside the output (``RESULTS.zarr.partial/``), atomically (a temporary file renamed
into place): an interrupted run loses at most the images in flight, never a finished one,
and no file is ever half-written. Re-running the same command reads the finished images
back (from that folder, and from an earlier complete ``RESULTS.zarr``) and computes only
the rest; each image is stored under its name, so none is counted twice. At the end the
results are written whole to ``RESULTS.zarr`` and what holiwidget wrote in the folder
(``protocol.json``, the records this run wrote or read back, temporary folders of its
writes) is removed, then the folder if that left it empty; anything else found there (a
file that is not a record, a damaged record of an image no longer evaluated) is left
alone, with a warning.
A full disk or a missing permission while keeping a record is one :class:`HoliwidgetError`.

A run with a different protocol (model weights, layers, methods, step, seed, ...) refuses
to reuse the stored images and says so.

Damage is told apart from results: a per-image file that cannot be read back, or whose
arrays do not fit the protocol, is reported in one warning and its image computed again; a
damaged ``protocol.json`` (without it no stored image can be trusted) and an unreadable
finished ``RESULTS.zarr`` stop the run with a one-line error that says what to move away.
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

from ..dataset import DamagedDatasetError, open_dataset, package_versions, save_dataset
from ..errors import HoliwidgetError
from ..methods import LABELS
from ..metrics.causal import curve_fractions
from ..outputs import atomic_output, write_bytes
from .scoring import ImageRecord, Protocol, one_line

__all__ = ["ResultStore", "build_results", "records_from_results", "result_shapes"]

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


def records_from_results(ds: xr.Dataset, names: Iterable[str] | None = None) -> list[ImageRecord]:
    """Turn a results dataset back into per-image records (to resume from it).

    ``names``: the per-image variables and coordinates to take (default: evaluate's)."""
    names = [n for n in (names or (*_DIMS, *_SCALARS)) if n in ds.variables]
    return [
        ImageRecord(str(image), None, {n: ds[n].values[i] for n in names})
        for i, image in enumerate(ds["image"].values)
    ]


def _file_name(image: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", image)
    return f"{image}.npz" if safe == image else f"{safe}-{zlib.crc32(image.encode()):08x}.npz"


def result_shapes(protocol: Protocol) -> dict[str, tuple[int, ...]]:
    """The shape of every per-image variable an evaluated image of ``protocol`` has."""
    c, n_layers = len(protocol.methods), len(protocol.layers)
    shapes = {"score": (c, n_layers, len(protocol.metrics))}
    if {"insertion", "deletion", "overall"} & set(protocol.metrics):
        steps = len(curve_fractions(protocol.input_size**2, protocol.step))
        shapes["insertion_curve"] = shapes["deletion_curve"] = (c, n_layers, steps)
    if "road" in protocol.metrics:
        shapes["road_morf"] = shapes["road_lerf"] = (c, n_layers, len(protocol.percentiles))
    return shapes | dict.fromkeys(_SCALARS, ())


def _misfit(record: ImageRecord, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why a stored record does not fit the protocol (None: it fits)."""
    if not record.image:
        return "no image name"
    if record.error is not None:
        return None
    missing = [k for k in shapes if k not in record.values]
    if missing:
        return f"no {', '.join(missing)}"
    wrong = [
        f"{k} {record.values[k].shape} instead of {shape}"
        for k, shape in shapes.items()
        if np.shape(record.values[k]) != shape
    ]
    return "; ".join(wrong) or None


class ResultStore:
    """Finished images of one run on disk, for resuming (see the module's notes).

    Args:
        output: the results path (``*.zarr`` or ``*.nc``).
        protocol: the run's protocol (anything with ``to_json``, naming model and layers).
        shapes: the shape of each per-image variable (e.g. :func:`result_shapes`).
    """

    def __init__(
        self, output: str | os.PathLike, protocol: Protocol, shapes: dict[str, tuple[int, ...]]
    ) -> None:
        self.output = Path(output)
        self.protocol = protocol
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.marker = self.partial / "protocol.json"
        self._shapes = shapes
        self._ours: set[str] = set()  # record files of the partial folder known to be ours

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
        """The images finished earlier (with this protocol), by name; skipped ones included.

        Raises:
            HoliwidgetError: the finished results or the partial folder's protocol file are
                damaged, or hold another protocol; or a file stands where the folder goes.
        """
        if self.partial.is_symlink() or (self.partial.exists() and not self.partial.is_dir()):
            raise HoliwidgetError(
                f"{self.partial} is not holiwidget's folder of finished images; it is left "
                "alone: move it away or choose another output path"
            )
        done: dict[str, ImageRecord] = {}
        if self.output.exists():
            done.update(self._load_finished())
        if self.partial.is_dir():
            self._check_marker()
            for f in sorted(self.partial.glob("*.npz")):
                if not f.is_file():
                    continue
                record = _read_record(f)
                problem = None if record is None else _misfit(record, self._shapes)
                if record is not None and problem is None and _file_name(record.image) != f.name:
                    problem = f"holds image {record.image!r}, not the one its name says"
                if record is not None:  # a record's layout: one of ours, even if misfit
                    self._ours.add(f.name)
                if problem is not None:
                    log.warning("%s is damaged (%s); its image is scored again", f, problem)
                elif record is not None:
                    done[record.image] = record
        return done

    def _load_finished(self) -> dict[str, ImageRecord]:
        def damaged(reason: str) -> HoliwidgetError:
            return HoliwidgetError(
                f"{self.output} is damaged ({reason}); move it away (or delete it) and run "
                "again to recompute it, or choose another output path"
            )

        try:
            ds = open_dataset(self.output)
        except DamagedDatasetError as exc:
            raise damaged(exc.reason) from None
        except HoliwidgetError:
            raise
        except Exception as exc:  # a damaged file makes zarr, h5py or json raise many types
            raise damaged(f"cannot be read: {one_line(exc)}") from None
        found = ds.attrs.get("protocol")
        if not isinstance(found, str) or not _is_protocol(found):
            raise damaged("no protocol in its attrs: not made by holiwidget evaluate or sweep?")
        self._check(found, self.output)
        missing = [v for v in ("image", *self._shapes) if v not in ds.variables]
        if missing:
            raise damaged(f"no {', '.join(missing)}")
        try:
            records = records_from_results(ds, self._shapes)
            skipped = json.loads(ds.attrs.get("skipped", "{}"))
            if not isinstance(skipped, dict):
                raise ValueError("attrs['skipped'] is not a mapping")
        except (KeyError, ValueError, IndexError) as exc:
            raise damaged(one_line(exc)) from None
        names = [r.image for r in records]
        problems = [p for p in (_misfit(r, self._shapes) for r in records) if p]
        if len(set(names)) != len(names):
            problems.append("an image name appears twice")
        if problems:
            raise damaged(problems[0])
        done = {r.image: r for r in records}
        for image, reason in skipped.items():
            done[str(image)] = ImageRecord(str(image), str(reason))
        return done

    def _check_marker(self) -> None:
        fix = (
            f"delete the folder {self.partial} to start over (its finished images are "
            "computed again)"
        )
        if not self.marker.is_file():
            if any(f.is_file() for f in self.partial.glob("*.npz")):
                raise HoliwidgetError(
                    f"{self.partial} holds results but no protocol.json, so they cannot be "
                    f"trusted; {fix}"
                )
            return  # created, but killed before its first image: protocol.json comes next
        try:
            found = self.marker.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HoliwidgetError(f"cannot read {self.marker} ({one_line(exc)}); {fix}") from None
        if not _is_protocol(found):
            raise HoliwidgetError(f"{self.marker} is damaged (not a protocol); {fix}")
        self._check(found, self.partial)

    def add(self, record: ImageRecord) -> None:
        """Keep a finished image (atomically).

        Raises:
            HoliwidgetError: the record cannot be written (a full disk, a missing permission).
        """
        if not self.marker.is_file():
            try:
                self.partial.mkdir(parents=False, exist_ok=True)
            except OSError as exc:
                raise HoliwidgetError(
                    f"cannot create the folder {self.partial} ({exc.strerror or exc}); free "
                    "some space or choose another output path"
                ) from None
            write_bytes(self.marker, self.protocol.to_json().encode(), "protocol")
        arrays = {f"v_{k}": np.asarray(v) for k, v in record.values.items()}
        arrays["image"] = np.array(record.image)
        arrays["error"] = np.array(record.error or "")
        path = self.partial / _file_name(record.image)
        # the folder is this run's (its protocol.json checked by load): a record under this
        # image's name is an earlier (or damaged) one of ours
        with atomic_output(path, "result", replaces=_is_plain_file) as part, open(part, "wb") as fh:
            np.savez(fh, **arrays)
        self._ours.add(path.name)

    def finish(self, ds: xr.Dataset) -> Path:
        """Write the results whole, then remove the per-image files (only what holiwidget
        wrote in the partial folder; the folder itself only when that leaves it empty)."""
        path = save_dataset(ds, self.output)
        _remove_ours(self.partial, self._ours)
        return path


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _remove_ours(partial: Path, records: set[str]) -> None:
    """Remove from ``partial`` the ``records`` (file names) read or written by this run, its
    ``protocol.json`` and temporary folders of its writes; then ``partial`` if empty."""
    if not partial.is_dir() or partial.is_symlink():
        return
    temporary = re.compile(r"^\..+\.(npz|json)\.holiwidget-\d+-[A-Za-z0-9_]+$")
    try:
        for entry in list(partial.iterdir()):
            if entry.is_symlink():
                continue
            if entry.is_file() and (entry.name in records or entry.name == "protocol.json"):
                entry.unlink()
            elif entry.is_dir() and temporary.match(entry.name):
                shutil.rmtree(entry)
        partial.rmdir()
    except OSError as exc:
        left = ", ".join(sorted(p.name for p in partial.iterdir())[:3]) if partial.is_dir() else ""
        log.warning("left %s in place (%s): %s", partial, exc.strerror or exc, left)


def _is_protocol(text: str) -> bool:
    """Whether ``text`` is a protocol's JSON (an object naming the model and the layers)."""
    try:
        found = json.loads(text)
    except ValueError:
        return False
    return isinstance(found, dict) and {"model", "layers", "fingerprint"} <= set(found)


def _read_record(path: Path) -> ImageRecord | None:
    """A record written by :meth:`ResultStore.add`, or None (with a warning) if damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            values = {k[2:]: z[k] for k in z.files if k.startswith("v_")}
            image, error = z["image"], z["error"]
            if image.shape != () or error.shape != ():
                raise ValueError("image or error is not a single name")
            return ImageRecord(str(image), str(error) or None, values)
    except Exception as exc:  # truncated or garbled: zipfile, numpy and zlib raise many types
        log.warning("%s is damaged (%s); its image is scored again", path, one_line(exc))
        return None
