"""App memory benchmark: the peak RSS of an explorer kernel through an app-like session.

The session, in a fresh process (as a Voila kernel is): MobileNetV2 with the shared weights,
the explorer on 5 ImageNet images x its 4 holistic-stage layers x 5 methods; each image
is shown (its network passes), then the threshold, median and box sliders move and a pixel is
probed. Peak RSS (the kernel's high-water mark) must stay <= 1.5 GB: mybinder.org gives
about 2 GB. Prints one JSON object.

    python benchmarks/app_memory.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _shared import add_shared_argument

from holiwidget.cli.app import APP_PASS_MEMORY

# The floor no session goes below: the interpreter with torch and torchvision imported.
BASELINE = (
    "import json, resource, torch, torchvision; "
    "print(json.dumps({'gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}))"
)

SESSION = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
import holiwidget as hw
from holiwidget.explorer import Explorer

budget, weights, images = sys.argv[1], sys.argv[2], sys.argv[3:]
model = hw.load_model("mobilenet_v2", weights=weights)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
methods = ("holistic", "gradcam", "gradcampp", "layercam", "cameras")
budget = None if budget == "none" else float(budget)
explorer = Explorer(model, images=images, methods=methods, interactive=False, pass_memory=budget)
t0 = time.perf_counter()
keys = [k for k, _ in [(v, l) for l, v in explorer.image.options]][: len(images)]
for key in keys:
    explorer.image.value = key
    explorer._ensure_maps()
    assert explorer.last_error is None, explorer.last_error
    for t, m, b in ((0.3, 71, 111), (0.7, 31, 51), (0.5, 51, 91)):
        explorer.threshold.value, explorer.median.value, explorer.box.value = t, m, b
    explorer.probe_at(100, 120)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"after_model_gb": round(base, 3), "peak_rss_gb": round(peak, 3),
                  "session_s": round(time.perf_counter() - t0, 1), "images": len(keys)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_argument(parser)
    args = parser.parse_args()
    weights = args.shared / "weights" / "mobilenet_v2-imagenet.pth"
    images = sorted((args.shared / "data" / "imagenet-val-1300" / "images").glob("*.JPEG"))[:5]
    runs = {}
    for budget in ("none", str(APP_PASS_MEMORY)):
        done = subprocess.run(
            [sys.executable, "-c", SESSION, budget, str(weights), *map(str, images)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        runs[f"pass_memory_{budget}"] = json.loads(done.stdout.strip().splitlines()[-1])
    base = subprocess.run(
        [sys.executable, "-c", BASELINE], capture_output=True, text=True, check=True
    )
    print(
        json.dumps(
            {
                "session": "5 images x 4 layers x 5 methods, 3 slider settings and a probe each",
                "runs": runs,
                "import_torch_torchvision_gb": json.loads(base.stdout)["gb"],
                "target_gb": 1.5,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
