"""A sweep's summary files beside its results: markdown tables, CSV, PNG heatmaps."""

from __future__ import annotations

import io
import os
from pathlib import Path

import xarray as xr

from ..evaluation.summary import summary_paths, write_marked_markdown, write_table_csv
from ..outputs import figure_mark, is_marked_figure, write_bytes
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
    markdown, the paired differences as CSV, the heatmaps as PNG. A file under one of
    these names is replaced only if holiwidget wrote it (the markdown's first-line mark, the
    CSV's header line, the PNG's metadata mark), else refused and left alone."""
    md, csv, png = sweep_summary_paths(output)
    write_marked_markdown(md, sweep_summary_markdown(results), "summary")
    write_table_csv(csv, paired_differences(results))
    buffer = io.BytesIO()
    plot_sensitivity(results).savefig(buffer, format="png", dpi=110, **figure_mark("png"))
    write_bytes(png, buffer.getvalue(), "figure", replaces=is_marked_figure)
    return md, csv, png
