"""`holiwidget.evaluate` when things go wrong: re-runs on fewer images keep what is finished,
images that cannot be read are skipped with a reason, and damaged per-image files,
protocol files and finished results are told apart from results (recomputed, or a one-line
error that says what to do). A tiny CNN on small random images keeps each run under a
second; interruptions are real (a KeyboardInterrupt raised from inside the model while the
run writes its files), damage is done to the real files the run wrote."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from clirun import run_cli
from conftest import tiny_image
from PIL import Image

import holiwidget
from holiwidget import HoliwidgetError, open_dataset

KW = dict(layers="stage2,stage3", methods="gradcam,eigencam", step=224 * 224 // 4, seed=1)
KW["metrics"] = "insertion,deletion,overall,epg"  # ROAD's solves take seconds per image
N = 6


@pytest.fixture
def image_set(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Six small images with labels and boxes, in a folder, and their CSV."""
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"img{i}.png" for i in range(N)]
    for i, name in enumerate(names):
        Image.fromarray(tiny_image(i)).save(folder / name)
    table = tmp_path / "annotations.csv"
    _write_csv(table, [[name, i % 10, 80, 96, 10, 10, 50, 60] for i, name in enumerate(names)])
    return folder, table, names


def _write_csv(path: Path, rows: list[list[object]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "width", "height", "x0", "y0", "x1", "y1"])
        w.writerows(rows)


@pytest.fixture
def reference(tiny, image_set) -> xr.Dataset:
    """An uninterrupted run on the six images, without an output."""
    folder, table, _ = image_set
    return holiwidget.evaluate(tiny, folder, table, **KW)


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["protocol"] == b.attrs["protocol"]


def _interrupted(model, folder: Path, table: Path, out: Path, after: int) -> Path:
    """Run until ``after`` images are kept in RESULTS.partial/, then interrupt the run from
    inside the model (as Ctrl-C would); the partial folder."""
    partial = out.with_name(out.name + ".partial")

    def interrupt(*_: object) -> None:
        if len(list(partial.glob("*.npz"))) >= after:
            raise KeyboardInterrupt

    handle = model.register_forward_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            holiwidget.evaluate(model, folder, table, output=out, **KW)
    finally:
        handle.remove()
    assert not out.exists() and len(list(partial.glob("*.npz"))) == after
    return partial


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------- 3: re-runs on fewer images


@pytest.mark.parametrize("fewer", ["limit", "files"])
def test_a_rerun_on_fewer_images_keeps_the_finished_ones(
    fewer, tiny, image_set, reference, tmp_path, caplog
) -> None:
    folder, table, names = image_set
    out = tmp_path / "r.zarr"
    full = holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    assert full.sizes["image"] == N
    if fewer == "limit":
        again = holiwidget.evaluate(tiny, folder, table, output=out, limit=2, **KW)
    else:
        two = tmp_path / "two"
        two.mkdir()
        for name in names[:2]:
            shutil.copy(folder / name, two / name)
        again = holiwidget.evaluate(tiny, two, table, output=out, **KW)
    # Nothing is lost: the results hold the union, in the earlier order, and say so.
    _same(again, full)
    _same(open_dataset(out), reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"{out} holds 4 image(s) this run does not include (img2.png, img3.png, img4.png, ...)" in w
        and "they are kept" in w
        and "cover 6 images" in w
        for w in warnings
    ), warnings
    assert "6 images;" in out.with_name("r-summary.md").read_text()


def test_a_rerun_on_more_images_adds_to_the_finished_ones(
    tiny, image_set, reference, tmp_path, caplog
) -> None:
    folder, table, _ = image_set
    out = tmp_path / "r.nc"
    holiwidget.evaluate(tiny, folder, table, output=out, limit=2, **KW)
    caplog.set_level(logging.INFO, logger="holiwidget")
    more = holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    assert "resuming: 2 of 6 images already scored" in caplog.text
    _same(more, reference)


# ----------------------------------------------- 7: images that cannot be read, skipped


def _bomb_png(path: Path) -> None:
    """A PNG whose header claims 20000 x 20000 pixels: PIL refuses it as a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_images_that_cannot_be_read_are_skipped_with_a_reason(
    tiny, image_set, tmp_path, caplog
) -> None:
    folder, table, names = image_set
    good = folder / names[0]
    jpeg = folder / "truncated.jpg"
    Image.fromarray(tiny_image(9)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    (folder / "text.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    _bomb_png(folder / "bomb.png")
    broken = ["truncated.jpg", "text.png", "empty.jpg", "bomb.png"]
    rows = [[name, 1, 80, 96, 10, 10, 50, 60] for name in [names[0], *broken]]
    _write_csv(table, rows)
    out = tmp_path / "r.zarr"

    ds = holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    assert list(ds["image"].values) == [names[0]]
    skipped = json.loads(ds.attrs["skipped"])
    assert sorted(skipped) == sorted(broken)
    for name, reason in skipped.items():
        assert str(folder / name) in reason and "\n" not in reason
    assert "decompression-bomb limit" in skipped["bomb.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in broken:
        assert any(w.startswith(f"{name} left out: ") for w in warnings), warnings

    # Fixed files are tried again by the next run; the others stay left out.
    shutil.copy(good, folder / "text.png")
    again = holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    assert list(again["image"].values) == [names[0], "text.png"]
    assert sorted(json.loads(again.attrs["skipped"])) == ["bomb.png", "empty.jpg", "truncated.jpg"]
    _same(again.isel(image=[0]), ds)


# ------------------------------------------------- 8: damaged per-image files, recomputed


def test_damaged_partial_results_are_reported_and_recomputed(
    tiny, image_set, reference, tmp_path, caplog
) -> None:
    folder, table, _ = image_set
    out = tmp_path / "r.zarr"
    partial = _interrupted(tiny, folder, table, out, after=5)
    files = sorted(partial.glob("*.npz"))
    # Five kinds of damage, one per finished image:
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # truncated (killed while the disk filled)
    files[1].write_bytes(b"")  # empty
    flipped = bytearray(files[2].read_bytes())  # the last byte of its first array changed
    with zipfile.ZipFile(files[2]) as z:
        members = sorted(z.infolist(), key=lambda m: m.header_offset)
    assert members[0].filename.startswith("v_")
    flipped[members[1].header_offset - 1] ^= 0xFF
    files[2].write_bytes(bytes(flipped))
    with np.load(files[3]) as z:  # readable, but arrays that do not fit the protocol
        arrays = dict(z)
    arrays["v_score"] = arrays["v_score"][:, :1]
    np.savez(files[3], **arrays)
    shutil.copy(files[4], partial / "img9.png.npz")  # a record under another image's name
    caplog.set_level(logging.INFO, logger="holiwidget")

    resumed = holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    _same(resumed, reference)
    _same(open_dataset(out), reference)
    assert not partial.exists()
    assert "resuming: 1 of 6 images already scored" in caplog.text
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 5
    assert all(r.levelno == logging.WARNING for r in caplog.records if "is damaged" in r.message)
    for f in [*files[:4], partial / "img9.png.npz"]:
        assert any(m.startswith(f"{f} is damaged (") for m in damaged), damaged
    assert any("BadZipFile: Bad CRC-32" in m for m in damaged)
    assert any("score (2, 1, 4) instead of (2, 2, 4)" in m for m in damaged)
    assert any("holds image 'img4.png', not the one its name says" in m for m in damaged)
    assert all(m.endswith("its image is scored again") for m in damaged)


def test_an_empty_partial_folder_is_a_fresh_start(tiny, image_set, reference, tmp_path) -> None:
    folder, table, _ = image_set
    out = tmp_path / "r.nc"
    out.with_name("r.nc.partial").mkdir()  # killed between creating it and its first file
    _same(holiwidget.evaluate(tiny, folder, table, output=out, **KW), reference)


# ---------------------------------------- 8: damaged protocol files and finished results


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_text('{"model": "TinyCNN", "lay'), "protocol.json is damaged"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot read"),
        (lambda p: p.write_text("[1, 2]"), "protocol.json is damaged"),
        (lambda p: p.unlink(), "holds results but no protocol.json"),
    ],
    ids=["truncated", "binary", "not-a-protocol", "missing"],
)
def test_a_damaged_protocol_file_is_one_line_and_nothing_is_touched(
    damage, message, tiny, image_set, tmp_path
) -> None:
    folder, table, _ = image_set
    out = tmp_path / "r.zarr"
    partial = _interrupted(tiny, folder, table, out, after=2)
    damage(partial / "protocol.json")
    before = {p.name: p.read_bytes() for p in partial.iterdir()}
    with pytest.raises(HoliwidgetError) as excinfo:
        holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    text = _one_line_error(excinfo)
    assert message in text and f"delete the folder {partial} to start over" in text
    assert {p.name: p.read_bytes() for p in partial.iterdir()} == before
    assert not out.exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("suffix", "damage", "message"),
    [
        (".nc", _truncate, "damaged (cannot be read: OSError: "),
        (".nc", lambda p: p.write_bytes(b"junk"), "damaged (cannot be read: OSError: "),
        (".zarr", lambda p: (p / "zarr.json").write_text("{bad"), "damaged (cannot be read: "),
        (".zarr", lambda p: _truncate(p / "score" / "zarr.json"), "damaged (cannot be read: "),
        # the checksum stored at save time notices the lost array first
        (".zarr", lambda p: shutil.rmtree(p / "image"), "damaged (its values differ from the"),
    ],
    ids=["nc-truncated", "nc-junk", "zarr-meta", "zarr-variable", "zarr-no-image"],
)
def test_damaged_finished_results_are_one_line_and_kept(
    suffix, damage, message, tiny, image_set, tmp_path
) -> None:
    folder, table, _ = image_set
    out = tmp_path / f"r{suffix}"
    holiwidget.evaluate(tiny, folder, table, output=out, limit=2, **KW)
    damage(out)
    before = _snapshot(out)
    with pytest.raises(HoliwidgetError) as excinfo:
        holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    text = _one_line_error(excinfo)
    assert text.startswith(f"{out} ") and message in text
    assert "; move it away (or delete it) and run again to recompute it" in text
    assert _snapshot(out) == before


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_results_of_something_else_are_refused(tiny, image_set, tmp_path) -> None:
    folder, table, _ = image_set
    out = tmp_path / "r.nc"
    holiwidget.save_dataset(xr.Dataset({"x": ("i", np.arange(3.0))}), out)
    with pytest.raises(HoliwidgetError) as excinfo:
        holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    assert "is damaged (no protocol in its attrs" in _one_line_error(excinfo)
    # Readable results whose arrays do not fit their protocol are damaged too.
    ds = holiwidget.evaluate(tiny, folder, table, output=tmp_path / "ok.nc", limit=2, **KW)
    holiwidget.save_dataset(ds.isel(step=slice(0, 3)), out)
    with pytest.raises(HoliwidgetError) as excinfo:
        holiwidget.evaluate(tiny, folder, table, output=out, **KW)
    text = _one_line_error(excinfo)
    assert "is damaged (insertion_curve (2, 2, 3) instead of (2, 2, 5)" in text


def test_the_command_line_reports_damaged_results_in_one_line(
    shared, mobilenet_weights, tmp_path
) -> None:
    out = tmp_path / "r.nc"
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)  # an HDF5 signature, then nothing
    root = shared / "data" / "imagenet-val-1300"
    code, stdout, stderr = run_cli(
        [
            "evaluate",
            *("--images", root / "images", "--annotations", root / "annotations.csv"),
            *("--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--layers", "features.18", "--methods", "gradcam", "--limit", 1),
            *("--metrics", "deletion", "--no-progress", "--output", out),
        ]
    )
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"holiwidget: error: {out} is damaged (cannot be read: ")
    assert len(stderr.splitlines()) == 1 and "move it away" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]
