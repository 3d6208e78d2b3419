"""A sweep's tables: the paper's layout (rows b, columns m; mean x100) and paired differences.

The paper's supplement gives means only. Here every setting also gets its mean paired
difference from the baseline (the default 0.5 / 51 / 91 on the baseline pyramid, the
paper's eight scales when swept) over the same images, with a 95 % t interval::

    d_i  = score_i(setting) - score_i(baseline)       per image, x100
    mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)       significant when 0 is outside

Images where either score is undefined (EPG without boxes) are left out of that pair.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import HoliwidgetError
from ..evaluation.summary import HEADERS, mean_interval
from ..methods.holistic import Denoising

__all__ = ["paired_differences", "sensitivity_table", "sweep_summary_markdown"]

_BY = ("kernels", "threshold", "scales", "extras")


def _baseline(results: xr.Dataset) -> xr.DataArray:
    """(image, layer, metric) scores of the baseline setting."""
    base = json.loads(results.attrs["baseline"])
    return results["extra_score"].sel(scales=base["scales"], setting=base["setting"])


def _reference(results: xr.Dataset) -> dict:
    return json.loads(results.attrs["reference"])


def _difference(values: np.ndarray, baseline: np.ndarray, confidence: float) -> dict:
    both = np.isfinite(values) & np.isfinite(baseline)
    stats = mean_interval(values[both] - baseline[both], confidence)
    low, high = stats["low"], stats["high"]
    return {
        "n": stats["n"],
        "mean": mean_interval(values, confidence)["mean"],
        "difference": stats["mean"],
        "low": low,
        "high": high,
        "significant": bool(np.isfinite(low) and (low > 0 or high < 0)),
    }


def paired_differences(results: xr.Dataset, confidence: float = 0.95) -> pd.DataFrame:
    """Every computed setting against the baseline, per layer and metric (x100).

    Returns:
        A long table: layer, metric, scales, threshold, median, box, setting (``grid`` or
        an extra setting's name), n, mean, difference, low, high, significant.
    """
    rows = []
    base = _baseline(results)
    computed = results["computed"]
    for layer in results["layer"].values:
        for metric in results["metric"].values:
            b = base.sel(layer=layer, metric=metric).values
            grid = results["score"].sel(layer=layer, metric=metric)
            for sc in results["scales"].values:
                for t in results["threshold"].values:
                    for m in results["median"].values:
                        for bx in results["box"].values:
                            at = {"scales": sc, "threshold": t, "median": m, "box": bx}
                            if not bool(computed.sel(at)):
                                continue
                            values = grid.sel(at).values
                            rows.append(
                                {"layer": layer, "metric": metric, **at, "setting": "grid"}
                                | _difference(values, b, confidence)
                            )
                for name in results["setting"].values:
                    cell = results["extra_score"].sel(
                        layer=layer, metric=metric, scales=sc, setting=name
                    )
                    kernels = (
                        results["setting_median"].sel(setting=name),
                        results["setting_box"].sel(setting=name),
                    )
                    rows.append(
                        {
                            "layer": layer,
                            "metric": metric,
                            "scales": sc,
                            "threshold": np.nan if name == "off" else Denoising.threshold,
                            "median": int(kernels[0]),
                            "box": int(kernels[1]),
                            "setting": name,
                        }
                        | _difference(cell.values, b, confidence)
                    )
    return pd.DataFrame(rows)


def sensitivity_table(
    results: xr.Dataset,
    layer: str,
    metric: str,
    *,
    by: str = "kernels",
    threshold: float | None = None,
    scales: str | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One of the paper's tables from a sweep (mean over images, x100).

    Args:
        results: a dataset from :func:`holiwidget.sweep`.
        layer, metric: which block.
        by: ``"kernels"``: rows b, columns m (the paper's Tables 2-5) at ``threshold`` and
            ``scales`` (default: the reference ones). ``"threshold"``, ``"scales"``: one row
            per tau or pyramid at the reference kernels; ``"extras"``: the extra settings
            (default, off, the filter ablation) on the baseline pyramid. These three carry
            the mean, the paired difference from the baseline and its interval.
        threshold, scales: the plane of the ``kernels`` table.
        confidence: the intervals' level.
    """
    if by not in _BY:
        raise HoliwidgetError(f"by must be one of {', '.join(_BY)}, got {by!r}")
    for name, value in (("layer", layer), ("metric", metric)):
        if value not in results[name].values:
            choices = ", ".join(map(str, results[name].values))
            raise HoliwidgetError(f"{name} {value!r} is not in the sweep; choose from {choices}")
    ref = _reference(results)
    threshold = ref["threshold"] if threshold is None else threshold
    scales = ref["scales"] if scales is None else scales
    score = results["score"].sel(layer=layer, metric=metric)
    if by == "kernels":
        plane = score.sel(threshold=threshold, scales=scales)
        means = plane.mean("image", skipna=True).values * 100  # (median, box)
        table = pd.DataFrame(
            means.T,
            index=pd.Index(results["box"].values, name="b"),
            columns=pd.Index(results["median"].values, name="m"),
        )
        return table.where(results["computed"].sel(threshold=threshold, scales=scales).values.T)
    diffs = paired_differences(results.sel(layer=[layer], metric=[metric]), confidence)
    cols = ["n", "mean", "difference", "low", "high", "significant"]
    if by == "extras":
        rows = diffs[(diffs["setting"] != "grid") & (diffs["scales"] == scales)]
        return rows.set_index("setting")[cols]
    rows = diffs[
        (diffs["setting"] == "grid")
        & (diffs["median"] == ref["median"])
        & (diffs["box"] == ref["box"])
    ]
    if by == "threshold":
        return rows[rows["scales"] == scales].set_index("threshold")[cols]
    return rows[rows["threshold"] == threshold].set_index("scales")[cols]


def _signed(row: pd.Series) -> str:
    if not np.isfinite(row["difference"]):
        return ""
    half = (row["high"] - row["low"]) / 2
    text = (
        f"{row['difference']:+.2f} ± {half:.2f}"
        if np.isfinite(half)
        else f"{row['difference']:+.2f}"
    )
    return f"**{text}**" if row["significant"] else text


def sweep_summary_markdown(results: xr.Dataset, confidence: float = 0.95) -> str:
    """The sweep's tables as markdown (see the module's notes)."""
    protocol = json.loads(results.attrs["protocol"])
    base = json.loads(results.attrs["baseline"])
    diffs = paired_differences(results, confidence)
    n = results.sizes["image"]
    lines = [
        f"{n} images; {protocol['model']}; target: {protocol['target']}; step "
        f"{protocol['step']} px; design: {protocol['design']}. Scores x100 (mean over "
        f"images). Paired differences from the default ({Denoising.threshold} / "
        f"{Denoising.median} / {Denoising.box}, scales "
        f"{base['scales']}): mean ± half-width of the {confidence:.0%} interval, in bold "
        "where the interval excludes 0. In the m x b tables: bold = best cell, * = differs "
        "significantly from the default, (d) = the default.",
        "",
    ]
    ref = _reference(results)
    for layer in results["layer"].values:
        for metric in results["metric"].values:
            higher = HEADERS[metric][1]
            label = f"{HEADERS[metric][0]} {'↑' if higher else '↓'}"
            lines += [f"### {layer}, {label}", ""]
            table = sensitivity_table(results, layer, metric)
            block = diffs[
                (diffs["layer"] == layer)
                & (diffs["metric"] == metric)
                & (diffs["setting"] == "grid")
                & (diffs["threshold"] == ref["threshold"])
                & (diffs["scales"] == ref["scales"])
            ].set_index(["median", "box"])
            best = np.nanmax(table.values) if higher else np.nanmin(table.values)
            lines.append("| b \\ m | " + " | ".join(str(m) for m in table.columns) + " |")
            lines.append("|---|" + "---:|" * len(table.columns))
            for b in table.index:
                cells = []
                for m in table.columns:
                    v = table.loc[b, m]
                    if not np.isfinite(v):
                        cells.append("")
                        continue
                    text = f"{v:.2f}"
                    if v == best:
                        text = f"**{text}**"
                    if (m, b) in block.index and block.loc[(m, b), "significant"]:
                        text += " *"
                    if (m, b, ref["threshold"]) == (
                        Denoising.median,
                        Denoising.box,
                        Denoising.threshold,
                    ):
                        text += " (d)"
                    cells.append(text)
                lines.append(f"| {b} | " + " | ".join(cells) + " |")
            lines.append("")
            for by, title in (("threshold", "tau"), ("scales", "scales"), ("extras", "setting")):
                rows = sensitivity_table(results, layer, metric, by=by)
                if by != "extras" and len(rows) < 2:
                    continue
                lines += [f"| {title} | mean | vs default |", "|---|---:|---:|"]
                for key, row in rows.iterrows():
                    lines.append(f"| {key} | {row['mean']:.2f} | {_signed(row)} |")
                lines.append("")
    better = diffs[
        diffs["significant"]
        & (diffs["difference"] * np.where([HEADERS[m][1] for m in diffs["metric"]], 1.0, -1.0) > 0)
    ]
    lines.append(
        f"Settings significantly better than the default: {len(better)} of "
        f"{int((diffs['setting'] != 'default').sum())} (layer x metric x setting)."
    )
    return "\n".join(lines).rstrip() + "\n"
