"""`holiwidget evaluate` and `holiwidget.evaluate`: the pipeline end to end on real ImageNet
images with the real MobileNetV2 weights from ../shared, a coarse step and few images (the
tiny version of the reproduction run: two images), resuming after a kill, serial vs a dask
LocalCluster, and bad input."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from clirun import run_cli

import holiwidget
from holiwidget import open_dataset
from holiwidget.evaluation import summary_table
from holiwidget.metrics import insertion_deletion, road_scores

FIRST = ["ILSVRC2012_val_00000347.JPEG", "ILSVRC2012_val_00000355.JPEG"]
LAYERS = "features.6.conv.0,features.18"
METHODS = "holistic,gradcam"
STEP = 3584  # 15 evaluations per curve: coarse, for speed
IMAGES = 2  # the fewest for a resume after a kill and for an interval


def _data(shared: Path) -> tuple[Path, Path]:
    root = shared / "data" / "imagenet-val-1300"
    return root / "images", root / "annotations.csv"


def _argv(shared: Path, weights: Path, output: Path, limit: int = IMAGES) -> list[object]:
    images, annotations = _data(shared)
    return [
        "evaluate",
        *("--images", images, "--annotations", annotations),
        *("--model", "mobilenet_v2", "--weights", weights),
        *("--layers", LAYERS, "--methods", METHODS),
        *("--limit", limit, "--step", STEP, "--seed", 3, "--no-progress"),
        *("--output", output),
    ]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, shared, mobilenet_weights) -> tuple[int, str, str, Path]:
    out = tmp_path_factory.mktemp("evaluate") / "results.zarr"
    code, stdout, stderr = run_cli(_argv(shared, mobilenet_weights, out))
    return code, stdout, stderr, out


def test_results_dataset(full_run) -> None:
    code, _, stderr, out = full_run
    assert code == 0, stderr
    ds = open_dataset(out)
    assert ds["score"].dims == ("image", "cam", "layer", "metric")
    assert list(ds["metric"].values) == ["insertion", "deletion", "overall", "road", "epg"]
    assert list(ds["cam"].values) == ["holistic", "gradcam"]
    assert list(ds["layer"].values) == LAYERS.split(",")
    assert ds.sizes["image"] == IMAGES and len(set(ds["image"].values)) == IMAGES
    score = ds["score"]
    assert np.isfinite(score.values).all()
    np.testing.assert_allclose(
        score.sel(metric="overall"), score.sel(metric="insertion") - score.sel(metric="deletion")
    )
    # Areas are the trapezoid of the kept curves over the kept fractions.
    frac = ds["fraction"].values
    assert frac[0] == 0 and frac[-1] == 1 and len(frac) == math.ceil(224 * 224 / STEP) + 1
    area = np.trapezoid(ds["insertion_curve"].values.astype(np.float64), frac, axis=-1)
    np.testing.assert_allclose(score.sel(metric="insertion").values, area, atol=1e-6)
    road = (ds["road_lerf"].mean("percentile") - ds["road_morf"].mean("percentile")) / 2
    np.testing.assert_allclose(score.sel(metric="road").values, road.values)
    # Targets are the labels; correctness is recorded.
    np.testing.assert_array_equal(ds["target"].values, ds["label"].values)
    assert ds["label"].values[0] == 472
    np.testing.assert_array_equal(ds["correct"], ds["prediction"] == ds["label"])
    assert (ds["boxes"] > 0).all() and (
        (ds["centre_prior_epg"] > 0) & (ds["centre_prior_epg"] < 1)
    ).all()
    protocol = json.loads(ds.attrs["protocol"])
    assert protocol["step"] == STEP and protocol["seed"] == 3 and protocol["target"] == "label"
    assert protocol["percentiles"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert json.loads(ds.attrs["skipped"]) == {}
    assert not out.with_name(out.name + ".partial").exists()


def test_scores_equal_the_metric_functions(full_run, shared, mobilenet_weights) -> None:
    """The pipeline's numbers are those of the metric functions on the engine's maps."""
    torch.set_num_threads(1)  # as the pipeline's default (threads=1): equal to the bit
    out = full_run[3]
    ds = open_dataset(out).isel(image=[0])
    images, _ = _data(shared)
    model = holiwidget.load_model("mobilenet_v2", mobilenet_weights)
    maps = holiwidget.explain(
        model, [images / FIRST[0]], layers=LAYERS, methods=METHODS, target=472
    )
    x = holiwidget.images.prepare_images([images / FIRST[0]]).tensor
    flat = maps["attribution"].values[0].reshape(4, 224, 224)
    causal = insertion_deletion(model, x, flat, 472, step=STEP)
    np.testing.assert_array_equal(
        ds["score"].sel(metric="deletion").values.reshape(-1), causal.deletion.auc
    )
    road = road_scores(model, x, flat, 472, noise=0.0)
    got = ds["score"].sel(metric="road").values.reshape(-1)
    # With its seeded noise the pipeline's ROAD lies near the noise-free value.
    np.testing.assert_allclose(got, road.combined, atol=0.05)


def test_summary_table_files_and_printout(full_run) -> None:
    _, stdout, _, out = full_run
    md = out.with_name("results-summary.md")
    table = out.with_name("results-summary.csv")
    assert md.is_file() and table.is_file()
    text = md.read_text()
    assert "| Method | Ins | Del | Over-all | ROAD | EPG |" in text
    assert "| Holistic-CAM |" in text and "| centre prior |" in text
    assert "**features.18**" in text and f"{IMAGES} images" in text
    assert text.startswith("<!-- written by holiwidget")  # its mark: replaced only if ours
    assert text.split("\n", 1)[1].strip() in stdout
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    # 2 layers x (2 methods x 5 metrics + the centre prior's EPG)
    assert len(rows) == 2 * (2 * 5 + 1)
    ds = open_dataset(out)
    row = next(r for r in rows if r["method"] == "Grad-CAM" and r["metric"] == "deletion")
    values = ds["score"].sel(cam="gradcam", metric="deletion", layer=row["layer"]).values * 100
    assert float(row["mean"]) == pytest.approx(values.mean(), abs=1e-3)
    half = float(row["high"]) - float(row["mean"])
    from scipy import stats

    expected = stats.t.ppf(0.975, IMAGES - 1) * values.std(ddof=1) / math.sqrt(IMAGES)
    assert half == pytest.approx(expected, abs=1e-3)


def test_rerun_of_a_finished_run_recomputes_nothing(
    full_run, shared, mobilenet_weights, tmp_path
) -> None:
    out = full_run[3]
    before = open_dataset(out)
    # The same images by name, but unreadable: any image scored again would be left out.
    junk = tmp_path / "images"
    junk.mkdir()
    for name in before["image"].values:
        (junk / str(name)).write_bytes(b"not a JPEG")
    argv = [str(a) for a in _argv(shared, mobilenet_weights, out)]
    argv[argv.index("--images") + 1] = str(junk)
    code, _, stderr = run_cli(["-v", *argv])
    assert code == 0, stderr
    assert f"resuming: {IMAGES} of {IMAGES} images already scored" in stderr
    after = open_dataset(out)
    assert json.loads(after.attrs["skipped"]) == {}
    xr.testing.assert_identical(after.drop_attrs(), before.drop_attrs())


def test_resume_after_kill(tmp_path, full_run, shared, mobilenet_weights) -> None:
    """Kill a run after its first image, re-run: the result equals an uninterrupted run."""
    out = tmp_path / "results.zarr"
    partial = out.with_name(out.name + ".partial")
    cmd = [sys.executable, "-m", "holiwidget", *map(str, _argv(shared, mobilenet_weights, out))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(partial.glob("*.npz")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no image finished in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finished = sorted(p.name for p in partial.glob("*.npz"))
    assert 1 <= len(finished) < IMAGES and not out.exists()
    code, _, stderr = run_cli(["-v", *_argv(shared, mobilenet_weights, out)])
    assert code == 0, stderr
    assert f"resuming: {len(finished)} of {IMAGES} images already scored" in stderr
    resumed, whole = open_dataset(out), open_dataset(full_run[3])
    xr.testing.assert_identical(resumed.drop_attrs(), whole.drop_attrs())
    assert resumed.attrs["protocol"] == whole.attrs["protocol"]
    assert not partial.exists()


def test_other_protocol_is_refused(tmp_path, full_run, shared, mobilenet_weights) -> None:
    out = full_run[3]
    argv = _argv(shared, mobilenet_weights, out)
    argv[argv.index("--step") + 1] = 7168
    code, stdout, stderr = run_cli(argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith("holiwidget: error: ") and len(stderr.splitlines()) == 1
    assert "another protocol (differs in step)" in stderr


def test_serial_and_local_cluster_give_identical_results(
    shared, mobilenet_weights, tmp_path
) -> None:
    images, annotations = _data(shared)
    model = holiwidget.load_model("mobilenet_v2", mobilenet_weights)
    kwargs = dict(
        layers="features.18",
        methods="gradcam,eigencam",
        step=STEP,
        limit=IMAGES,
        seed=5,
    )
    serial = holiwidget.evaluate(model, images, annotations, **kwargs)
    spread = holiwidget.evaluate(
        model, images, annotations, workers=2, output=tmp_path / "r.zarr", **kwargs
    )
    xr.testing.assert_identical(serial.drop_attrs(), spread.drop_attrs())
    assert serial.attrs["protocol"] == spread.attrs["protocol"]
    xr.testing.assert_identical(open_dataset(tmp_path / "r.zarr").drop_attrs(), spread.drop_attrs())


# ------------------------------------------------------------------------------ bad input


@pytest.fixture
def messy_set(tmp_path, shared) -> tuple[Path, Path]:
    """Five images and a CSV with every kind of trouble the issue names."""
    images, _ = _data(shared)
    folder = tmp_path / "images"
    folder.mkdir()
    names = sorted(p.name for p in images.glob("*.JPEG"))[:5]
    for name in names:
        shutil.copy(images / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.JPEG").write_bytes(b"not a JPEG at all")
    rows = [
        # fine, with a box that reaches outside the image (clipped)
        [names[0], 472, 227, 227, 9, 105, 300, 176],
        # its only box lies outside the image: dropped, no boxes left, not in EPG
        [names[1], 260, 227, 227, 400, 400, 500, 500],
        # a label outside the model's 1000 classes: left out with a message
        [names[2], 4000, 227, 227, 10, 10, 100, 100],
        # label only: no boxes
        [names[3], 1, "", "", "", "", "", ""],
        # listed, but no such file
        ["missing.JPEG", 3, 227, 227, 1, 1, 10, 10],
        # listed, but not an image: left out with the reason
        ["broken.JPEG", 5, 227, 227, 1, 1, 10, 10],
    ]
    # names[4] has no row: left out
    csv_path = tmp_path / "annotations.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label", "width", "height", "x0", "y0", "x1", "y1"])
        w.writerows(rows)
    return folder, csv_path


def test_bad_input_is_reported_and_the_run_goes_on(messy_set, mobilenet_weights, tmp_path) -> None:
    folder, csv_path = messy_set
    out = tmp_path / "r.zarr"
    code, stdout, stderr = run_cli(
        [
            "evaluate",
            *("--images", folder, "--annotations", csv_path),
            *("--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--layers", "features.18", "--methods", "gradcam"),
            *("--metrics", "deletion,epg", "--step", 7168, "--no-progress"),
            *("--output", out),
        ]
    )
    assert code == 0, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert all(line.startswith("holiwidget: warning: ") for line in lines), stderr
    assert any(
        "1 image(s) of the annotations are not among the image files (missing.JPEG)" in x
        for x in lines
    )
    assert any("1 image file(s) have no row in the annotations" in x for x in lines)
    assert any("target 4000 is outside the model's 1000 classes" in x for x in lines)
    assert any(
        x.startswith("holiwidget: warning: broken.JPEG left out: cannot read") for x in lines
    )
    ds = open_dataset(out)
    names = list(ds["image"].values)
    assert len(names) == 3
    skipped = json.loads(ds.attrs["skipped"])
    assert set(skipped) == {"broken.JPEG", sorted(p.name for p in folder.glob("ILS*"))[2]}
    assert all("\n" not in reason for reason in skipped.values())
    assert len(json.loads(ds.attrs["input_problems"])) == 2
    boxes = ds["boxes"].values
    assert list(boxes) == [1, 0, 0]  # clipped box kept; dropped; label-only
    epg = ds["score"].sel(metric="epg", cam="gradcam", layer="features.18").values
    assert np.isfinite(epg[0]) and np.isnan(epg[1:]).all()
    assert np.isfinite(ds["score"].sel(metric="deletion")).all()
    table = summary_table(ds)
    epg_row = table[(table.method == "Grad-CAM") & (table.metric == "epg")].iloc[0]
    assert epg_row["n"] == 1
    assert "EPG over the 1 image(s) with boxes." in stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--metrics", "insertion,accuracy"), "unknown metric(s) accuracy"),
        (("--annotations", "nope.csv"), "annotation file nope.csv not found"),
        (("--images", "nope"), "image folder nope not found"),
        (("--output", "r.txt"), "cannot tell the format of r.txt"),
        (("--methods", "gradcam,magic"), "unknown method"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    change, message, shared, mobilenet_weights, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [str(a) for a in _argv(shared, mobilenet_weights, tmp_path / "r.zarr")]
    if change[0] in argv:
        argv[argv.index(change[0]) + 1] = change[1]
    else:
        argv += change
    code, stdout, stderr = run_cli(argv)
    assert code == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1 and stderr.startswith("holiwidget: error: ")
    assert message in stderr
    assert sorted(os.listdir(tmp_path)) == []


def test_workers_and_scheduler_exclude_each_other(shared, mobilenet_weights, tmp_path) -> None:
    argv = [*_argv(shared, mobilenet_weights, tmp_path / "r.zarr"), "--workers", 2]
    code, _, stderr = run_cli([*argv, "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2 and "not allowed with argument" in stderr


def test_unreachable_scheduler_is_one_line(shared, mobilenet_weights, tmp_path) -> None:
    argv = [
        *_argv(shared, mobilenet_weights, tmp_path / "r.zarr"),
        "--scheduler",
        "tcp://127.0.0.1:9",
    ]
    code, _, stderr = run_cli(argv)
    assert code == 2 and len(stderr.splitlines()) == 1
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in stderr


def test_python_api_without_annotations_explains_top1(shared, mobilenet_weights) -> None:
    images, _ = _data(shared)
    model = holiwidget.load_model("mobilenet_v2", mobilenet_weights)
    files = sorted(images.glob("*.JPEG"))[:2]
    ds = holiwidget.evaluate(
        model, files, layers="features.18", methods="eigencam", metrics="insertion", step=7168
    )
    np.testing.assert_array_equal(ds["target"].values, ds["prediction"].values)
    assert (ds["label"].values == -1).all() and list(ds["metric"].values) == ["insertion"]
    with pytest.raises(holiwidget.HoliwidgetError, match="labels and boxes come from annotations"):
        holiwidget.evaluate(model, files, metrics="epg")
