"""The sanity check: cascading model-parameter randomisation and its plot."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

import holiwidget as hw
from holiwidget.evaluation import cascade_groups, cascading_randomization, plot_sanity


def test_cascading_randomization_destroys_correlation(tiny) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    ds = cascading_randomization(
        tiny, x, layers=["stage2", "stage3"], methods=["gradcam", "layercam"], device="cpu"
    )
    assert ds.spearman.dims == ("step", "cam", "layer") and ds.ssim.dims == ds.spearman.dims
    assert list(ds.randomized.values) == [
        "",
        "head",
        "stage3.0",
        "stage2.1",
        "stage2.0",
        "stage1.0",
    ]
    np.testing.assert_allclose(ds.spearman.sel(step=0), 1.0)
    np.testing.assert_allclose(ds.ssim.sel(step=0), 1.0)
    last = ds.isel(step=-1)
    assert (last.spearman < 0.7).all() and (last.ssim < 0.7).all()
    # the caller's model is untouched
    for k, v in tiny.state_dict().items():
        torch.testing.assert_close(v, before[k])
    fig = plot_sanity(ds)
    assert isinstance(fig, Figure) and len(fig.axes) == 4


def test_cascade_groups_of_mobilenet() -> None:
    model = hw.load_model("mobilenet_v2", weights=None)
    groups = cascade_groups(model)
    assert [g[0] for g in groups[:3]] == ["classifier.1", "features.18", "features.17"]
    assert groups[-1][0] == "features.0" and len(groups) == 20
