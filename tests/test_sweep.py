"""`holiwidget sweep` and `holiwidget.sweep`: the grid, re-denoising, scoring against
evaluate, resuming, a LocalCluster, the tables, the heatmaps and bad input, on real ImageNet
images with the real MobileNetV2 weights from ../shared (few images, a coarse step)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from clirun import run_cli
from matplotlib.figure import Figure

import holiwidget
from holiwidget import HoliwidgetError, open_dataset
from holiwidget.methods.holistic import Denoising, denoise_settings
from holiwidget.metrics import insertion_deletion
from holiwidget.pyramid import PYRAMID_SIDES
from holiwidget.sweeps import Grid, parse_scale_sets, parse_values, sweep_summary_paths

LAYERS = ["features.18", "features.6.conv.0"]
STEP = 7168  # 8 evaluations per curve: coarse, for speed
GRID = dict(
    threshold=(0.5, 1.0),
    median=(31, 51),
    box=(51, 91),
    scales=[(224,), None],
    design="star",
)


def _data(shared: Path) -> tuple[Path, Path]:
    root = shared / "data" / "imagenet-val-1300"
    return root / "images", root / "annotations.csv"


@pytest.fixture(scope="module")
def model(mobilenet_weights) -> torch.nn.Module:
    return holiwidget.load_model("mobilenet_v2", mobilenet_weights)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, model, shared) -> tuple[xr.Dataset, Path]:
    out = tmp_path_factory.mktemp("sweep") / "sweep.zarr"
    images, annotations = _data(shared)
    results = holiwidget.sweep(
        model, images, annotations, layers=LAYERS, step=STEP, limit=2, output=out, **GRID
    )
    return results, out


# ----------------------------------------------------------------------------- the grid


def test_star_design_cells() -> None:
    grid = Grid((0.25, 0.5), (31, 51, 71), (51, 91), ((224,), PYRAMID_SIDES), "star")
    assert grid.reference == (1, 1, 1, 1)  # the defaults where listed
    cells = grid.cells()
    # the 3 x 2 plane at tau 0.5 on the full pyramid, tau 0.25 there, and the one-scale set
    assert len(cells) == 3 * 2 + 1 + 1
    assert (1, 1, 0, 0) in cells and (1, 0, 1, 1) in cells and (0, 1, 1, 1) in cells
    assert (0, 0, 1, 1) not in cells and (0, 1, 0, 0) not in cells
    assert int(grid.computed().sum()) == len(cells)
    full = Grid((0.25, 0.5), (31, 51, 71), (51, 91), ((224,),), "full")
    assert len(full.cells()) == 2 * 3 * 2 and full.reference == (0, 1, 1, 1)
    names = list(grid.extra_settings())
    assert names == ["default", "off", "no filters", "median only", "box only"]
    assert list(Grid(extras=()).extra_settings()) == ["default"]


def test_parse_lists_ranges_and_scale_sets() -> None:
    assert parse_values("31:131:20", "median") == [31, 51, 71, 91, 111, 131]
    assert parse_values("0.25:1:0.25", "threshold") == [0.25, 0.5, 0.75, 1.0]
    assert parse_values("51,91", "box") == [51, 91]
    sets = parse_scale_sets("224;224,324,424,524;all")
    assert sets == [(224,), (224, 324, 424, 524), tuple(range(224, 1000, 100))]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"medians": (50,)}, "median kernel must be odd, got 50; use 49 or 51"),
        ({"boxes": (-3,)}, "box kernel must be an odd integer from 1"),
        ({"medians": (301,)}, "median kernel must be an odd integer from 1 to 255"),
        ({"thresholds": (0.0,)}, r"threshold must be in \(0, 1\]"),
        ({"thresholds": (1.5,)}, r"threshold must be in \(0, 1\]"),
        ({"medians": ()}, "median is empty"),
        ({"boxes": (51, 51)}, "repeats a value"),
        ({"scale_sets": ((324, 224),)}, "start with the fundamental scale"),
        ({"scale_sets": ((224, 0),)}, "positive integers"),
        ({"scale_sets": ()}, "non-empty list of scale sets"),
        ({"scale_sets": ((224,), (224,))}, "repeat a scale set"),
        ({"design": "cube"}, "design must be one of full, star"),
        ({"extras": ("of",)}, "unknown extra setting"),
    ],
)
def test_bad_grid_one_line_error(kwargs, match) -> None:
    with pytest.raises(HoliwidgetError, match=match) as err:
        Grid(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("flag", "value", "match"),
    [
        ("--median", "31,50", "median kernel must be odd"),
        ("--box", "31:131:0", "not a list or a range"),
        ("--threshold", "0:1:0.5", r"threshold must be in \(0, 1\]"),
        ("--scales", "224;big", "scale set 'big' is not a list of sides"),
        ("--scales", "224,224", "repeat a side"),
        ("--metrics", "road,aopc", r"unknown metric\(s\) aopc"),
        ("--extras", "none,on", "unknown extra setting"),
    ],
)
def test_cli_bad_grid_exits_2_before_any_work(shared, tmp_path, flag, value, match) -> None:
    images, annotations = _data(shared)
    out = tmp_path / "s.zarr"
    argv = [
        "sweep",
        *("--images", images, "--annotations", annotations, "--model", "mobilenet_v2"),
        *("--weights", "none", "--output", out, flag, value),
    ]
    code, stdout, stderr = run_cli(argv)
    assert code == 2 and stdout == "", stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("holiwidget: error: ")
    assert __import__("re").search(match, stderr), stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ re-denoising


def test_denoise_settings_equal_one_by_one(model, imagenet_images) -> None:
    ds = holiwidget.explain(model, imagenet_images[0], layers="features.6.conv.0")
    pha, mf = ds.primary.values[0, 0], ds.fundamental.values[0, 0]
    settings = [Denoising(t, m, b) for t in (0.25, 1.0) for m in (1, 31, 131) for b in (1, 91)]
    settings.append(None)
    maps = denoise_settings(pha, mf, settings)
    for setting, got in zip(settings, maps, strict=True):
        want = (
            Denoising().apply(pha, mf, denoise=False)[0]
            if setting is None
            else setting.apply(pha, mf)[0]
        )
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(maps[0], maps[-1])


def test_maps_that_change_the_same_pixels_are_evaluated_once(model, imagenet_images) -> None:
    x = holiwidget.images.prepare_images([imagenet_images[0]]).tensor
    rng = np.random.default_rng(0)
    a = rng.random((224, 224), dtype=np.float32)
    b = rng.random((224, 224), dtype=np.float32)
    maps = torch.from_numpy(np.stack([a, 2 * a + 1, b, a]))  # a's ranking three times
    calls = []
    handle = model.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    try:
        res = insertion_deletion(model, x, maps, 5, step=STEP)
    finally:
        handle.remove()
    single = insertion_deletion(model, x, maps[2:3], 5, step=STEP)
    evaluations = 2 * (math.ceil(224 * 224 / STEP) + 1)  # insertion and deletion curves
    assert sum(calls) == 2 * evaluations  # two distinct maps, not four
    for kind in ("insertion", "deletion"):
        curves = getattr(res, kind).curves
        np.testing.assert_array_equal(curves[0], curves[1])
        np.testing.assert_array_equal(curves[0], curves[3])
        np.testing.assert_allclose(curves[2], getattr(single, kind).curves[0], rtol=1e-5)


# ------------------------------------------------------------------------- the results


def test_results_layout(swept) -> None:
    results, _ = swept
    assert results.score.dims == (
        "image",
        "layer",
        "scales",
        "threshold",
        "median",
        "box",
        "metric",
    )
    assert list(results.scales.values) == ["224", "224..924"]
    assert list(results.metric.values) == ["insertion", "deletion", "overall", "epg"]
    computed = results.computed.values
    finite = np.isfinite(results.score.values).any(axis=(0, 1, 6))
    np.testing.assert_array_equal(finite, computed)
    assert computed.sum() == 2 * 2 + 1 + 1
    one = results.score.sel(scales="224..924", threshold=0.5, median=31, box=51)
    assert one.dims == ("image", "layer", "metric") and np.isfinite(one.values).all()
    score = results.score.sel(metric="overall").values
    ins_del = (
        results.score.sel(metric="insertion").values - results.score.sel(metric="deletion").values
    )
    np.testing.assert_allclose(score[np.isfinite(score)], ins_del[np.isfinite(score)])
    extras = results.extra_score
    assert list(extras.setting.values) == [
        "default",
        "off",
        "no filters",
        "median only",
        "box only",
    ]
    # the default is also a grid cell: the same number
    np.testing.assert_array_equal(
        extras.sel(scales="224..924", setting="default").values,
        results.score.sel(scales="224..924", threshold=0.5, median=51, box=91).values,
    )
    assert results.explain_seconds.dims == ("image", "scales")
    assert (results.explain_seconds.values > 0).all()
    # one scale is cheaper than eight
    assert (
        results.explain_seconds.sel(scales="224") < results.explain_seconds.sel(scales="224..924")
    ).all()
    assert list(results.label.values) == list(results.target.values)
    protocol = json.loads(results.attrs["protocol"])
    assert protocol["kind"] == "sweep" and protocol["design"] == "star"
    assert protocol["scale_sets"] == [[224], list(range(224, 1000, 100))]


def test_default_setting_equals_evaluate(swept, model, shared) -> None:
    results, _ = swept
    images, annotations = _data(shared)
    evaluated = holiwidget.evaluate(
        model,
        images,
        annotations,
        layers=LAYERS,
        methods="holistic",
        metrics=("insertion", "deletion", "overall", "epg"),
        step=STEP,
        limit=2,
    )
    want = evaluated.score.sel(cam="holistic").transpose("image", "layer", "metric").values
    got = results.extra_score.sel(scales="224..924", setting="default").values
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(results.probability.values, evaluated.probability.values)
    # ROAD, on request: the default setting's is evaluate's for the same seed (one image and
    # one layer: each ROAD map costs 18 imputation solves)
    road = dict(layers="features.18", metrics="road", step=STEP, limit=1, seed=3)
    swept_road = holiwidget.sweep(
        model, images, annotations, threshold=0.5, median=51, box=91, extras=(), **road
    )
    assert json.loads(swept_road.attrs["protocol"])["seed"] == 3
    evaluated_road = holiwidget.evaluate(model, images, annotations, methods="holistic", **road)
    want = evaluated_road.score.sel(cam="holistic", metric="road").values
    got = swept_road.extra_score.sel(scales="224..924", setting="default", metric="road")
    np.testing.assert_allclose(got.values, want, rtol=1e-6, atol=1e-7)
    cell = swept_road.score.sel(scales="224..924", threshold=0.5, median=51, box=91)
    np.testing.assert_array_equal(cell.sel(metric="road").values, got.values)


def test_settings_differ_and_off_is_pha(swept, model, imagenet_images) -> None:
    results, _ = swept
    plane = results.score.sel(scales="224..924", threshold=0.5, metric="epg")
    assert np.unique(np.round(plane.values, 9)).size > 4  # the kernels change the maps
    one_scale = results.score.sel(scales="224", threshold=0.5, median=51, box=91)
    pyramid = results.score.sel(scales="224..924", threshold=0.5, median=51, box=91)
    assert not np.allclose(one_scale.values, pyramid.values)


def test_summary_tables_and_files(swept) -> None:
    results, out = swept
    table = holiwidget.sensitivity_table(results, layer="features.18", metric="overall")
    assert list(table.index) == [51, 91] and list(table.columns) == [31, 51]
    assert table.index.name == "b" and table.columns.name == "m"
    want = results.score.sel(
        layer="features.18", metric="overall", scales="224..924", threshold=0.5
    )
    assert table.loc[91, 31] == pytest.approx(float(want.sel(median=31, box=91).mean()) * 100)
    tau = holiwidget.sensitivity_table(results, "features.18", "overall", by="threshold")
    assert list(tau.index) == [0.5, 1.0]
    assert tau.loc[0.5, "difference"] == 0 and not tau.loc[0.5, "significant"]
    sets = holiwidget.sensitivity_table(results, "features.18", "epg", by="scales")
    assert list(sets.index) == ["224", "224..924"]
    extras = holiwidget.sensitivity_table(results, "features.6.conv.0", "deletion", by="extras")
    assert list(extras.index) == ["default", "off", "no filters", "median only", "box only"]
    diffs = holiwidget.paired_differences(results)
    row = diffs[(diffs.setting == "off") & (diffs.layer == "features.18") & (diffs.metric == "epg")]
    row = row[row.scales == "224..924"].iloc[0]
    per_image = (
        results.extra_score.sel(layer="features.18", metric="epg", scales="224..924").sel(
            setting="off"
        )
        - results.extra_score.sel(layer="features.18", metric="epg", scales="224..924").sel(
            setting="default"
        )
    ).values * 100
    assert row["difference"] == pytest.approx(per_image.mean())
    assert row["low"] < row["difference"] < row["high"]
    with pytest.raises(HoliwidgetError, match="layer 'layer4' is not in the sweep"):
        holiwidget.sensitivity_table(results, "layer4", "overall")
    md, csv, png = sweep_summary_paths(out)
    assert md.read_text().count("| b \\ m |") == 2 * 4
    assert "Settings significantly better than the default" in md.read_text()
    assert csv.read_text().startswith("layer,metric,scales,threshold,median,box,setting")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_sensitivity(swept) -> None:
    results, _ = swept
    fig = holiwidget.plot_sensitivity(results, metrics=["overall", "epg"])
    assert isinstance(fig, Figure)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2 * 2
    # one colour scale per metric, shared by the layers
    by_metric = {}
    for ax in heatmaps:
        by_metric.setdefault(ax.get_title().split(": ")[1], set()).add(ax.images[0].get_clim())
    assert all(len(clims) == 1 for clims in by_metric.values())
    assert all("★" in [t.get_text() for t in ax.texts] for ax in heatmaps)


def test_rerun_resumes_and_other_grid_is_refused(swept, model, shared, tmp_path, caplog) -> None:
    results, out = swept
    images, annotations = _data(shared)
    caplog.set_level("INFO", logger="holiwidget")
    again = holiwidget.sweep(
        model, images, annotations, layers=LAYERS, step=STEP, limit=2, output=out, **GRID
    )
    assert "resuming: 2 of 2 images already scored" in caplog.text
    xr.testing.assert_identical(again.drop_attrs(), results.drop_attrs())
    other = dict(GRID, median=(31, 71))
    with pytest.raises(HoliwidgetError, match=r"another protocol \(differs in medians\)"):
        holiwidget.sweep(
            model, images, annotations, layers=LAYERS, step=STEP, limit=2, output=out, **other
        )
    with pytest.raises(HoliwidgetError, match=r"another protocol \(differs in seed\)"):
        holiwidget.sweep(
            model,
            images,
            annotations,
            layers=LAYERS,
            step=STEP,
            limit=2,
            output=out,
            seed=1,
            **GRID,
        )
    assert open_dataset(out).sizes["image"] == 2


def test_serial_and_local_cluster_give_identical_numbers(model, shared, tmp_path, capsys) -> None:
    images, annotations = _data(shared)
    kwargs = dict(
        layers="features.18", threshold=0.5, median=(51,), box=(51, 91), step=7168, limit=2
    )
    serial = holiwidget.sweep(model, images, annotations, progress=True, **kwargs)
    # with the progress bar, the job's size is shown above it once (logging is off here)
    shown = capsys.readouterr().err
    assert shown.count("sweep: 7 settings x 1 layers x 2 images = 14 maps") == 1, shown
    assert "estimated" in shown and "tau [0.5], median [51], box [51, 91]" in shown
    spread = holiwidget.sweep(
        model, images, annotations, workers=2, output=tmp_path / "s.nc", **kwargs
    )
    for name in ("score", "extra_score"):
        xr.testing.assert_identical(serial[name], spread[name])


def test_cli_prints_the_plan_and_the_tables(shared, mobilenet_weights, tmp_path) -> None:
    images, annotations = _data(shared)
    out = tmp_path / "s.nc"
    argv = [
        "sweep",
        *("--images", images, "--annotations", annotations),
        *("--model", "mobilenet_v2", "--weights", mobilenet_weights),
        *("--layers", "features.18", "--median", "31:51:20", "--box", "91"),
        *("--scales", "all", "--extras", "off", "--limit", 1, "--step", 7168, "--no-progress"),
        *("--output", out),
    ]
    code, stdout, stderr = run_cli(argv)
    assert code == 0, stderr
    assert "sweep: 4 settings x 1 layers x 1 images = 4 maps" in stderr
    assert "estimated" in stderr
    assert "### features.18, Over-all ↑" in stdout
    for path in sweep_summary_paths(out):
        assert f"wrote {path}" in stdout and path.is_file()
    results = open_dataset(out)
    assert list(results.setting.values) == ["default", "off"]


def test_a_longer_run_adds_to_a_shorter_one(swept, model, shared, tmp_path, caplog) -> None:
    """One image first, then two: the first is read back (not recomputed), the second added;
    the result equals the two-image run."""
    results, _ = swept
    images, annotations = _data(shared)
    out = tmp_path / "grow.nc"
    kwargs = dict(layers=LAYERS, step=STEP, output=out, **GRID)
    holiwidget.sweep(model, images, annotations, limit=1, **kwargs)
    caplog.set_level("INFO", logger="holiwidget")
    grown = holiwidget.sweep(model, images, annotations, limit=2, **kwargs)
    assert "resuming: 1 of 2 images already scored" in caplog.text
    for name in ("score", "extra_score", "label", "probability"):
        xr.testing.assert_identical(grown[name], results[name])
