"""What every benchmark shares: where the data beside the repo lives, and its models."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import holiwidget as hw

REPO = Path(__file__).resolve().parents[1]


def add_shared_argument(parser: argparse.ArgumentParser) -> None:
    """``--shared DIR``: $HOLIWIDGET_SHARED, else ../shared beside the repository."""
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("HOLIWIDGET_SHARED", REPO.parent / "shared")),
        help="the shared data folder (weights, ImageNet images)",
    )


def benchmark_model(name: str, shared: Path) -> torch.nn.Module:
    """MobileNetV2 with the shared ImageNet weights; any other model with seeded random ones."""
    if name == "mobilenet_v2":
        return hw.load_model(name, weights=shared / "weights" / "mobilenet_v2-imagenet.pth")
    torch.manual_seed(0)
    return hw.load_model(name, weights=None)
