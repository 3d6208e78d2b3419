"""The summary table of an evaluation, laid out like the paper's.

Rows are methods, columns Ins / Del / Over-all / ROAD / EPG, one block per layer; values
are x100, the mean over images with a 95 % confidence interval of the mean (Student's t,
``mean +- t_{0.975, n-1} * sd / sqrt(n)``). Images without boxes are left out of EPG
only; a centre-prior row gives EPG's baseline.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ..methods import LABELS
from ..outputs import has_first_line, markdown_mark, write_bytes

__all__ = [
    "HEADERS",
    "mean_interval",
    "summary_markdown",
    "summary_paths",
    "summary_table",
    "write_marked_markdown",
    "write_summary",
    "write_table_csv",
]

#: Column headings, and whether higher is better.
HEADERS = {
    "insertion": ("Ins", True),
    "deletion": ("Del", False),
    "overall": ("Over-all", True),
    "road": ("ROAD", True),
    "epg": ("EPG", True),
}
CENTRE_PRIOR = "centre prior"


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean x100 of the finite values, with the t interval of the mean: n, mean, low, high."""
    v = values[np.isfinite(values)] * 100.0
    n = v.size
    mean = float(v.mean()) if n else math.nan
    half = math.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half}


def summary_table(results: xr.Dataset, confidence: float = 0.95) -> pd.DataFrame:
    """Mean scores x100 with their confidence interval, per layer, method and metric.

    Args:
        results: a dataset from :func:`holiwidget.evaluate`.
        confidence: the interval's level.

    Returns:
        A long table: columns layer, method, metric, n, mean, low, high.
    """
    rows = []
    score = results["score"]
    for layer in results["layer"].values:
        for cam in results["cam"].values:
            for metric in results["metric"].values:
                values = score.sel(layer=layer, cam=cam, metric=metric).values
                rows.append(
                    {"layer": layer, "method": LABELS.get(cam, cam), "metric": metric}
                    | mean_interval(values, confidence)
                )
        if "epg" in results["metric"].values:
            prior = mean_interval(results["centre_prior_epg"].values, confidence)
            rows.append({"layer": layer, "method": CENTRE_PRIOR, "metric": "epg"} | prior)
    return pd.DataFrame(rows, columns=["layer", "method", "metric", "n", "mean", "low", "high"])


def _cell(row: pd.Series | None, best: bool) -> str:
    if row is None or row["n"] == 0:
        return ""
    text = f"{row['mean']:.1f}"
    if row["n"] > 1:
        text += f" ± {(row['high'] - row['low']) / 2:.1f}"
    return f"**{text}**" if best else text


def summary_markdown(results: xr.Dataset, table: pd.DataFrame | None = None) -> str:
    """The summary as markdown: one block per layer; the best mean of each column in bold.

    Args:
        results: a dataset from :func:`holiwidget.evaluate`.
        table: its :func:`summary_table` (computed when not given).
    """
    table = summary_table(results) if table is None else table
    protocol = json.loads(results.attrs.get("protocol", "{}"))
    metrics = [str(m) for m in results["metric"].values]
    n_images = results.sizes["image"]
    lines = [
        f"{n_images} images; scores x100, mean ± half-width of the 95% interval; "
        f"target: {protocol.get('target', '?')}; step {protocol.get('step', '?')} px; "
        f"ROAD seed {protocol.get('seed', '?')}. "
        + ", ".join(f"{HEADERS[m][0]} {'↑' if HEADERS[m][1] else '↓'}" for m in metrics)
        + ".",
        "",
    ]
    for layer in results["layer"].values:
        block = table[table["layer"] == layer]
        lines += [
            f"**{layer}**",
            "",
            "| Method | " + " | ".join(HEADERS[m][0] for m in metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        best = {}
        for m in metrics:
            scored = block[(block["metric"] == m) & (block["method"] != CENTRE_PRIOR)]
            means = scored["mean"].dropna()
            if len(means):
                best[m] = means.max() if HEADERS[m][1] else means.min()
        for method in dict.fromkeys(block["method"]):
            cells = []
            for m in metrics:
                hit = block[(block["method"] == method) & (block["metric"] == m)]
                row = hit.iloc[0] if len(hit) else None
                is_best = row is not None and method != CENTRE_PRIOR and row["mean"] == best.get(m)
                cells.append(_cell(row, is_best))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    if "epg" in metrics:
        scored = int((results["boxes"].values > 0).sum())
        lines.append(f"EPG over the {scored} image(s) with boxes.")
    return "\n".join(lines).rstrip() + "\n"


def summary_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """Where the summary of ``RESULTS.zarr`` goes: ``RESULTS-summary.md`` and ``.csv``."""
    out = Path(output)
    stem = out.with_name(out.stem + "-summary")
    return stem.with_suffix(".md"), stem.with_suffix(".csv")


def write_summary(results: xr.Dataset, output: str | os.PathLike) -> tuple[Path, Path]:
    """Save the summary beside the results as markdown and CSV.

    Args:
        results: a dataset from :func:`holiwidget.evaluate`.
        output: the results' path.

    Returns:
        The markdown and CSV paths.

    Raises:
        HoliwidgetError: a file under either name is not a summary holiwidget wrote (the
            markdown begins with :func:`holiwidget.outputs.markdown_mark`, the CSV with this
            table's header line); it is left alone.
    """
    md, csv = summary_paths(output)
    table = summary_table(results)
    write_marked_markdown(md, summary_markdown(results, table), "summary")
    write_table_csv(csv, table)
    return md, csv


def write_marked_markdown(path: Path, text: str, what: str) -> Path:
    """Write markdown whole, its first line holiwidget's mark; replaces only a file that
    begins with the same mark."""
    mark = markdown_mark(what)
    data = f"{mark}\n{text}".encode()
    return write_bytes(path, data, what, replaces=has_first_line(mark))


def write_table_csv(path: Path, table: pd.DataFrame) -> Path:
    """Write a table as CSV whole; replaces only a CSV with the same header line (a table
    without columns has none to know it by: then no existing file is replaced)."""
    text = table.to_csv(index=False, float_format="%.4f")
    header = text.split("\n", 1)[0]
    known = has_first_line(header) if header.strip() else None
    return write_bytes(path, text.encode(), "summary table", replaces=known)
