"""The explorer without a browser: set control values, simulate canvas clicks through
matplotlib's event callbacks, and check the data and the artists' arrays."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.backend_bases import MouseEvent
from PIL import Image

import holiwidget as hw
from holiwidget import cli
from holiwidget.explorer import Explorer
from holiwidget.explorer.passes import PassCache, candidate_layers
from holiwidget.explorer.views import composite
from holiwidget.figure import figure_format

METHODS = ("holistic", "gradcam")


def figure_formats() -> list[str]:
    """Every extension holiwidget.figure.figure_format accepts, of all that matplotlib or PIL
    know."""
    from matplotlib.figure import Figure

    known = set(Figure().canvas.get_supported_filetypes())
    known |= {ext.lstrip(".") for ext in Image.registered_extensions()}
    accepted = []
    for ext in sorted(known):
        try:
            figure_format(f"x.{ext}")
        except hw.HoliwidgetError:
            continue
        accepted.append(ext)
    return sorted(accepted)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Small models on a shared CPU: one thread avoids contention (runs after conftest's).
    torch.set_num_threads(1)


class PassCounter:
    """Counts the model's forward passes (network passes) through a forward hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


@pytest.fixture
def explorer(tiny) -> Explorer:
    ex = Explorer(tiny, methods=METHODS)
    ex.dataset  # noqa: B018 (computes the first maps)
    assert ex.last_error is None, ex.last_error
    return ex


def click(ex: Explorer, fig, ax, x: float, y: float) -> None:
    """A left click at data coordinates (x, y) of ``ax``, through the canvas's callbacks."""
    px, py = ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", fig.canvas, px, py, button=1)
    assert event.inaxes is ax
    fig.canvas.callbacks.process("button_press_event", event)


def cell(attribution: np.ndarray) -> np.ndarray:
    """A 224 x 224 map as the grid's cell shows it: 2 x 2 block means, 112 x 112."""
    return attribution.reshape(112, 2, 112, 2).mean(axis=(1, 3))


def maps(ex: Explorer):
    ds = ex.session.ds
    return ds["attribution"].values[0], ds["primary"].values[0], ds["fundamental"].values[0]


def test_first_maps_fill_every_view(explorer: Explorer) -> None:
    ex = explorer
    ds = ex.dataset
    assert ds["attribution"].shape == (1, 2, 3, 224, 224)
    assert {"attribution", "primary", "fundamental", "input", "lpw"} <= set(ds.data_vars)
    assert int(ds["target"].values[0]) == int(ds["top1"].values[0])
    settings = json.loads(ds.attrs["explorer"])
    assert settings["layer"] == "stage1" and settings["method"] == "holistic"
    att = ds["attribution"].values[0]
    np.testing.assert_array_equal(ex.views.overlay.map, att[0, 0])
    np.testing.assert_array_equal(ex.views.overlay.rgb, ds["input"].values[0])
    # The overlay is one image: the input with the map over it at the opacity, in jet.
    expected = composite(ds["input"].values[0], att[0, 0], 0.5, "jet")
    np.testing.assert_array_equal(ex.views.overlay.art.get_array(), expected)
    assert np.abs(expected.astype(int) - ds["input"].values[0]).mean() > 0
    np.testing.assert_array_equal(ex.views.lpw.art.get_array(), ds["lpw"].values[0, 0])
    grid = ex.views.grid
    assert (grid.layers, grid.methods) == (["stage1", "stage2", "stage3"], list(METHODS))
    for li in range(3):
        for mi in range(2):
            np.testing.assert_allclose(grid.cell_map(li, mi), cell(att[mi, li]), atol=1e-6)
    # Target options: the top-5 predictions with probabilities; every class is searchable.
    assert len(ex.target.options) == 5 and "%" in ex.target.options[0][0]
    assert len(ex.search.options) == 10
    assert "computed" in ex.status.value and ex.progress.bar_style == "success"


def test_sliders_redenoise_from_kept_pha_in_place(explorer: Explorer, tiny) -> None:
    ex = explorer
    passes = PassCounter(tiny)
    arts = [ex.views.overlay.art, ex.views.lpw.art, ex.views.grid.image]
    images_per_axes = [len(ax.images) for ax in ex.views.figures["grid"].axes]
    before = ex.views.overlay.art.get_array().copy()

    ex.threshold.value = 0.2
    ex.median.value = 31
    ex.box.value = 61
    att, prim, fund = maps(ex)
    for li in range(3):
        cam, lpw = hw.holistic_map(prim[li], fund[li], 0.2, 31, 61)
        np.testing.assert_array_equal(att[0, li], cam)
        np.testing.assert_array_equal(ex.session.ds["lpw"].values[0, li], lpw)
        np.testing.assert_allclose(ex.views.grid.cell_map(li, 0), cell(cam), atol=1e-6)
    # only the Holistic-CAM column was coloured again: the grid shows every map's colours
    jet_grid = colormaps["jet"].with_extremes(bad="white")(ex.views.grid.values, bytes=True)
    np.testing.assert_array_equal(ex.views.grid.image.get_array(), jet_grid)
    np.testing.assert_array_equal(ex.views.overlay.map, att[0, 0])
    np.testing.assert_array_equal(ex.views.lpw.art.get_array(), ex.session.ds["lpw"].values[0, 0])
    assert not np.array_equal(before, ex.views.overlay.art.get_array())
    params = json.loads(ex.dataset.attrs["parameters"])
    assert (params["threshold"], params["median"], params["box"]) == (0.2, 31, 61)
    assert "no network pass" in ex.status.value and ex.session.last_update_ms < 1000

    # Holistic-CAM without denoising: the normalised PHA; the kernel sliders cannot act.
    ex.denoise.value = False
    np.testing.assert_array_equal(
        ex.views.overlay.map, hw.holistic_map(prim[0], fund[0], denoise=False)[0]
    )
    assert (ex.views.lpw.art.get_array() == 255).all()
    assert ex.threshold.disabled and "denoising is off" in ex.threshold.tooltip
    ex.denoise.value = True
    assert not ex.threshold.disabled

    assert passes.count == 0, "a slider ran a network pass"
    assert [ex.views.overlay.art, ex.views.lpw.art, ex.views.grid.image] == arts
    assert [len(ax.images) for ax in ex.views.figures["grid"].axes] == images_per_axes


def test_even_kernel_is_made_odd_and_said(explorer: Explorer) -> None:
    explorer.median.value = 40
    assert explorer.median.value == 41
    params = json.loads(explorer.dataset.attrs["parameters"])
    assert params["median"] == 41


def test_network_passes_are_cached(explorer: Explorer, tiny) -> None:
    ex = explorer
    passes = PassCounter(tiny)
    first = ex.dataset["attribution"].values.copy()
    ex.image.value = "sample:coffee"
    assert passes.count == 1 + 8  # the top-5 forward pass, then the eight-scale pyramid
    assert ex.dataset["image"].values[0] == "coffee"
    ex.image.value = "sample:chelsea"
    assert passes.count == 9 and "from the cache" in ex.status.value
    np.testing.assert_array_equal(ex.dataset["attribution"].values, first)
    # A subset of the computed layers or methods needs no pass either.
    ex.layers.value = ("stage2",)
    ex.methods.value = ("gradcam",)
    assert passes.count == 9
    assert list(ex.dataset["layer"].values) == ["stage2"]
    assert list(ex.dataset["cam"].values) == ["gradcam"]
    assert (ex.views.grid.layers, ex.views.grid.methods) == (["stage2"], ["gradcam"])
    # A method not computed yet runs the passes once for this (image, target, layers).
    ex.layers.value = ("stage1", "stage2", "stage3")
    ex.methods.value = ("holistic", "eigencam")
    assert passes.count == 9 + 8
    ex.methods.value = ("holistic", "gradcam", "eigencam")
    assert passes.count == 17


def test_clicking_a_map_makes_it_current_and_probes(explorer: Explorer) -> None:
    ex = explorer
    grid = ex.views.grid
    # Cell (layer 2, method 1) at its pixel (y 50, x 15), the left half of its first map
    # pixel: map pixel (y 100, x 30).
    step = grid.cell[0] + 6
    click(ex, ex.views.figures["grid"], grid.ax, step + 14.7, 2 * step + 49.8)
    assert (ex.layer.value, ex.method.value) == ("stage3", "gradcam")
    att = ex.session.ds["attribution"].values[0]
    np.testing.assert_array_equal(ex.views.overlay.map, att[1, 2])
    np.testing.assert_array_equal(ex.views.lpw.art.get_array(), ex.session.ds["lpw"].values[0, 2])
    assert grid.outline.get_visible() and grid.outline.get_xy() == (step - 0.5, 2 * step - 0.5)
    # The probe: pixel (y 100, x 30) across layers and methods, crosshairs on every view.
    np.testing.assert_array_equal(ex.probe_values.values, att[:, :, 100, 30])
    for mi, line in enumerate(ex.views.probe.lines):
        np.testing.assert_array_equal(line.get_ydata(), att[mi, :, 100, 30])
    for h, v in (ex.views.overlay.cross, ex.views.lpw.cross):
        assert h.get_visible() and list(h.get_ydata()) == [100, 100]
        assert list(v.get_xdata()) == [30, 30]
    # In every grid cell: a horizontal and a vertical segment through the pixel's place.
    xs, ys = (np.asarray(a, dtype=float) for a in grid.cross.get_data())
    assert np.isnan(xs).sum() == 2 * 6 and grid.cross.get_visible()
    assert ys[0] == ys[1] == 49.75 and xs[3] == xs[4] == 14.75  # (100.5, 30.5) / 2 - 0.5
    assert "pixel (y 100, x 30)" in ex.probe.value
    assert json.loads(ex.dataset.attrs["explorer"])["probe"] == [100, 30]


def test_clicking_the_overlay_probes_without_changing_the_map(explorer: Explorer) -> None:
    ex = explorer
    click(ex, ex.views.figures["overlay"], ex.views.overlay.ax, 10, 200)
    assert (ex.layer.value, ex.method.value) == ("stage1", "holistic")
    assert ex.session.probe == (200, 10)
    click(ex, ex.views.figures["lpw"], ex.views.lpw.ax, 50, 60)
    assert ex.session.probe == (60, 50)
    # The probe follows the maps when the threshold moves.
    before = ex.probe_values.values.copy()
    ex.threshold.value = 0.1
    after = ex.probe_values.values
    np.testing.assert_array_equal(after[1], before[1])  # Grad-CAM does not depend on tau
    np.testing.assert_array_equal(
        ex.views.probe.lines[0].get_ydata(), ex.session.ds["attribution"].values[0, 0, :, 60, 50]
    )


def test_current_layer_method_and_opacity(explorer: Explorer) -> None:
    ex = explorer
    ex.layer.value = "stage2"
    ex.method.value = "gradcam"
    np.testing.assert_array_equal(
        ex.views.overlay.map, ex.session.ds["attribution"].values[0, 1, 1]
    )
    assert ex.views.probe.band.get_xdata()[0] == 1
    ex.opacity.value = 0.8
    overlay = ex.views.overlay
    expected = composite(overlay.rgb, overlay.map, 0.8, "jet")
    np.testing.assert_array_equal(overlay.art.get_array(), expected)


def test_target_choice_and_search(explorer: Explorer, tiny) -> None:
    ex = explorer
    other = ex.target.options[1][1]
    ex.target.value = other
    assert int(ex.dataset["target"].values[0]) == other
    ex.search.value = "class 7 (7)"
    assert int(ex.dataset["target"].values[0]) == 7
    assert 7 in [v for _, v in ex.target.options]
    ex.search.value = "class"
    assert ex.last_error is not None and "10 classes match" in ex.last_error
    assert "error" in ex.status.value
    ex.search.value = "zebra"
    assert "no class name contains" in ex.last_error
    assert int(ex.dataset["target"].values[0]) == 7
    ex.search.value = "3"
    assert int(ex.dataset["target"].values[0]) == 3 and ex.last_error is None


def test_errors_show_in_the_app(explorer: Explorer, tmp_path: Path) -> None:
    ex = explorer
    ex.layers.value = ()
    assert "select at least one layer" in ex.last_error and "error" in ex.status.value
    assert ex.layers.value == ("stage1", "stage2", "stage3")  # the widget shows the state
    ex.colormap.options = ["jet", "rainbow"]  # a colormap the session refuses
    ex.colormap.value = "rainbow"
    assert "unknown colormap" in ex.last_error and ex.colormap.value == "jet"
    assert ex.progress.bar_style == "danger"
    ex.folder.value = str(tmp_path / "missing")
    ex.load_folder.click()
    assert "no such folder" in ex.last_error
    with pytest.raises(hw.HoliwidgetError, match="outside"):
        ex.probe_at(500, 3)


def test_folder_and_upload_add_images(explorer: Explorer, tmp_path: Path) -> None:
    ex = explorer
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    ex.folder.value = str(tmp_path)
    ex.load_folder.click()
    assert ex.last_error is None, ex.last_error
    assert ex.image.value == f"file:{(tmp_path / 'a.jpg').resolve()}"
    assert ex.dataset["image"].values[0] == "a"
    labels = [label for label, _ in ex.image.options]
    assert "file: b.png" in labels and "file: notes.txt" not in labels

    png = io.BytesIO()
    Image.new("RGB", (30, 20), "red").save(png, format="PNG")
    ex.upload.value = (
        {
            "name": "red.png",
            "type": "image/png",
            "size": len(png.getvalue()),
            "content": memoryview(png.getvalue()),
            "last_modified": datetime.datetime.now(tz=datetime.timezone.utc),
        },
    )
    assert ex.last_error is None, ex.last_error
    assert ex.image.value.startswith("upload:")
    assert (ex.dataset["input"].values[0, 100, 100] == (255, 0, 0)).all()
    assert ex.dataset["image"].values[0] == "red"  # the file's name is the image id
    assert ex.upload.value == ()  # emptied: the same file can be uploaded again


def test_controls_are_disabled_while_passes_run(tiny) -> None:
    ex = Explorer(tiny, methods=("gradcam",))
    seen = []
    handle = tiny.register_forward_hook(
        lambda *_: seen.append((ex.threshold.disabled, ex.image.disabled, ex.progress.value))
    )
    ex.dataset  # noqa: B018
    handle.remove()
    assert seen and all(t and i for t, i, _ in seen)
    # No Holistic-CAM: the denoising controls cannot act, and say why.
    assert ex.threshold.disabled and "Holistic-CAM" in ex.threshold.tooltip
    assert not ex.image.disabled


def test_curves_button(explorer: Explorer) -> None:
    ex = explorer
    assert not ex.curves_button.disabled
    result = ex.compute_curves()
    for kind in ("insertion", "deletion"):
        xs, ys, auc = result[kind]
        assert xs.shape == ys.shape == (225,) and xs[0] == 0 and xs[-1] == 1
        assert 0 <= auc <= 1
    np.testing.assert_array_equal(ex.views.curves.insertion.get_ydata(), result["insertion"][1])
    assert "insertion" in ex.dataset.data_vars


def test_export_and_browse_a_saved_dataset(explorer: Explorer, tmp_path: Path) -> None:
    ex = explorer
    ex.threshold.value = 0.3
    ex.export_path.value = str(tmp_path / "state")
    ex.save_dataset_button.click()
    ex.save_figure_button.click()
    assert ex.last_error is None, ex.last_error
    with Image.open(tmp_path / "state.png") as img:
        assert img.width > 600 and img.height > 400
    saved = hw.open_dataset(tmp_path / "state.nc")
    np.testing.assert_array_equal(saved["attribution"].values, ex.session.ds["attribution"].values)

    # Browsing without a model: the saved parameters; network inputs disabled with a reason.
    view = Explorer(dataset=tmp_path / "state.nc")
    assert view.threshold.value == pytest.approx(0.3)
    np.testing.assert_array_equal(view.dataset["attribution"].values, saved["attribution"].values)
    for w in (view.target, view.folder, view.load_folder, view.upload, view.curves_button):
        assert w.disabled and w.tooltip
    assert view.target.options[0][1] == int(saved["target"].values[0])
    view.threshold.value = 0.5
    att, prim, fund = maps(view)
    np.testing.assert_array_equal(att[0, 1], hw.holistic_map(prim[1], fund[1], 0.5, 51, 91)[0])
    view.methods.value = ("gradcam",)
    assert list(view.dataset["cam"].values) == ["gradcam"]


def _svg_images(path: Path) -> list[np.ndarray]:
    """The images an SVG embeds (as data: URLs), decoded (RGB), as they are drawn (flipped
    where the element's transform flips them, on the white page)."""
    import base64
    import gzip
    import xml.etree.ElementTree as ET

    data = path.read_bytes()
    root = ET.fromstring(gzip.decompress(data) if path.suffix == ".svgz" else data)
    prefix = "data:image/png;base64,"
    images = []
    for el in root.iter("{http://www.w3.org/2000/svg}image"):
        href = el.get("{http://www.w3.org/1999/xlink}href") or el.get("href")
        assert href.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(href[len(prefix) :]))) as img:
            on_white = Image.alpha_composite(
                Image.new("RGBA", img.size, "white"), img.convert("RGBA")
            )
            rgb = np.asarray(on_white.convert("RGB"))
        images.append(rgb[::-1] if "scale(1 -1)" in el.get("transform", "") else rgb)
    return images


@pytest.mark.parametrize("fmt", figure_formats())
def test_save_figure_writes_every_accepted_format(explorer: Explorer, tmp_path, fmt) -> None:
    ex = explorer
    png = ex.save_figure(tmp_path / "sheet.png")
    with Image.open(png) as img:
        sheet = np.asarray(img.convert("RGB"))
    tiles = {}
    for name, fig in ex.views.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
        tiles[name] = np.asarray(Image.open(buf).convert("RGB"))
    # Under a caption line, the views that show something as the app does: the overlay and
    # the low-pass wrap in a row (no probe, no curves yet), the grid below.
    x, top = 0, 34
    for name in ("overlay", "lpw"):
        h, w = tiles[name].shape[:2]
        np.testing.assert_array_equal(sheet[top : top + h, x : x + w], tiles[name])
        x += w
    grid = tiles["grid"]
    assert sheet.shape[1] == max(x, grid.shape[1])
    np.testing.assert_array_equal(sheet[-grid.shape[0] :, : grid.shape[1]], grid)
    assert (sheet[:top] < 128).any(), "no caption"

    out = ex.save_figure(tmp_path / f"sheet.{fmt}")
    assert out == tmp_path / f"sheet.{fmt}" and out.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"sheet.png", out.name})
    if fmt in ("png", "jpg", "jpeg", "tif", "tiff", "webp"):
        with Image.open(out) as img:
            assert img.format == {"jpg": "JPEG", "tif": "TIFF"}.get(fmt, fmt.upper())
            assert img.size == (sheet.shape[1], sheet.shape[0])
            got = np.asarray(img.convert("RGB")).astype(int)
        lossy = fmt in ("jpg", "jpeg", "webp")
        assert np.abs(got - sheet).mean() < (4 if lossy else 1e-9)
    elif fmt in ("svg", "svgz"):
        # matplotlib composites the views into one embedded image: the sheet's pixels.
        (embedded,) = _svg_images(out)
        assert np.abs(embedded.astype(int) - sheet).max() <= 1  # composited: rounding
    elif fmt == "pdf":
        data = out.read_bytes()
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert f"/Width {sheet.shape[1]} /Height {sheet.shape[0]}".encode() in data
    else:  # eps, ps: the sheet as one image of its pixel size
        data = out.read_bytes()
        assert data.startswith(b"%!PS-Adobe-3.0") and data.rstrip().endswith(
            (b"%%EOF", b"showpage")
        )
        w, h = sheet.shape[1], sheet.shape[0]
        assert f"{w} {h} 8 [ {w} 0 0 -{h} 0 {h} ]".encode() in data and b"colorimage" in data


def test_export_box_picks_the_format(explorer: Explorer, tmp_path: Path) -> None:
    ex = explorer
    ex.export_path.value = str(tmp_path / "state.svg")
    ex.save_figure_button.click()
    ex.save_dataset_button.click()
    assert ex.last_error is None, ex.last_error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.nc", "state.svg"]
    ex.export_path.value = str(tmp_path / "other.zarr")
    ex.save_dataset_button.click()
    ex.save_figure_button.click()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other.png",
        "other.zarr",
        "state.nc",
        "state.svg",
    ]
    ex.export_path.value = str(tmp_path / "state.gif")
    ex.save_figure_button.click()
    assert ex.last_error is None and (tmp_path / "state.gif.png").is_file()


def test_browse_several_images(tiny) -> None:
    ds = hw.explain(tiny, ["chelsea", "rocket"], methods=("gradcam",), device="cpu")
    view = Explorer(dataset=ds)
    assert len(view.image.options) == 2 and not view.image.disabled
    view.image.value = "dataset:rocket"
    assert view.dataset["image"].values[0] == "rocket"
    assert view.denoise.disabled and "no Holistic-CAM" in view.denoise.tooltip
    with pytest.raises(hw.HoliwidgetError, match="not both or neither"):
        Explorer(tiny, dataset=ds)


def test_pass_cache_serves_subsets_and_is_bounded(tiny) -> None:
    ds = hw.explain(tiny, "chelsea", methods=("holistic", "gradcam"), device="cpu")
    layers = list(ds["layer"].values)
    cache = PassCache(size=1)
    cache.put("a", 1, layers, ds)
    got = cache.get("a", 1, layers[1:], ["gradcam"])
    assert list(got["layer"].values) == layers[1:] and list(got["cam"].values) == ["gradcam"]
    got["attribution"].values[:] = 0  # a copy: the cached data stay
    assert float(ds["attribution"].max()) > 0
    assert cache.get("a", 2, layers, ["gradcam"]) is None
    assert cache.get("a", 1, layers, ["eigencam"]) is None
    cache.put("b", 1, layers, ds)
    assert len(cache) == 1 and cache.get("a", 1, layers, ["gradcam"]) is None


def test_candidate_layers_are_non_negative_outputs(tiny) -> None:
    names = candidate_layers(tiny, ["stage2"])
    assert names[-1] == "stage3" and "stage2" in names
    assert "stage2.1" not in names  # batch norm before the in-place ReLU


def test_lab_command_starts_jupyterlab_on_the_notebook(monkeypatch, tmp_path: Path) -> None:
    calls = []

    class Started:
        """What ``holiwidget lab`` needs of its JupyterLab child: it ran and ended."""

        def __init__(self, cmd: list[str], **kw: object) -> None:
            calls.append(cmd)
            self.cwd = kw["cwd"]

        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Started)
    monkeypatch.setenv("HOME", str(tmp_path))  # the default working folder is ~/holiwidget-lab
    assert cli.main(["lab", "--port", "8899", "--no-browser"]) == 0
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "jupyterlab", "notebooks/explorer.ipynb"]
    assert "--port=8899" in cmd and "--no-browser" in cmd
    assert any(c.startswith("--ServerApp.root_dir=") for c in cmd)
    # JupyterLab runs on a working copy in the user's folder, not on the package's file.
    workdir = tmp_path / "holiwidget-lab"
    assert f"--ServerApp.root_dir={workdir}" in cmd
    assert (workdir / "notebooks" / "explorer.ipynb").is_file()


def test_explorer_notebook_reads_the_weights_from_the_environment(
    mobilenet_weights, tmp_path, monkeypatch
) -> None:
    import ipywidgets as W
    import nbformat

    from holiwidget.explorer import ENVIRONMENT, Explorer, open_explorer
    from holiwidget.models import model_info

    nb = nbformat.read(Path(cli.__file__).parents[1] / "notebooks" / "explorer.ipynb", 4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert params and "WEIGHTS = None" in params[0].source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "hw.open_explorer(MODEL, WEIGHTS, IMAGE" in code
    assert ENVIRONMENT["HOLIWIDGET_WEIGHTS"] == "DEFAULT"
    monkeypatch.setenv("HOLIWIDGET_WEIGHTS", str(mobilenet_weights))
    monkeypatch.setenv("HOLIWIDGET_DATA", str(tmp_path))
    explorer = open_explorer()
    assert isinstance(explorer, Explorer)
    assert model_info(explorer.session.provider.model)["weights"] == mobilenet_weights.name
    monkeypatch.setenv("HOLIWIDGET_WEIGHTS", str(tmp_path / "missing.pth"))
    message = open_explorer()
    assert isinstance(message, W.HTML) and "could not be loaded" in message.value
    assert "HOLIWIDGET_WEIGHTS" in message.value and "Traceback" not in message.value


SWEEP = (
    Path(__file__).resolve().parents[1]
    / "docs"
    / "results"
    / "sweep-mobilenet_v2-imagenet-val66.nc"
)


def test_the_sweep_view_follows_the_sliders_and_sets_them(explorer: Explorer) -> None:
    ex = explorer
    view = ex.views.sensitivity
    assert ex.sweep_metric.disabled
    ex.sweep_path.value = str(SWEEP)
    ex.open_sweep.click()
    assert ex.last_error is None, ex.last_error
    assert not ex.sweep_metric.disabled and ex.sweep_metric.value == view.metric
    ms, bs = view.medians, view.boxes
    outline = view._outlines[0]
    assert outline.get_visible() and outline.get_xy() == (ms.index(51) - 0.5, bs.index(91) - 0.5)
    ex.box.value = 131  # the mark moves with the slider
    assert outline.get_xy() == (ms.index(51) - 0.5, bs.index(131) - 0.5)
    # A click on the cell (m 31, b 71) sets the sliders and re-denoises.
    ax = view._axes[0]
    px, py = ax.transData.transform((ms.index(31), bs.index(71)))
    fig = ex.views.figures["sensitivity"]
    fig.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", fig.canvas, px, py, button=1)
    )
    assert (ex.threshold.value, ex.median.value, ex.box.value) == (0.5, 31, 71)
    att, prim, fund = maps(ex)
    np.testing.assert_array_equal(att[0, 0], hw.holistic_map(prim[0], fund[0], 0.5, 31, 71)[0])
    assert outline.get_xy() == (ms.index(31) - 0.5, bs.index(71) - 0.5)
    metric = next(m for m in view.metrics if m != view.metric)
    ex.sweep_metric.value = metric
    assert view.metric == metric and ex.last_error is None
    ex.sweep_path.value = str(SWEEP.with_name("missing.nc"))
    ex.open_sweep.click()
    assert "no such dataset" in ex.last_error


def test_reset_browse_colormap_and_no_stale_text(explorer: Explorer) -> None:
    ex = explorer
    ex.threshold.value, ex.box.value = 0.2, 31
    ex.reset.click()
    assert (ex.threshold.value, ex.median.value, ex.box.value) == (0.5, 51, 91)
    att, prim, fund = maps(ex)
    np.testing.assert_array_equal(att[0, 0], hw.holistic_map(prim[0], fund[0])[0])
    # Previous / next, and where we are.
    assert ex.position.value == "image 1 / 4"
    ex.next_image.click()
    assert ex.image.value == "sample:coffee" and ex.position.value == "image 2 / 4"
    ex.previous_image.click()
    ex.previous_image.click()
    assert ex.position.value == "image 4 / 4"
    # A colormap for every map view.
    ex.colormap.value = "turbo"
    overlay = ex.views.overlay
    turbo = composite(overlay.rgb, overlay.map, 0.5, "turbo")
    np.testing.assert_array_equal(overlay.art.get_array(), turbo)
    assert overlay.bar.get_cmap().name.startswith("turbo")
    grid = ex.views.grid
    assert grid.bar.get_cmap().name.startswith("turbo")
    turbo_grid = colormaps["turbo"].with_extremes(bad="white")(grid.values, bytes=True)
    np.testing.assert_array_equal(grid.image.get_array(), turbo_grid)
    # Curves go back to "not computed" when the target changes; search follows the target.
    ex.compute_curves()
    assert ex.views.curves.title.get_text() == "Holistic-CAM, stage1"
    assert "AUC" in ex.views.curves.legend.get_texts()[0].get_text()
    other = ex.target.options[1][1]
    ex.target.value = other
    assert ex.views.curves.title.get_text() == "not computed"
    assert ex.search.value == f"class {other} ({other})"
    # An error is replaced by the next success.
    ex.layers.value = ()
    assert ex.last_error and "error" in ex.status.value
    ex.layers.value = ("stage1",)
    assert ex.last_error is None and "error" not in ex.status.value
    # A grid click replaces the status with what it did.
    grid = ex.views.grid
    click(ex, ex.views.figures["grid"], grid.ax, grid.cell[1] + 6 + 10, 10)
    assert "probed pixel" in ex.status.value and "Grad-CAM, stage1" in ex.status.value


def test_score_all_maps_shows_the_aucs_on_the_grid(explorer: Explorer) -> None:
    ex = explorer
    ex.score_button.click()
    assert ex.last_error is None, ex.last_error
    texts = ex.views.grid.auc_texts
    assert len(texts) == 6 and all(
        t.get_visible() and "ins" in t.get_text() for t in texts.values()
    )
    ds = ex.dataset
    assert np.isfinite(ds["insertion_auc"].values).all()
    ins, dele = ds["insertion_auc"].values[1, 2], ds["deletion_auc"].values[1, 2]
    assert texts[(2, 1)].get_text() == f"ins {ins:.2f}  del {dele:.2f}"
    ex.threshold.value = 0.3  # Holistic-CAM's maps changed: its AUCs go, Grad-CAM's stay
    assert not texts[(0, 0)].get_visible() and texts[(0, 1)].get_visible()


def test_exports_are_named_after_the_state_and_offered_as_downloads(
    explorer: Explorer, tmp_path: Path, monkeypatch
) -> None:
    ex = explorer
    ex.export_path.value = ""  # empty: named after the image, model, class and parameters
    ex.threshold.value = 0.4
    monkeypatch.chdir(tmp_path)
    ex.save_figure_button.click()
    ex.save_dataset_button.click()
    assert ex.last_error is None, ex.last_error
    stem = f"chelsea_TinyCNN_class{ex.session.target}_tau0.40_m51_b91"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.nc", f"{stem}.png"]
    assert f'download="{stem}.nc"' in ex.download.value
    assert hw.open_dataset(tmp_path / f"{stem}.nc")["image"].values[0] == "chelsea"


def test_quick_png_is_a_png_of_the_same_pixels() -> None:
    from holiwidget.explorer.surface import quick_png

    rng = np.random.default_rng(0)
    for shape in ((1, 1, 4), (37, 53, 4), (224, 300, 4)):
        rgba = rng.integers(0, 256, shape, dtype=np.uint8)
        data = quick_png(rgba)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # checks every chunk's CRC and the zlib stream
            assert img.mode == "RGBA"
            np.testing.assert_array_equal(np.asarray(img), rgba)
    with pytest.raises(ValueError, match="RGBA pixels"):
        quick_png(np.zeros((3, 3), np.uint8))


def test_a_frame_redraws_only_what_changed_and_equals_a_whole_draw(explorer: Explorer) -> None:
    ex, views = explorer, explorer.views
    names = ("overlay", "lpw", "probe", "grid")

    def pixels(name: str) -> np.ndarray:
        return np.asarray(views.figures[name].canvas.get_renderer().buffer_rgba()).copy()

    image_draws = []
    grid_image = views.grid.image
    draw = grid_image.draw
    grid_image.draw = lambda renderer: (image_draws.append(1), draw(renderer))
    for name in names:
        views.frames[name].full()
    grid = views.grid
    step = grid.cell[0] + 6
    moves = [
        lambda: setattr(ex.threshold, "value", 0.3),  # the maps change
        lambda: click(ex, views.figures["grid"], grid.ax, step + 14.7, 2 * step + 49.8),
        lambda: click(ex, views.figures["overlay"], views.overlay.ax, 10, 200),  # a probe
        lambda: ex.score_button.click(),  # AUC texts over the grid's maps
        lambda: setattr(ex.median, "value", 31),
        lambda: click(ex, views.figures["grid"], grid.ax, 14.7, 49.8),
    ]
    for first, second in zip(moves[::2], moves[1::2], strict=True):
        for move in (first, second):  # two moves: a frame built on a frame
            move()
            assert ex.last_error is None, ex.last_error
            image_draws.clear()
            for name in names:
                views.frames[name].blit()
            slider = move in (moves[0], moves[4])
            assert len(image_draws) == (1 if slider or move is moves[3] else 0)
        for name in names:
            blitted = pixels(name)
            views.frames[name].full()
            np.testing.assert_array_equal(blitted, pixels(name), err_msg=name)
    # A saved grid (an export) shows the maps, pixel for pixel where no line crosses them.
    fig, buf = views.figures["grid"], io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    saved = np.asarray(Image.open(buf).convert("RGBA"))
    box = grid.ax.get_window_extent()
    top, left = saved.shape[0] - round(box.y1), round(box.x0)
    maps = grid.image.get_array()
    shown = saved[top : top + maps.shape[0], left : left + maps.shape[1]]
    assert (shown == maps).all(-1).mean() > 0.75  # (AUC boxes and crosshairs cover some)
