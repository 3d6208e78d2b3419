"""Explorer benchmark: kernel-side latency from a slider change to updated artists.

Opens the explorer on MobileNetV2 (the shared ImageNet weights) with the four layers of its
holistic stage at 224 x 224 and every method, then sets the denoising sliders the way a user
would (``explorer.threshold.value = ...``) and times each change until the artists hold the
new maps (re-denoising from the kept PHA, ``set_data`` on every view; the frames are drawn
after the change is handled, so drawing is not part of it). The browser's side is
benchmarks/explorer_browser.py. Reported beside: the Agg draw time of each view, whole and
its moving parts only (all of them redrawn: at most what a slider move redraws; the pixels
are the same, so no frame is made), and the time and size of a whole frame's PNG.
Prints one JSON object.

    python benchmarks/explorer.py [--quick] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from _shared import add_shared_argument

import holiwidget as hw
from holiwidget.explorer.surface import frame_message

TARGET_MS = 20.0


def _summary(times: list[float]) -> dict:
    ms = sorted(t * 1e3 for t in times)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
        "max_ms": round(ms[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_shared_argument(parser)
    parser.add_argument("--quick", action="store_true", help="fewer slider changes")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = hw.load_model("mobilenet_v2", args.shared / "weights" / "mobilenet_v2-imagenet.pth")
    t0 = time.perf_counter()
    explorer = hw.Explorer(model, images=["chelsea"], layers="auto", methods="all")
    ds = explorer.dataset
    first_s = time.perf_counter() - t0
    assert explorer.last_error is None, explorer.last_error
    explorer.probe_at(112, 112)  # the probe follows every change too

    rounds = 1 if args.quick else 3
    changes = {
        "threshold": [round(v, 2) for v in np.linspace(0.1, 0.9, 17)],
        "median": [31, 41, 61, 71, 51],
        "box": [61, 71, 111, 121, 91],
        "denoise": [False, True],
    }
    timings: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, values in changes.items():
            widget = getattr(explorer, name)
            for value in values:
                t = time.perf_counter()
                widget.value = value
                timings.setdefault(name, []).append(time.perf_counter() - t)
                assert explorer.last_error is None, explorer.last_error
    # The views hold the dataset's maps after the last change.
    np.testing.assert_array_equal(
        explorer.views.overlay.map,
        explorer.session.ds["attribution"].values[0, 0, 0],
    )
    every = [t for ts in timings.values() for t in ts]
    draws = {}
    for name, frame in explorer.views.frames.items():
        frame.full()
        t = time.perf_counter()
        frame.full()
        whole = time.perf_counter() - t
        for artist in frame.animated:  # every layer of moving parts, as when the maps move
            artist.stale = True
        t = time.perf_counter()
        frame.blit()
        moving = time.perf_counter() - t
        pixels = np.asarray(frame.figure.canvas.get_renderer().buffer_rgba())
        t = time.perf_counter()
        whole_frame = frame_message(None, pixels)
        draws[name] = {
            "whole_ms": round(whole * 1e3, 1),
            "moving_parts_ms": round(moving * 1e3, 1),
            "whole_frame_png_ms": round((time.perf_counter() - t) * 1e3, 1),
            "whole_frame_kb": round(len(whole_frame[1][0]) / 1024, 1),
        }

    result = {
        "model": "mobilenet_v2",
        "layers": [str(v) for v in ds["layer"].values],
        "methods": [str(v) for v in ds["cam"].values],
        "size": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "torch_threads": torch.get_num_threads(),
        "first_maps_s": round(first_s, 2),
        "slider_to_artists": {name: _summary(ts) for name, ts in timings.items()},
        "all_changes": _summary(every),
        "target_ms": TARGET_MS,
        "within_target": max(every) * 1e3 <= TARGET_MS,
        "agg_draw_not_in_latency": draws,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
