"""Engine benchmark: Holistic-CAM against the floor of its network passes, in one run.

The floor is what no implementation can avoid: the eight forward passes of the input pyramid
plus the backward pass from the class logit down to the shallowest explained layer, with
frozen parameters and one hook that cuts the graph there (no recording, no fusion). Peak
memory is measured in a fresh process per case. The two baselines with passes of their own
are measured the same way (``relevancecam``: the four stages of MobileNetV2 and ResNet-50
against one forward + input-gradient pass, target <= 3x; ``iia``: against its 11 bare
forward + backward passes, target <= 1.2x; see benchmarks/baselines.py). Prints one JSON
object.

    python benchmarks/engine.py [--quick] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _shared import add_shared_argument, benchmark_model

import holiwidget as hw
from holiwidget.cli.app import APP_PASS_MEMORY
from holiwidget.pyramid import pyramid_sizes

CASES = {
    "resnet50/layer4": ("resnet50", ["layer4"]),
    "resnet50/stages": ("resnet50", ["layer1", "layer2", "layer3", "layer4"]),
    "mobilenet_v2/features.18": ("mobilenet_v2", ["features.18"]),
    "mobilenet_v2/stages": (
        "mobilenet_v2",
        ["features.3.conv.0", "features.6.conv.0", "features.13.conv.0", "features.18"],
    ),
}


#: The app's budget for what one pass keeps for its backward (holiwidget app --pass-memory).
PASS_MEMORY_MB = APP_PASS_MEMORY


def _input(n: int = 1) -> torch.Tensor:
    return hw.images.prepare_images((["chelsea", "coffee", "astronaut", "rocket"] * 2)[:n]).tensor


def floor(model: torch.nn.Module, x: torch.Tensor, shallowest: str) -> float:
    """Eight forwards + backward from the top-1 logit to the shallowest layer."""
    module = dict(model.named_modules())[shallowest]
    leaf = {}

    def cut(mod, inputs, out):
        leaf["t"] = out.detach().requires_grad_(True)
        return leaf["t"]

    handle = module.register_forward_hook(cut)
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = time.perf_counter()
    try:
        target = None
        sizes = pyramid_sizes(*x.shape[-2:])
        for size in [sizes[0], *sorted(sizes[1:], reverse=True)]:  # the engine's order
            xs = (
                x
                if size == tuple(x.shape[-2:])
                else F.interpolate(x, size=size, mode="bicubic", align_corners=False)
            )
            with torch.enable_grad():
                logits = model(xs)
                if target is None:
                    target = logits.argmax(1)
                score = logits.gather(1, target[:, None]).sum()
                torch.autograd.grad(score, leaf["t"])
    finally:
        handle.remove()
    return time.perf_counter() - t0


def holistic(model: torch.nn.Module, x: torch.Tensor, layers: list[str], **kw) -> float:
    t0 = time.perf_counter()
    hw.explain(model, x, layers=layers, methods=("holistic",), device="cpu", **kw)
    return time.perf_counter() - t0


def _child(kind: str, case: str, shared: Path) -> None:
    torch.set_num_threads(2)
    name, layers = CASES[case]
    model = benchmark_model(name, shared)
    x = _input(1)
    if kind.startswith("time_"):  # best of a warm-up and three runs, in a process of its own
        budget = PASS_MEMORY_MB if kind == "time_on_disk" else None
        print(min(holistic(model, x, layers, pass_memory=budget) for _ in range(4)))
        return
    if kind == "floor":
        floor(model, x, layers[0])
    elif kind == "on_disk":
        holistic(model, x, layers, pass_memory=PASS_MEMORY_MB)
    else:
        holistic(model, x, layers)
    print(_own_peak_bytes())


def _own_peak_bytes() -> int:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ru_maxrss would also count the parent's memory at the time it forked this process."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_output(kind: str, case: str, shared: Path) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, case, "--shared", str(shared)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _peak(kind: str, case: str, shared: Path) -> int:
    return int(_child_output(kind, case, shared))


def _timings(model, x, layers, repeats: int) -> dict:
    """Best of interleaved repeats; a cheap case gets more of them (about 30 s in all, at most
    9), since one noisy neighbour on this shared machine moves a 1 s run by 20 %."""
    fl, ho = [], []
    warm = holistic(model, x[:1], layers)  # warm-up: caches, allocator
    if repeats > 1:
        repeats = max(repeats, min(9, int(30 / (2 * warm))))
    for _ in range(repeats):
        fl.append(floor(model, x, layers[0]))
        ho.append(holistic(model, x, layers))
    return {
        "repeats": repeats,
        "floor_s": round(min(fl), 3),
        "holistic_s": round(min(ho), 3),
        "ratio": round(min(ho) / min(fl), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_shared_argument(parser)
    parser.add_argument("--quick", action="store_true", help="one repeat, no memory or batch runs")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child, args.shared)
        return
    torch.set_num_threads(2)
    repeats = 1 if args.quick else 3
    result: dict = {"torch_threads": torch.get_num_threads(), "device": "cpu", "cases": {}}
    x1 = _input(1)
    for case, (name, layers) in CASES.items():
        model = benchmark_model(name, args.shared)
        entry = _timings(model, x1, layers, repeats)
        entry["time_target_ratio"] = 1.25
        if not args.quick:
            pf, ph = _peak("floor", case, args.shared), _peak("holistic", case, args.shared)
            entry.update(
                floor_peak_gb=round(pf / 2**30, 3),
                holistic_peak_gb=round(ph / 2**30, 3),
                peak_ratio=round(ph / pf, 3),
                peak_target_ratio=1.15,
            )
        result["cases"][case] = entry

    # Re-denoising from the kept PHA, no network pass.
    model = benchmark_model("mobilenet_v2", args.shared)
    ds = hw.explain(model, x1, layers=CASES["mobilenet_v2/stages"][1], device="cpu")
    pha, mf = ds.primary[0, -1].values, ds.fundamental[0, -1].values
    times = []
    params = [(t, m, b) for t in (0.3, 0.5, 0.7) for m in (31, 51, 71) for b in (71, 91, 111)]
    for t, m, b in params * 3:
        t0 = time.perf_counter()
        hw.holistic_map(pha, mf, t, m, b)
        times.append(time.perf_counter() - t0)
    result["redenoise_ms"] = {
        "median": round(statistics.median(times) * 1e3, 3),
        "max": round(max(times) * 1e3, 3),
        "target_ms": 10,
    }

    if not args.quick:
        layers = CASES["mobilenet_v2/stages"][1]
        x8 = _input(8)
        hw.explain(model, x8[:1], layers=layers, device="cpu")
        single, batch = [], []
        # The same work both ways, so only the machine's load tells them apart: alternated
        # (ABBA), six of each; the best of each, and the median ratio of adjacent pairs.
        for r in range(max(repeats, 6)):
            for way in ("single", "batch") if r % 2 == 0 else ("batch", "single"):
                if way == "single":
                    single.append(sum(holistic(model, x8[i : i + 1], layers) for i in range(8)))
                else:
                    batch.append(holistic(model, x8, layers))  # one call, the engine's grouping
        # The lower-memory way under a pass budget (saved tensors of the largest passes on
        # disk, the torch fusion, a bounded heap): its time and peak against the default on
        # MobileNetV2's four stages, each in processes of its own (the bounded heap is
        # process-wide), alternated.
        plain, on_disk = [], []
        for r in range(2):
            for way in ("plain", "disk") if r % 2 == 0 else ("disk", "plain"):
                kind = "time_holistic" if way == "plain" else "time_on_disk"
                times = plain if way == "plain" else on_disk
                times.append(_child_output(kind, "mobilenet_v2/stages", args.shared))
        peak_plain = _peak("holistic", "mobilenet_v2/stages", args.shared)
        peak_disk = _peak("on_disk", "mobilenet_v2/stages", args.shared)
        result["pass_memory_mobilenet_v2_stages"] = {
            "pass_memory_mb": PASS_MEMORY_MB,
            "default_s": round(min(plain), 3),
            "on_disk_s": round(min(on_disk), 3),
            "time_ratio": round(min(on_disk) / min(plain), 3),
            "default_peak_gb": round(peak_plain / 2**30, 3),
            "on_disk_peak_gb": round(peak_disk / 2**30, 3),
        }
        result["batch8_mobilenet_v2_stages"] = {
            "repeats": len(batch),
            "single_s_per_image": round(min(single) / 8, 3),
            "batch8_s_per_image": round(min(batch) / 8, 3),
            "ratio": round(min(batch) / min(single), 3),
            "median_pair_ratio": round(
                statistics.median(b / s for b, s in zip(batch, single, strict=True)), 3
            ),
        }
    # The two baselines with passes of their own, against the bare passes they need
    # (benchmarks/baselines.py runs these alone): Relevance-CAM <= 3 x one forward +
    # input-gradient pass, IIA <= 1.2 x its 11 bare forward + backward passes.
    # Imported here, not at the top: the peak-memory children import this file too, and
    # their floor should not carry zennit.
    from baselines import BASELINE_MODELS, baseline_cases

    result["relevancecam"], result["iia"] = {}, {}
    for name in BASELINE_MODELS:
        rcam, integrated = baseline_cases(benchmark_model(name, args.shared), x1, max(2, repeats))
        result["relevancecam"][f"{name}/stages"] = rcam
        result["iia"][f"{name}/stages"] = integrated
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
