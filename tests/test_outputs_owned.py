"""User-visible files, continued (holiwidget.outputs): a plain file is replaced only when it
is recognised as an earlier output of ours of the same kind (figures by their metadata mark,
summaries by their first line), the partial folder of an evaluation loses only what
holiwidget wrote there, and a full disk while taking the lock or keeping a record is one
line (a real tmpfs, as root)."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

from holiwidget import HoliwidgetError
from holiwidget.evaluation.scoring import ImageRecord, Protocol
from holiwidget.evaluation.store import ResultStore, result_shapes
from holiwidget.evaluation.summary import summary_paths, write_summary, write_table_csv
from holiwidget.figure import FIGURE_FORMATS, save_figure
from holiwidget.outputs import is_marked_figure, write_bytes

# --------------------------------------------------------------------------------------
# A plain file is replaced only when it is ours, of the same kind


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2), dpi=50)
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


@pytest.mark.parametrize("fmt", FIGURE_FORMATS)
def test_a_figure_replaces_only_a_figure_of_ours(tmp_path: Path, fmt: str) -> None:
    users = tmp_path / f"thesis.{fmt}"
    users.write_text("years of work")
    with pytest.raises(HoliwidgetError, match="did not write as a figure") as err:
        save_figure(_figure(), users)
    assert "\n" not in str(err.value) and str(users) in str(err.value)
    assert users.read_text() == "years of work"

    plain = tmp_path / f"plain.{fmt}"
    _figure().savefig(plain, format=fmt)  # a real figure, but not holiwidget's
    before = plain.read_bytes()
    with pytest.raises(HoliwidgetError, match="did not write"):
        save_figure(_figure(), plain)
    assert plain.read_bytes() == before

    ours = save_figure(_figure(), tmp_path / f"ours.{fmt}")
    assert is_marked_figure(ours)
    first = ours.read_bytes()
    fig = _figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    save_figure(fig, ours)  # an earlier figure of ours is replaced
    assert is_marked_figure(ours) and ours.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([users.name, plain.name, ours.name])


def test_write_bytes_without_a_test_refuses_any_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(HoliwidgetError, match="cannot tell") as err:
        write_bytes(target, b"new")
    assert "\n" not in str(err.value) and target.read_text() == "mine"


def _results(n: int = 3) -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {"score": (("image", "cam", "layer", "metric"), rng.random((n, 1, 1, 2)))},
        coords={
            "image": [f"img{i}" for i in range(n)],
            "cam": ["gradcam"],
            "layer": ["features.18"],
            "metric": ["insertion", "deletion"],
        },
        attrs={"protocol": json.dumps({"target": "label", "step": 224, "seed": 0})},
    )


def test_a_summary_replaces_only_a_summary_of_ours(tmp_path: Path) -> None:
    output = tmp_path / "results.zarr"
    md, csv = summary_paths(output)
    for users in (md, csv):
        users.write_text("my own notes\n")
        with pytest.raises(HoliwidgetError, match="did not write") as err:
            write_summary(_results(), output)
        assert "\n" not in str(err.value) and str(users) in str(err.value)
        assert users.read_text() == "my own notes\n"
        users.unlink()
    write_summary(_results(3), output)
    assert "3 images" in md.read_text()
    write_summary(_results(4), output)  # an earlier summary of ours is replaced
    assert "4 images" in md.read_text()
    assert md.read_text().startswith("<!-- written by holiwidget")
    assert csv.read_text().startswith("layer,method,metric,n,mean,low,high\n")
    # a CSV of another table (another header) is not replaced
    csv.write_text("layer,metric,scales,setting\nx,y,z,w\n")
    with pytest.raises(HoliwidgetError, match="did not write"):
        write_summary(_results(), output)
    assert csv.read_text().startswith("layer,metric,scales")


def test_a_table_without_columns_replaces_no_file(tmp_path: Path) -> None:
    # Its header line is empty: it must not pass for any file that begins with a blank line.
    users = tmp_path / "results-summary.csv"
    users.write_text("\nmy own notes\n")
    with pytest.raises(HoliwidgetError, match="cannot tell") as err:
        write_table_csv(users, pd.DataFrame([]))
    assert "\n" not in str(err.value) and users.read_text() == "\nmy own notes\n"


# --------------------------------------------------------------------------------------
# The partial folder of an evaluation loses only what holiwidget wrote there


def _protocol() -> Protocol:
    return Protocol(
        model="m",
        weights="w",
        fingerprint="f",
        layers=("features.18",),
        methods=("gradcam",),
        metrics=("insertion",),
        target="label",
        step=224,
        seed=0,
    )


def _record(image: str) -> ImageRecord:
    shapes = result_shapes(_protocol())
    return ImageRecord(image, None, {k: np.zeros(s, np.float32) for k, s in shapes.items()})


def _results_ds() -> xr.Dataset:
    return xr.Dataset({"score": ("image", np.zeros(2))}, attrs={"title": "holiwidget evaluation"})


def test_finish_removes_only_what_holiwidget_wrote_in_the_partial_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "results.zarr"
    store = ResultStore(out, _protocol(), result_shapes(_protocol()))
    store.add(_record("a.jpg"))
    store.add(_record("b.jpg"))
    users = store.partial / "notes.txt"
    users.write_text("mine")
    stray = store.partial / "mine.npz"  # not a record of this run
    stray.write_bytes(b"user data")
    with caplog.at_level(logging.WARNING, logger="holiwidget"):
        store.finish(_results_ds())
    assert out.is_dir()
    assert sorted(p.name for p in store.partial.iterdir()) == ["mine.npz", "notes.txt"]
    assert users.read_text() == "mine" and stray.read_bytes() == b"user data"
    assert any(str(store.partial) in r.getMessage() for r in caplog.records)

    # a resumed run removes the records it read back, and then the folder
    again = tmp_path / "again.zarr"
    first = ResultStore(again, _protocol(), result_shapes(_protocol()))
    first.add(_record("a.jpg"))
    second = ResultStore(again, _protocol(), result_shapes(_protocol()))
    np.savez(first.partial / "c.jpg.npz", image=np.array("x.jpg"), error=np.array(""))
    assert set(second.load()) == {"a.jpg"}
    second.add(_record("b.jpg"))
    second.finish(_results_ds())  # c.jpg.npz: a record's layout under another name, removed
    assert not second.partial.exists()


def test_a_file_where_the_partial_folder_goes_is_refused_before_any_work(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.zarr", _protocol(), result_shapes(_protocol()))
    store.partial.write_text("mine")
    with pytest.raises(HoliwidgetError, match="left alone") as err:
        store.load()  # before any image is scored
    assert "\n" not in str(err.value) and str(store.partial) in str(err.value)
    assert store.partial.read_text() == "mine"


# --------------------------------------------------------------------------------------
# A full disk while taking the lock or keeping a record: one line


def _mount(tmp_path: Path, options: str, name: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / name
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    return mount


def _fill(mount: Path) -> None:
    """Use up every byte of ``mount`` (one file grown until the disk is full)."""
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _inodes(mount: Path) -> None:
    """Use up every inode of ``mount`` (empty files)."""
    for i in range(100):
        try:
            (mount / f"f{i}").touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return


def _exhausted(tmp_path: Path, options: str, name: str, use_up):
    """A tmpfs mounted with ``options`` and used up by ``use_up``; unmounted afterwards."""
    mount = _mount(tmp_path, options, name)
    try:
        use_up(mount)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A tmpfs with no free byte left (a file fills it)."""
    yield from _exhausted(tmp_path, "size=256k", "full", _fill)


@pytest.fixture
def no_inodes(tmp_path: Path):
    """A tmpfs where no file or folder can be made (every inode is used)."""
    yield from _exhausted(tmp_path, "size=1m,nr_inodes=16", "no-inodes", _inodes)


def test_the_lock_on_a_full_disk_is_one_line_on_the_command_line(
    full_disk: Path, mobilenet_weights: Path
) -> None:
    from clirun import run_cli

    argv = ["explain", "chelsea", "--model", "mobilenet_v2", "--weights", mobilenet_weights]
    code, _, err = run_cli([*argv, "--output", full_disk / "maps.nc"])
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot write the lock file" in err and "No space left" in err
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_record_on_a_full_disk_is_one_line(full_disk: Path, no_inodes: Path) -> None:
    for disk in (no_inodes, full_disk):  # the folder cannot be made; the record not written
        before = sorted(p.name for p in disk.iterdir())
        store = ResultStore(disk / "results.zarr", _protocol(), result_shapes(_protocol()))
        with pytest.raises(HoliwidgetError, match="No space left") as err:
            store.add(_record("a.jpg"))
        assert "\n" not in str(err.value)
        left = sorted(p.name for p in disk.iterdir() if p.name != "results.zarr.partial")
        assert left == before


def test_explain_refuses_a_users_file_as_its_figure_before_any_work(
    tmp_path: Path, mobilenet_weights: Path
) -> None:
    from clirun import run_cli

    users = tmp_path / "thesis.png"
    users.write_bytes(b"my own picture, not a figure of holiwidget's")
    code, _, err = run_cli(
        [
            *("explain", "chelsea", "--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--output", tmp_path / "maps.nc", "--figure", users),
        ]
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "did not write as a figure" in err
    assert users.read_bytes() == b"my own picture, not a figure of holiwidget's"
    assert not (tmp_path / "maps.nc").exists()  # refused before any work
