"""A sweep's summary files beside its results: markdown tables, CSV, PNG heatmaps."""

from __future__ import annotations

import io
import os
from pathlib import Path

import xarray as xr

from ..evaluation.summary import summary_paths
from ..outputs import write_bytes
from .plots import plot_sensitivity
from .summary import paired_differences, sweep_summary_markdown

__all__ = ["sweep_summary_paths", "write_sweep_summary"]


def sweep_summary_paths(output: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Where a sweep's summary goes: ``SWEEP-summary.md``, ``.csv`` and ``SWEEP-heatmaps.png``."""
    md, csv = summary_paths(output)
    out = Path(output)
    return md, csv, out.with_name(out.stem + "-heatmaps.png")


def write_sweep_summary(results: xr.Dataset, output: str | os.PathLike) -> tuple[Path, ...]:
    """Save the summary beside the results (each file written whole): the tables as
    markdown, the paired differences as CSV, the heatmaps as PNG."""
    md, csv, png = sweep_summary_paths(output)
    write_bytes(md, sweep_summary_markdown(results).encode())
    table = paired_differences(results)
    write_bytes(csv, table.to_csv(index=False, float_format="%.4f").encode())
    buffer = io.BytesIO()
    plot_sensitivity(results).savefig(buffer, format="png", dpi=110)
    write_bytes(png, buffer.getvalue())
    return md, csv, png
