"""User-visible files (holiwidget.outputs, holiwidget.dataset): nothing of the user's is
replaced or deleted, a replaced output is never half old and half new (SIGKILL), a full disk
is one line and no partial file (a real tmpfs, as root), leftovers of killed writers are
cleaned, one writer per output, and damaged datasets are detected when opened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

import holiwidget
from holiwidget import HoliwidgetError
from holiwidget.figure import save_figure
from holiwidget.outputs import atomic_output, output_lock, write_bytes

REPO = Path(__file__).resolve().parents[1]


def _ds(value: float = 0.25, n: int = 64) -> xr.Dataset:
    data = np.full((n, n), value, dtype=np.float32)
    return xr.Dataset(
        {"attribution": (("y", "x"), data), "label": ("y", np.array(["cat"] * n, dtype=object))},
        attrs={"title": "holiwidget attributions"},
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _python(code: str, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, **kw)


# --------------------------------------------------------------------------------------
# 1. Never delete or replace what holiwidget did not write


def test_a_users_folder_or_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "userdata.zarr"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(HoliwidgetError, match="did not write") as err:
        holiwidget.save_dataset(_ds(), folder)
    assert "\n" not in str(err.value)
    assert (folder / "thesis.txt").read_text() == "years of work"

    as_nc = tmp_path / "dir.nc"
    as_nc.mkdir()
    (as_nc / "keep").write_text("x")
    with pytest.raises(HoliwidgetError, match="folder"):
        holiwidget.save_dataset(_ds(), as_nc)
    assert (as_nc / "keep").is_file()

    other = tmp_path / "other.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(other, engine="h5netcdf")
    before = other.read_bytes()
    with pytest.raises(HoliwidgetError, match="did not write"):
        holiwidget.save_dataset(_ds(), other)
    assert other.read_bytes() == before

    as_png = tmp_path / "figure.png"
    as_png.mkdir()
    with pytest.raises(HoliwidgetError, match="folder"):
        save_figure(Figure(), as_png)
    assert as_png.is_dir()
    # what holiwidget wrote before is replaced
    ours = tmp_path / "ours.zarr"
    holiwidget.save_dataset(_ds(0.25), ours)
    holiwidget.save_dataset(_ds(0.5), ours)
    assert float(holiwidget.open_dataset(ours).attribution[0, 0]) == 0.5


def test_the_command_line_refuses_a_users_folder_before_any_work(
    tmp_path: Path, mobilenet_weights: Path
) -> None:
    folder = tmp_path / "out.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    argv = ["explain", "chelsea", "--model", "mobilenet_v2", "--weights", mobilenet_weights]
    from clirun import run_cli

    start = time.perf_counter()
    code, _, err = run_cli([*argv, "--output", folder])
    assert code == 2 and "did not write" in err and err.count("\n") == 1
    assert time.perf_counter() - start < 5  # refused before the model is loaded
    assert (folder / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------
# 2. A replaced output is the old one or the new one, even under SIGKILL


def test_sigkill_while_replacing_a_zarr_leaves_old_or_new(tmp_path: Path) -> None:
    out = tmp_path / "maps.zarr"
    holiwidget.save_dataset(_ds(1.0, 256), out)
    seen = set()
    for delay in (0.05, 0.15, 0.25, 0.37):
        writer = _python(
            f"""
            import numpy as np, xarray as xr, holiwidget
            print("ready", flush=True)
            for i in range(1000):
                v = float(2 + i % 2)
                ds = xr.Dataset({{"attribution": (("y", "x"), np.full((256, 256), v, "float32"))}},
                                attrs={{"title": "holiwidget attributions"}})
                holiwidget.save_dataset(ds, {str(out)!r})
                print("saved", flush=True)
            """,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline().strip() == "ready"
        # After its first replacement (however loaded the machine), so that kills land
        # inside later ones.
        assert writer.stdout.readline().strip() == "saved"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        back = holiwidget.open_dataset(out)  # complete: opens, and its checksum holds
        values = np.unique(back.attribution.values)
        assert len(values) == 1 and float(values[0]) in (1.0, 2.0, 3.0)
        seen.add(float(values[0]))
    assert seen - {1.0}, "no kill landed after a replacement: the test proved nothing"
    # the killed writers' temporary folders are gone after the next write
    holiwidget.save_dataset(_ds(), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.zarr"]


# --------------------------------------------------------------------------------------
# 4. A full disk: one line, no partial output, no crash


@pytest.fixture
def full_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_is_one_line_and_leaves_nothing(full_disk: Path) -> None:
    big = _ds(0.25, 600)  # 1.4 MB of maps, random so that zarr cannot compress them
    big["attribution"].values[:] = np.random.default_rng(0).random((600, 600))
    for name in ("a.nc", "a.zarr"):
        with pytest.raises(HoliwidgetError, match="No space left") as err:
            holiwidget.save_dataset(big, full_disk / name)
        assert "\n" not in str(err.value)
    fig = Figure(figsize=(30, 30), dpi=100)
    fig.add_subplot().imshow(np.random.default_rng(0).random((600, 600)))
    with pytest.raises(HoliwidgetError, match="No space left"):
        save_figure(fig, full_disk / "f.png")
    with pytest.raises(HoliwidgetError, match="No space left"):
        write_bytes(full_disk / "record.npz", b"x" * 2**20, "result")
    assert list(full_disk.iterdir()) == []


def test_full_disk_on_the_command_line_exits_2_without_a_crash(
    full_disk: Path, mobilenet_weights: Path
) -> None:
    cmd = [sys.executable, "-m", "holiwidget", "explain", "chelsea", "--model", "mobilenet_v2"]
    cmd += ["--weights", str(mobilenet_weights), "--methods", "gradcam,layercam"]
    run = subprocess.run(
        [*cmd, "--output", str(full_disk / "maps.nc")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert run.stderr.count("\n") == 1 and "No space left" in run.stderr
    assert list(full_disk.iterdir()) == []


# --------------------------------------------------------------------------------------
# 5. Leftovers of interrupted writes are cleaned, and only those


def test_leftovers_of_dead_writers_are_removed_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "a.nc"
    dead = tmp_path / f".a.nc.holiwidget-{_dead_pid()}-x1y2"
    alive = tmp_path / f".a.nc.holiwidget-{os.getpid()}-z3w4"
    users = tmp_path / ".a.nc.backup"
    other = tmp_path / f".b.nc.holiwidget-{_dead_pid()}-q5r6"
    for folder in (dead, alive, users, other):
        folder.mkdir()
        (folder / "a.nc").write_bytes(b"partial")
    holiwidget.save_dataset(_ds(), out)
    assert not dead.exists()
    assert alive.is_dir() and users.is_dir() and other.is_dir()
    holiwidget.save_dataset(_ds(), tmp_path / "b.nc")
    assert not other.exists()


# --------------------------------------------------------------------------------------
# 6. One writer per output


def test_a_second_writer_is_refused_until_the_first_dies(tmp_path: Path) -> None:
    out = tmp_path / "results.zarr"
    holder = _python(
        f"""
        import sys, time
        from holiwidget.outputs import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HoliwidgetError, match=f"pid {holder.pid}") as err, output_lock(out):
            pass
        assert "\n" not in str(err.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with output_lock(out):  # a dead process holds no lock
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_second_evaluate_on_one_output_is_refused(
    tmp_path: Path, shared: Path, mobilenet_weights: Path
) -> None:
    out = tmp_path / "results.zarr"
    holder = _python(
        f"""
        import time
        from holiwidget.outputs import output_lock
        with output_lock({str(out)!r}, "results"):
            print("locked", flush=True)
            time.sleep(60)
        """,
        stdout=subprocess.PIPE,
        text=True,
    )
    root = shared / "data" / "imagenet-val-1300"
    model = holiwidget.load_model("mobilenet_v2", weights=mobilenet_weights)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HoliwidgetError, match="another holiwidget run"):
            holiwidget.evaluate(
                model,
                root / "images",
                root / "annotations.csv",
                layers="features.18",
                methods="gradcam",
                limit=1,
                output=out,
            )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_concurrent_explain_runs_on_one_output(tmp_path: Path, mobilenet_weights: Path) -> None:
    out = tmp_path / "maps.nc"
    images = ["chelsea", "coffee", "astronaut"] * 2  # long enough to overlap
    cmd = [sys.executable, "-m", "holiwidget", "explain", *images, "--model", "mobilenet_v2"]
    cmd += ["--weights", str(mobilenet_weights), "--methods", "holistic", "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = tmp_path / ".maps.nc.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    overlapped = first.poll() is None
    first.communicate(timeout=300)
    assert overlapped, "the first run ended before the second started: the test proved nothing"
    assert first.returncode == 0
    assert second.returncode == 2 and "another holiwidget run" in second.stderr
    assert holiwidget.open_dataset(out).attribution.shape[0] == len(images)


# --------------------------------------------------------------------------------------
# 12. Damaged datasets are detected when opened


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_garbage_and_truncated_datasets_are_one_line_errors(tmp_path: Path, suffix: str) -> None:
    good = holiwidget.save_dataset(_ds(), tmp_path / f"good{suffix}")
    if suffix == ".nc":
        garbage = tmp_path / "garbage.nc"
        garbage.write_bytes(np.random.default_rng(0).bytes(5000))
        truncated = tmp_path / "truncated.nc"
        truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        broken = [garbage, truncated]
    else:
        chunks = [p for p in good.rglob("*") if p.is_file() and "attribution" in p.parts]
        chunks = [p for p in chunks if not p.name.startswith(("zarr.json", ".z"))]
        assert chunks
        chunks[0].write_bytes(b"\x00\x01garbage")
        broken = [good]
    for path in broken:
        with pytest.raises(HoliwidgetError) as err:
            holiwidget.open_dataset(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        with pytest.raises(HoliwidgetError):
            holiwidget.Explorer(dataset=path, interactive=False)


def test_a_flipped_bit_in_a_netcdf_is_detected(tmp_path: Path) -> None:
    path = holiwidget.save_dataset(_ds(0.25), tmp_path / "a.nc")
    raw = bytearray(path.read_bytes())
    pattern = np.full(16, 0.25, dtype=np.float32).tobytes()
    at = bytes(raw).find(pattern)
    assert at > 0
    raw[at + 6] ^= 0x01  # 0.25 becomes another float: the file still opens
    path.write_bytes(bytes(raw))
    with xr.open_dataset(path, engine="h5netcdf") as plain:
        assert float(plain.attribution.values.ravel()[1]) != 0.25  # silently wrong, before
    with pytest.raises(HoliwidgetError, match="damaged"):
        holiwidget.open_dataset(path)


def test_zarr_outputs_open_without_warnings(tmp_path: Path) -> None:
    import warnings

    path = holiwidget.save_dataset(_ds(), tmp_path / "a.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path).load()


def test_atomic_output_leaves_nothing_when_the_body_fails(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target, replaces=Path.is_file) as part:
        part.write_bytes(b"new, half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
