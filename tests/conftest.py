"""Shared fixtures: tiny CNNs, seeded torchvision models, and the data beside the repo."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import torch
import xarray as xr
from torch import nn

import holiwidget

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: $HOLIWIDGET_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("HOLIWIDGET_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; set HOLIWIDGET_SHARED")
    return path


@pytest.fixture(scope="session")
def mobilenet_weights(shared: Path) -> Path:
    return shared / "weights" / "mobilenet_v2-imagenet.pth"


@pytest.fixture(scope="session")
def imagenet_images(shared: Path) -> list[Path]:
    return sorted((shared / "data" / "imagenet-val-1300" / "images").glob("*.JPEG"))


class TinyCNN(nn.Module):
    """Three conv stages with in-place ReLUs and a linear head: fast, and like a real CNN."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.stage3 = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.head(torch.flatten(self.pool(x), 1))


@pytest.fixture
def tiny() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


# A model that reads one region, for the metrics' tests (Insertion, Deletion, ROAD).
SIDE = 32
REGION = (8, 16, 8, 16)  # rows r0:r1, cols c0:c1


class RegionModel(nn.Module):
    """Two classes; logit_0 = 4 * mean(x over REGION) - 4, logit_1 = 0.

    So p_0 = sigmoid(4 m - 4): 0.98 with the region at 2.0, 0.018 with it at 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0, r1, c0, c1 = REGION
        logit = self.gain * x[:, :, r0:r1, c0:c1].mean(dim=(1, 2, 3)) - 4.0
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


@pytest.fixture
def region_setup() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    """The model, an image with the region at 2.0 (background 0), and a perfect map: a
    Gaussian bump on the region (no large ties)."""
    x = torch.zeros(3, SIDE, SIDE)
    r0, r1, c0, c1 = REGION
    x[:, r0:r1, c0:c1] = 2.0
    yy, xx = np.mgrid[:SIDE, :SIDE]
    cy, cx = (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2)).astype(np.float32)
    bump += 1e-6 * np.arange(SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE) / SIDE**2
    return RegionModel(), x, bump


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


# --------------------------------------------------------------------------------------
# Real models and images shared by the engine, capture, layer and fusion tests

#: The single-scale methods (compared with pytorch-grad-cam).
BASE_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "eigencam")


def rel_diff(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max absolute difference relative to the range of ``theirs``."""
    span = float(np.ptp(theirs))
    return float(np.abs(ours - theirs).max()) / (span if span > 0 else 1.0)


def minmax_np(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def hook_count(model: nn.Module) -> int:
    """Every module hook and every parameter tensor hook on the model."""
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            total += len(getattr(m, attr))
    for p in model.parameters():
        total += len(p._backward_hooks or {})
    return total


def labels(shared: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(shared / "data" / "imagenet-val-1300" / "annotations.csv") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["image"], int(row["label"]))
    return out


@pytest.fixture(scope="module")
def three(imagenet_images, shared) -> tuple[torch.Tensor, list[int]]:
    """Three real ImageNet images (normalised, 224x224) and their ground-truth classes."""
    lab = labels(shared)
    paths = imagenet_images[:3]
    x = torch.cat([ref.preprocess(p) for p in paths])
    targets = [lab[p.name] for p in paths]
    assert len(set(targets)) == 3
    return x, targets


@pytest.fixture(scope="module")
def mobilenet(mobilenet_weights) -> nn.Module:
    return holiwidget.load_model("mobilenet_v2", weights=mobilenet_weights)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return holiwidget.load_model("resnet50", weights=None)


@pytest.fixture(scope="module")
def mobilenet_singles(mobilenet, three) -> list[xr.Dataset]:
    """Each of the three images explained alone: features.18, every method."""
    torch.set_num_threads(2)
    x, targets = three
    return [
        holiwidget.explain(
            mobilenet, x[i : i + 1], layers="features.18", methods="all", target=targets[i]
        )
        for i in range(3)
    ]


def tiny_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (96, 80, 3), dtype=np.uint8)
