"""The ``holiwidget`` command line, run for real: in-process through ``main`` and once as a
subprocess (``python -m holiwidget``). No mocks: real MobileNetV2 weights from ../shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli
from PIL import Image

import holiwidget

CHELSEA_CLASS = 285  # "Egyptian cat" for the MobileNetV2 weights in ../shared


@pytest.fixture(scope="module")
def chelsea_run(
    tmp_path_factory: pytest.TempPathFactory, mobilenet_weights: Path
) -> tuple[int, str, str, Path]:
    """One real explain run: chelsea, Holistic-CAM and Grad-CAM at features.18, to zarr."""
    folder = tmp_path_factory.mktemp("chelsea")
    weights = mobilenet_weights
    code, out, err = run_cli(
        [
            "explain",
            "chelsea",
            "--model",
            "mobilenet_v2",
            "--weights",
            weights,
            "--layers",
            "features.18",
            "--methods",
            "holistic,gradcam",
            "--output",
            folder / "out.zarr",
            "--figure",
            folder / "out.png",
        ]
    )
    return code, out, err, folder


def test_explain_writes_dataset(chelsea_run) -> None:
    code, _, err, folder = chelsea_run
    assert code == 0, err
    ds = holiwidget.open_dataset(folder / "out.zarr")
    assert ds["attribution"].dims == ("image", "cam", "layer", "y", "x")
    assert ds["attribution"].shape == (1, 2, 1, 224, 224)
    assert list(ds["cam"].values) == ["holistic", "gradcam"]
    assert list(ds["layer"].values) == ["features.18"]
    assert list(ds["image"].values) == ["chelsea"]
    assert int(ds["target"].values[0]) == CHELSEA_CLASS
    assert str(ds["target_name"].values[0]) == "Egyptian cat"
    assert float(ds["attribution"].min()) >= 0.0
    assert float(ds["attribution"].max()) <= 1.0
    assert "primary" in ds.data_vars


def test_explain_writes_png_figure(chelsea_run) -> None:
    code, _, err, folder = chelsea_run
    assert code == 0, err
    with Image.open(folder / "out.png") as img:
        assert img.format == "PNG"
        img.load()
        assert img.width > 100
        assert img.height > 100


def test_explain_prints_summary_and_leaves_no_temporaries(chelsea_run) -> None:
    code, out, err, folder = chelsea_run
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("chelsea: class 285 Egyptian cat (p = ")
    assert f"wrote {folder / 'out.zarr'}" in lines
    assert f"wrote {folder / 'out.png'}" in lines
    assert sorted(p.name for p in folder.iterdir()) == ["out.png", "out.zarr"]
    # Quiet without -v: at most one-line warnings (zarr 3 warns about consolidated metadata).
    assert all(line.startswith("holiwidget: warning: ") for line in err.splitlines()), err


def test_explain_writes_netcdf(tmp_path: Path, mobilenet_weights: Path) -> None:
    code, out, err = run_cli(
        [
            *("explain", "chelsea", "--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--layers", "features.18", "--methods", "gradcam"),
            *("--output", tmp_path / "out.nc"),
        ]
    )
    assert code == 0, err
    ds = holiwidget.open_dataset(tmp_path / "out.nc")
    assert ds["attribution"].dims == ("image", "cam", "layer", "y", "x")
    assert int(ds["target"].values[0]) == CHELSEA_CLASS
    assert str(ds["target_name"].values[0]) == "Egyptian cat"
    assert f"wrote {tmp_path / 'out.nc'}" in out.splitlines()
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]


def test_several_images_zarr_and_one_figure_each(tmp_path: Path, mobilenet_weights) -> None:
    # Grad-CAM alone needs one pass per image: fast.
    code, out, err = run_cli(
        [
            "explain",
            "chelsea",
            "coffee",
            "--model",
            "mobilenet_v2",
            "--weights",
            mobilenet_weights,
            "--layers",
            "features.18",
            "--methods",
            "gradcam",
            "--target",
            "auto",
            "--output",
            tmp_path / "maps.zarr",
            "--figure",
            tmp_path / "fig.png",
            "--verbose",
        ]
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fig-chelsea.png",
        "fig-coffee.png",
        "maps.zarr",
    ]
    ds = holiwidget.open_dataset(tmp_path / "maps.zarr")
    assert list(ds["image"].values) == ["chelsea", "coffee"]
    assert int(ds["target"].values[0]) == CHELSEA_CLASS
    assert [line.split(":")[0] for line in out.splitlines()[:2]] == ["chelsea", "coffee"]
    assert "holiwidget: info: loading mobilenet_v2" in err


def test_random_weights_and_explicit_target(tmp_path: Path) -> None:
    code, _, err = run_cli(
        [
            "-v",
            "explain",
            "coffee",
            "--model",
            "mobilenet_v2",
            "--weights",
            "none",
            "--layers",
            "features.18",
            "--methods",
            "eigencam",
            "--target",
            "7",
            "--output",
            tmp_path / "r.zarr",
        ]
    )
    assert code == 0, err
    ds = holiwidget.open_dataset(tmp_path / "r.zarr")
    assert int(ds["target"].values[0]) == 7
    assert ds.attrs["weights"] == "None"
    assert "info:" in err


# Bad input: exit status 2, one line on stderr naming the problem, nothing written.
BAD = {
    "missing image": (["explain", "{tmp}/nope.jpg"], {}, "no such image file"),
    "text as image": (["explain", "{tmp}/notes.txt"], {"notes.txt": "hello"}, "cannot read"),
    "unknown method": (["explain", "chelsea", "--methods", "holistic,gradkam"], {}, "gradkam"),
    "unknown layer": (["explain", "chelsea", "--layers", "features.19"], {}, "features.18"),
    "target out of range": (["explain", "chelsea", "--target", "5000"], {}, "5000"),
    "target not a number": (["explain", "chelsea", "--target", "cat"], {}, "--target"),
    "threshold zero": (["explain", "chelsea", "--threshold", "0"], {}, "threshold"),
    "median even": (["explain", "chelsea", "--median", "4"], {}, "median"),
    "batch size zero": (["explain", "chelsea", "--batch-size", "0"], {}, "--batch-size"),
    "unknown model": (["explain", "chelsea", "--model", "mobilenet_v9"], {}, "mobilenet_v2"),
    "unknown device": (["explain", "chelsea", "--device", "tpu"], {}, "device"),
    "output .txt": (["explain", "chelsea", "--output", "{tmp}/out.txt"], {}, "*.nc"),
    "output folder missing": (
        ["explain", "chelsea", "--output", "{tmp}/no/out.zarr"],
        {},
        "folder",
    ),
    "figure extension": (["explain", "chelsea", "--figure", "{tmp}/fig.xyz"], {}, "*.png"),
    "figure folder missing": (["explain", "chelsea", "--figure", "{tmp}/no/f.png"], {}, "folder"),
    "no command": ([], {}, "required"),
    "unknown command": (["explode"], {}, "explode"),
    "unknown option": (["explain", "chelsea", "--colour", "red"], {}, "--colour"),
}


def test_methods_all_leaves_out_what_cannot_explain_the_model(tmp_path: Path) -> None:
    """SqueezeNet has no LRP rules: 'all' explains it with every other method (and says so)."""
    code, _, err = run_cli(
        [
            "explain",
            "coffee",
            "--model",
            "squeezenet1_1",
            "--weights",
            "none",
            "--layers",
            "features.12",
            "--methods",
            "all",
            "--output",
            tmp_path / "s.nc",
        ]
    )
    assert code == 0, err
    cams = [str(c) for c in holiwidget.open_dataset(tmp_path / "s.nc")["cam"].values]
    assert cams == [m for m in holiwidget.METHODS if m != "relevancecam"]
    assert "leaving relevancecam out of 'all'" in err


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path, mobilenet_weights) -> None:
    argv, files, expected = BAD[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv and argv[0] == "explain":
        defaults = {
            "--model": "mobilenet_v2",
            "--weights": str(mobilenet_weights),
            "--layers": "features.18",
            "--methods": "gradcam",
            "--output": str(tmp_path / "out.zarr"),
        }
        argv += [x for key, value in defaults.items() if key not in argv for x in (key, value)]
    before = set(tmp_path.iterdir())
    code, out, err = run_cli(argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("holiwidget: error: ")
    assert expected in lines[0]
    assert set(tmp_path.iterdir()) == before  # no output, no temporary left behind


def test_unknown_layer_lists_close_names(tmp_path: Path, mobilenet_weights) -> None:
    code, _, err = run_cli(
        [
            *("explain", "chelsea", "--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--layers", "features.19", "--output", tmp_path / "o.zarr"),
        ]
    )
    assert code == 2
    assert "unknown layer 'features.19'" in err
    assert "closest:" in err
    assert "features.18" in err
    assert list(tmp_path.iterdir()) == []


def test_help_exits_0() -> None:
    code, out, _ = run_cli(["explain", "--help"])
    assert code == 0
    assert "--output" in out
    assert "--figure" in out


def test_subprocess_bad_image_one_line_no_traceback(tmp_path: Path, mobilenet_weights) -> None:
    (tmp_path / "photo.jpg").write_text("not really a JPEG")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "holiwidget", "explain", str(tmp_path / "photo.jpg")),
            *("--model", "mobilenet_v2", "--weights", str(mobilenet_weights)),
            *("--layers", "features.18", "--methods", "gradcam"),
            *("--output", str(tmp_path / "o.zarr")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("holiwidget: error: cannot read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_lab_with_a_missing_notebook_is_one_line(tmp_path: Path) -> None:
    code, out, err = run_cli(["lab", "--notebook", tmp_path / "nope.ipynb", "--no-browser"])
    assert code == 2 and out == ""
    assert err.startswith("holiwidget: error: notebook ") and "check the --notebook path" in err
    assert len(err.splitlines()) == 1


def test_server_commands_and_the_package_load_no_torch() -> None:
    """``import holiwidget`` and ``holiwidget lab`` / ``app`` (whose kernels do the work) leave
    torch, xarray and ipywidgets unloaded; the package's names load on first use."""
    code = """
import sys
import holiwidget
from holiwidget.cli import main
heavy = ("torch", "xarray", "ipywidgets")
assert main(["lab", "--help"]) == 0 and main(["-v", "app", "--help"]) == 0
print("light:", sorted(m for m in heavy if m in sys.modules))
assert "explain" in dir(holiwidget) and callable(holiwidget.explain)
print("used:", sorted(m for m in heavy if m in sys.modules), holiwidget.images.__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "light: []" in done.stdout
    assert "used: ['torch', 'xarray']" in done.stdout and "holiwidget.images" in done.stdout
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = holiwidget.nonexistent
