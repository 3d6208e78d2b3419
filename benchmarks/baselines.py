"""Baselines benchmark: Relevance-CAM and IIA against the bare passes they need, in one run.

- Relevance-CAM (the four holistic stages in one call) against one plain forward pass plus
  the backward pass of the target logit to the input, at 224 x 224 (target: <= 3x).
- IIA (the four stages, the 11 scaled inputs in one batch) against the 11 bare forward and
  backward passes (one batch of 11, no hooks): down to the input, and down to the shallowest
  explained layer only (the floor: what no implementation can avoid; target: <= 1.2x).

Each case runs its contenders alternately; the best of the repeats is kept. Prints one JSON
object.

    python benchmarks/baselines.py [--quick] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from _shared import add_shared_argument, benchmark_model

import holiwidget as hw
from holiwidget.capture import prepared
from holiwidget.layers import resolve_layers
from holiwidget.methods.iia import IIA_STEPS, iia
from holiwidget.methods.relevance import relevancecam

BASELINE_MODELS = ("mobilenet_v2", "resnet50")


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def input_gradient(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor) -> None:
    """One plain forward pass and the backward pass of the target logits to the input."""
    with prepared(model), torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        score = model(leaf).gather(1, targets.view(-1, 1)).sum()
        torch.autograd.grad(score, leaf)


def cut_gradient(
    model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, shallowest: str
) -> None:
    """Forward, and backward only down to the shallowest layer (one hook cuts the graph)."""
    module = dict(model.named_modules())[shallowest]
    leaf: dict[str, torch.Tensor] = {}

    def cut(mod: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        leaf["t"] = out.detach().requires_grad_(True)
        return leaf["t"]

    handle = module.register_forward_hook(cut)
    try:
        with prepared(model), torch.enable_grad():
            score = model(x).gather(1, targets.view(-1, 1)).sum()
            torch.autograd.grad(score, leaf["t"])
    finally:
        handle.remove()


def _scaled(x: torch.Tensor) -> torch.Tensor:
    """The 11 scaled inputs as :func:`iia` builds them (same values, same memory format)."""
    scales = torch.arange(IIA_STEPS + 1, dtype=x.dtype) / IIA_STEPS
    return (x.unsqueeze(1) * scales.view(1, -1, 1, 1, 1)).flatten(0, 1)


def _best(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in contenders.values():  # warm-up: kernels, allocator
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(_seconds(contenders[name]))
    return {name: min(t) for name, t in times.items()}


def baseline_cases(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> tuple[dict, dict]:
    """Relevance-CAM and IIA of one model's holistic stages, each against its baselines."""
    layers = resolve_layers(model, "auto")
    with torch.no_grad():
        targets = model(x).argmax(1)
    best = _best(
        {
            "relevancecam": lambda: relevancecam(model, layers, x, targets),
            "input_gradient": lambda: input_gradient(model, x, targets),
        },
        repeats,
    )
    rcam = {
        "layers": list(layers),
        "relevancecam_s": round(best["relevancecam"], 4),
        "forward_input_gradient_s": round(best["input_gradient"], 4),
        "ratio": round(best["relevancecam"] / best["input_gradient"], 3),
        "target_ratio": 3.0,
    }
    xs = _scaled(x)
    ts = targets.repeat(IIA_STEPS + 1)
    shallowest = next(iter(layers))
    best = _best(
        {
            "iia": lambda: iia(model, layers, x, targets),
            "input_gradient": lambda: input_gradient(model, xs, ts),
            "floor": lambda: cut_gradient(model, xs, ts, shallowest),
        },
        repeats,
    )
    integrated = {
        "layers": list(layers),
        "iia_s": round(best["iia"], 4),
        "passes_to_input_s": round(best["input_gradient"], 4),
        "passes_to_shallowest_s": round(best["floor"], 4),
        "ratio_to_input": round(best["iia"] / best["input_gradient"], 3),
        "ratio_to_floor": round(best["iia"] / best["floor"], 3),
        "target_ratio": 1.2,
    }
    return rcam, integrated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_shared_argument(parser)
    parser.add_argument("--quick", action="store_true", help="two repeats instead of five")
    args = parser.parse_args()
    torch.set_num_threads(2)
    repeats = 2 if args.quick else 5
    x = hw.images.prepare_images(["chelsea"]).tensor
    result: dict = {
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "input": list(x.shape),
        "repeats": repeats,
        "relevancecam": {},
        "iia": {},
    }
    for name in BASELINE_MODELS:
        rcam, integrated = baseline_cases(benchmark_model(name, args.shared), x, repeats)
        result["relevancecam"][f"{name}/stages"] = rcam
        result["iia"][f"{name}/stages"] = integrated
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
