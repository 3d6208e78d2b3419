"""Metrics benchmark, one run, one JSON object on stdout.

(a) Insertion + Deletion of one map (224 x 224, 224 pixels per step: 2 x 225 images) on
    MobileNetV2 against the bare batched forward passes of the very same perturbed images
    (built beforehand; only the forward calls are timed, same batch size and memory
    format). Target: ratio <= 1.2.
(b) ROAD (percentiles 10..90, both orders, noise 0.01) per image: holiwidget against
    pytorch-grad-cam's ROADCombined on the same image, map, model and target, interleaved.
    Target: speed-up >= 5. The one-off plan of the batched solver (per image size, cached
    for the process) is timed separately.

Wall-clock and process CPU times are both reported; the minimum over repeats is used.
On a loaded machine the forward passes of separate runs differ by more than the overhead
measured, so (a) also reports ``ratio_to_own_forwards``: the call's time over the time
spent inside its own forward passes (hooks on the model), which load drift cannot skew.

    python benchmarks/metrics.py [--repeats 3] [--threads 1] [--images 2] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from _shared import add_shared_argument

import holiwidget as hw
from holiwidget.images import prepare_images
from holiwidget.metrics import causal, road
from holiwidget.metrics._common import evaluation
from holiwidget.metrics.road import dissection


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _perturbed(x: torch.Tensor, cam: np.ndarray, step: int) -> torch.Tensor:
    """The 2 x (K + 1) insertion and deletion images of one map, as insertion_deletion
    builds them."""
    h, w = x.shape[-2:]
    ranks = causal.ranking(torch.from_numpy(cam)[None])[0]
    steps = -(-h * w // step)
    changed = torch.clamp(torch.arange(steps + 1) * step, max=h * w)
    done = (ranks[None] < changed[:, None]).view(-1, 1, h, w)
    xd = x[None].contiguous(memory_format=torch.channels_last)
    blurred = causal.blur(xd)
    ins = torch.where(done, xd, blurred)
    dele = torch.where(done, torch.zeros(()), xd)
    return torch.cat([ins, dele]).contiguous(memory_format=torch.channels_last)


def _bare(model: torch.nn.Module, images: torch.Tensor, batch: int) -> tuple[float, float]:
    """Only the forward calls are timed, each on a freshly copied (cache-warm) batch."""
    wall = cpu = 0.0
    with evaluation(model, "cpu", batch) as ev:
        for i in range(0, images.shape[0], batch):
            x = images[i : i + batch].clone(memory_format=torch.channels_last)
            start = _clock()
            ev.model(x)
            w, c = _since(start)
            wall, cpu = wall + w, cpu + c
    return wall, cpu


class _ForwardTimer:
    """Wall time spent inside the model's forward calls (hooks on the top module)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.total = 0.0
        self._start = 0.0
        self._handles = [
            model.register_forward_pre_hook(self._pre),
            model.register_forward_hook(self._post),
        ]

    def _pre(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: object) -> None:
        self.total += time.perf_counter() - self._start

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def bench_causal(model, x, cam, target, repeats: int, batch: int) -> dict:
    images = _perturbed(x, cam, 224)
    ours, bare, inside = [], [], []
    causal.insertion_deletion(model, x, cam, target, step=2240, batch_size=batch, device="cpu")
    res = None
    for rep in range(repeats):
        if rep % 2:  # alternate the order: drifting machine load hits both alike
            bare.append(_bare(model, images, batch))
        timer = _ForwardTimer(model)
        start = _clock()
        res = causal.insertion_deletion(
            model, x, cam, target, step=224, batch_size=batch, device="cpu"
        )
        ours.append(_since(start))
        timer.remove()
        inside.append(ours[-1][0] / timer.total)
        if not rep % 2:
            bare.append(_bare(model, images, batch))
    wall = min(o[0] for o in ours) / min(b[0] for b in bare)
    cpu = min(o[1] for o in ours) / min(b[1] for b in bare)
    return {
        "images": int(images.shape[0]),
        "batch_size": batch,
        "ours_s": round(min(o[0] for o in ours), 3),
        "bare_forward_s": round(min(b[0] for b in bare), 3),
        "ratio": round(wall, 3),
        "ours_cpu_s": round(min(o[1] for o in ours), 3),
        "bare_forward_cpu_s": round(min(b[1] for b in bare), 3),
        "ratio_cpu": round(cpu, 3),
        "ratio_to_own_forwards": round(min(inside), 3),
        "target_ratio_max": 1.2,
        "insertion_auc": round(float(res.insertion.auc[0]), 5),
        "deletion_auc": round(float(res.deletion.auc[0]), 5),
    }


def bench_road(model, xs, cams, targets, repeats: int) -> dict:
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    start = _clock()
    dissection.plan(*xs.shape[-2:])
    plan = _since(start)
    ours, theirs, agree = [], [], []
    for rep in range(repeats):
        o_wall = o_cpu = t_wall = t_cpu = 0.0
        for x, cam, tg in zip(xs, cams, targets, strict=True):
            start = _clock()
            mine = road.road_scores(model, x, cam, int(tg), noise=0.01, seed=rep, device="cpu")
            w, c = _since(start)
            o_wall, o_cpu = o_wall + w, o_cpu + c
            start = _clock()
            gc = ROADCombined()(x[None], cam[None], [ClassifierOutputSoftmaxTarget(int(tg))], model)
            w, c = _since(start)
            t_wall, t_cpu = t_wall + w, t_cpu + c
            agree.append(abs(float(mine.combined[0]) - float(gc[0])))
        ours.append((o_wall / len(xs), o_cpu / len(xs)))
        theirs.append((t_wall / len(xs), t_cpu / len(xs)))
    return {
        "images": len(xs),
        "ours_s_per_image": round(min(o[0] for o in ours), 3),
        "gradcam_s_per_image": round(min(t[0] for t in theirs), 3),
        "speedup": round(min(t[0] for t in theirs) / min(o[0] for o in ours), 2),
        "ours_cpu_s_per_image": round(min(o[1] for o in ours), 3),
        "gradcam_cpu_s_per_image": round(min(t[1] for t in theirs), 3),
        "speedup_cpu": round(min(t[1] for t in theirs) / min(o[1] for o in ours), 2),
        "plan_s_once": round(plan[0], 3),
        "target_speedup_min": 5,
        "max_abs_combined_difference_with_noise": round(max(agree), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_shared_argument(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--images", type=int, default=2, help="images for the ROAD timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--parts", default="causal,road", help="comma-separated: causal, road (default both)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = hw.load_model(
        "mobilenet_v2", weights=args.shared / "weights" / "mobilenet_v2-imagenet.pth"
    )
    files = sorted((args.shared / "data" / "imagenet-val-1300" / "images").glob("*.JPEG"))
    files = files[: max(1, args.images)]
    xs = prepare_images(files).tensor
    ds = hw.explain(model, xs, layers=["features.18"], methods=["gradcam"], device="cpu")
    cams = ds.attribution.values[:, 0, 0]
    targets = ds.target.values
    parts = {p.strip() for p in args.parts.split(",")}
    result: dict = {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": "cpu",
        "model": "mobilenet_v2",
        "map": "gradcam features.18",
    }
    if "causal" in parts:
        result["insertion_deletion"] = bench_causal(
            model, xs[0], cams[0], int(targets[0]), args.repeats, args.batch_size
        )
    if "road" in parts:
        result["road"] = bench_road(model, xs, cams, targets, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
