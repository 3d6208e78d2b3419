"""Sweep benchmark: a grid's cost against the floor of its network passes, in one run.

- ``per_image``: one image of a 6 x 6 (m, b) grid at two MobileNetV2 layers (step 3584)
  through :func:`holiwidget.sweeps.score_sweep_image`, against its floor: one explain of
  the image plus the bare batched forward passes of all the perturbed images it evaluated
  (counted by a hook); sweep and floor alternated, the best of each, two images. Target
  ratio <= 1.15.
- ``redenoise_ms``: re-denoising the 36 settings of one 224 x 224 layer. Target <= 25 ms.
- ``workers``: 8 images with ``workers=2`` against serial ``threads=1``, same numbers.
  Target speed-up >= 1.6 on a 2-core machine.

Prints one JSON object. Run it on a quiet machine:

    python benchmarks/sweep.py [--quick] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _shared import add_shared_argument

import holiwidget as hw
from holiwidget.evaluation import collect_inputs
from holiwidget.methods.holistic import Denoising, denoise_settings
from holiwidget.metrics._common import evaluation
from holiwidget.sweeps import KERNELS, SweepProtocol, score_sweep_image
from holiwidget.sweeps.grid import Grid

LAYERS = ("features.18", "features.6.conv.0")
STEP = 3584


def _protocol(model: torch.nn.Module, grid: Grid) -> SweepProtocol:
    return SweepProtocol(
        model="mobilenet_v2",
        weights="shared",
        fingerprint="benchmark",
        layers=LAYERS,
        metrics=("insertion", "deletion", "overall", "epg"),
        target="label",
        step=STEP,
        thresholds=grid.thresholds,
        medians=grid.medians,
        boxes=grid.boxes,
        scale_sets=grid.scale_sets,
        design=grid.design,
        extras=grid.extras,
    )


def _bare_forward(model: torch.nn.Module, images: int) -> float:
    """Seconds of ``images`` forward passes at 224, in the metrics' batches, no grad."""
    x = torch.randn(1, 3, 224, 224)
    with evaluation(model, "cpu", None) as ev:
        batch = ev.batch_size
        t0 = time.perf_counter()
        for b0 in range(0, images, batch):
            n = min(batch, images - b0)
            ev.probabilities(x.expand(n, -1, -1, -1).contiguous(), torch.zeros(n, dtype=torch.long))
        return time.perf_counter() - t0


def _counter(counted: list[int]):
    """A forward hook that counts the images of gradient-free passes (the metrics')."""

    def hook(_module, inputs, _output):
        if not torch.is_grad_enabled():
            counted.append(inputs[0].shape[0])

    return hook


def _sweep_once(model: torch.nn.Module, item, protocol: SweepProtocol) -> tuple[float, int]:
    """Seconds of one image's sweep, and the perturbed images its metrics passed."""
    counted: list[int] = []
    handle = model.register_forward_hook(_counter(counted))
    t0 = time.perf_counter()
    record = score_sweep_image(model, item, protocol, "cpu", None)
    seconds = time.perf_counter() - t0
    handle.remove()
    assert record.error is None, record.error
    return seconds, sum(counted)


def _floor_once(model: torch.nn.Module, item, images: int) -> tuple[float, float]:
    """Seconds of the image's explain, and of ``images`` bare forward passes."""
    t0 = time.perf_counter()
    hw.explain(model, item.path, layers=list(LAYERS), target=item.label)
    return time.perf_counter() - t0, _bare_forward(model, images)


def per_image(model: torch.nn.Module, items: list, repeats: int) -> dict:
    """Each image's sweep and its floor, alternated ``repeats`` times after a first sweep
    (which counts the floor's images); the best of each, as the engine's benchmark does
    (one busy neighbour moves a single run by 30 %)."""
    protocol = _protocol(model, Grid(extras=()))
    ratios, rows = [], []
    for item in items:
        first, images = _sweep_once(model, item, protocol)
        sweeps, floors = [first], []
        for r in range(repeats):
            if r % 2:
                sweeps.append(_sweep_once(model, item, protocol)[0])
            floors.append(_floor_once(model, item, images))
            if not r % 2:
                sweeps.append(_sweep_once(model, item, protocol)[0])
        explain_s, forward_s = min(floors, key=sum)
        ratios.append(min(sweeps) / (explain_s + forward_s))
        rows.append(
            {
                "image": item.image,
                "sweep_s": round(min(sweeps), 3),
                "explain_s": round(explain_s, 3),
                "forward_s": round(forward_s, 3),
                "perturbed_images": images,
                "ratio": round(ratios[-1], 3),
            }
        )
    maps = 2 * 37
    return {
        "grid": "6 x 6 (m, b) at tau 0.5, 2 layers, step 3584, no extras",
        "maps_per_image": maps,
        "perturbed_images_before_dedup": maps * 2 * 15,
        "repeats": repeats,
        "runs": rows,
        "median_ratio": round(statistics.median(ratios), 3),
        "target": 1.15,
    }


def redenoise(model: torch.nn.Module, path: str) -> dict:
    ds = hw.explain(model, path, layers="features.6.conv.0")
    pha, mf = ds.primary.values[0, 0], ds.fundamental.values[0, 0]
    settings = [Denoising(0.5, m, b) for m in KERNELS for b in KERNELS]
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        denoise_settings(pha, mf, settings)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "median": round(statistics.median(times), 2),
        "max": round(max(times), 2),
        "target_ms": 25,
    }


def workers(model: torch.nn.Module, images: Path, annotations: Path, count: int) -> dict:
    kwargs = dict(layers=list(LAYERS), step=STEP, limit=count, extras=(), threads=1)
    t0 = time.perf_counter()
    serial = hw.sweep(model, images, annotations, **kwargs)
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    spread = hw.sweep(model, images, annotations, workers=2, **kwargs)
    spread_s = time.perf_counter() - t0  # includes starting the cluster
    same = bool(np.array_equal(serial.score.values, spread.score.values, equal_nan=True))
    return {
        "images": count,
        "serial_s": round(serial_s, 2),
        "workers2_s": round(spread_s, 2),
        "speedup": round(serial_s / spread_s, 3),
        "identical": same,
        "target": 1.6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_argument(parser)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images")
    args = parser.parse_args()
    root = args.shared / "data" / "imagenet-val-1300"
    model = hw.load_model("mobilenet_v2", args.shared / "weights" / "mobilenet_v2-imagenet.pth")
    torch.set_num_threads(1)
    items = collect_inputs(root / "images", root / "annotations.csv", 4).items
    out = {
        "threads": 1,
        "redenoise_ms": redenoise(model, items[0].path),
        "per_image": per_image(
            model, items[:1] if args.quick else items[:2], 1 if args.quick else 2
        ),
        "workers": workers(
            model, root / "images", root / "annotations.csv", 2 if args.quick else 8
        ),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
