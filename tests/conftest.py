"""Shared fixtures: tiny CNNs, seeded torchvision models, and the data beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

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


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)
