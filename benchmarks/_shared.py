"""The one setting every benchmark shares: where the data beside the repo lives."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_shared_argument(parser: argparse.ArgumentParser) -> None:
    """``--shared DIR``: $HOLIWIDGET_SHARED, else ../shared beside the repository."""
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("HOLIWIDGET_SHARED", REPO.parent / "shared")),
        help="the shared data folder (weights, ImageNet images)",
    )
