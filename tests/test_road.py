"""ROAD: the masks and the imputation against pytorch-grad-cam, the two solvers against each
other, and the scores of hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import holiwidget as hw
from holiwidget.images import prepare_images
from holiwidget.metrics import impute, removal_masks, road_combined, road_scores
from holiwidget.metrics.road.multifrontal import solve_masked
from holiwidget.metrics.road.system import impute_direct


def test_road_perfect_map_beats_its_inverse(region_setup) -> None:
    model, x, bump = region_setup
    res = road_scores(model, x, np.stack([bump, 1 - bump]), 0, noise=0.0, device="cpu")
    assert res.morf.shape == (2, 9) and res.lerf.shape == (2, 9)
    np.testing.assert_allclose(res.removed_morf[0], np.arange(9, 0, -1) / 10, atol=0.01)
    assert res.combined[0] > 0.3 and res.combined[1] < -0.3
    # removing the region (MoRF of the right map) collapses the class probability
    assert res.morf[0].max() < -0.5
    noisy = road_combined(model, x, np.stack([bump, 1 - bump]), 0, device="cpu")
    np.testing.assert_allclose(noisy, res.combined, atol=0.02)


def test_road_noise_is_seeded(region_setup) -> None:
    model, x, bump = region_setup
    a = road_scores(model, x, bump, 0, seed=3, device="cpu", percentiles=(50,))
    b = road_scores(model, x, bump, 0, seed=3, device="cpu", percentiles=(50,))
    c = road_scores(model, x, bump, 0, seed=4, device="cpu", percentiles=(50,))
    np.testing.assert_array_equal(a.morf, b.morf)
    assert not np.array_equal(a.morf, c.morf)


def test_batched_solver_equals_sparse_direct_solve() -> None:
    rng = np.random.default_rng(0)
    for h, w in [(1, 7), (9, 13), (40, 31)]:
        x = rng.standard_normal((3, h, w))
        yy, xx = np.mgrid[:h, :w]
        masks = [
            rng.random((h, w)) < 0.5,
            (yy - h / 2) ** 2 / h**2 + (xx - w / 3) ** 2 / w**2 < 0.1,
            yy < h // 2,
        ]
        masks = [m if not m.all() else m & (yy > 0) for m in masks]
        got = solve_masked(torch.from_numpy(x), torch.from_numpy(np.stack(masks)))
        for k, m in enumerate(masks):
            np.testing.assert_allclose(got[k].numpy(), impute_direct(x, m), atol=1e-10)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # inside grad-cam
def test_imputation_and_masks_match_pytorch_grad_cam() -> None:
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(1)
    cam = rng.random((24, 20)).astype(np.float32)
    cam[:5] = 0.0  # ties
    morf, lerf = removal_masks(cam, (10, 30, 50, 90))
    for k, p in enumerate((10, 30, 50, 90)):
        for ours, cls in ((morf, RemoveMostRelevantFirst), (lerf, RemoveLeastRelevantFirst)):
            kept = cls(p, lambda img, mask: mask)(None, torch.from_numpy(cam))
            np.testing.assert_array_equal(ours[k], kept.numpy() == 0)
    img = torch.from_numpy(rng.standard_normal((3, 24, 20)).astype(np.float32))
    theirs = NoisyLinearImputer(noise=0.0)(img, torch.from_numpy((~morf[1]).astype(np.float32)))
    for solver in ("nested", "direct"):
        ours = impute(img, morf[1], noise=0.0, solver=solver)[0]
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def mobilenet_case(mobilenet_weights, imagenet_images):
    torch.set_num_threads(2)
    model = hw.load_model("mobilenet_v2", weights=mobilenet_weights)
    x = prepare_images([imagenet_images[0]]).tensor
    ds = hw.explain(model, x, layers=["features.18"], methods=["gradcam"], device="cpu")
    cam = ds.attribution.values[0, 0, 0]
    # pytorch-grad-cam's solver fails when a threshold equals the map's minimum
    assert (cam == cam.min()).mean() < 0.05
    return model, x, cam, int(ds.target.values[0])


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # inside grad-cam
def test_road_equals_pytorch_grad_cam_without_noise(mobilenet_case, monkeypatch) -> None:
    from pytorch_grad_cam.metrics import road as gc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, cam, target = mobilenet_case
    monkeypatch.setattr(
        gc_road.NoisyLinearImputer.__init__, "__defaults__", (0.0, gc_road.neighbors_weights)
    )
    theirs = gc_road.ROADCombined()(x, cam[None], [ClassifierOutputSoftmaxTarget(target)], model)
    ours = road_combined(model, x, cam, target, noise=0.0, device="cpu")
    assert abs(float(ours[0]) - float(theirs[0])) < 1e-5


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # inside grad-cam
def test_road_with_noise_is_within_pytorch_grad_cams_spread(mobilenet_case) -> None:
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, cam, target = mobilenet_case
    percentiles = [30, 60, 90]
    theirs, ours = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        metric = ROADCombined(percentiles=percentiles)
        theirs.append(
            float(metric(x, cam[None], [ClassifierOutputSoftmaxTarget(target)], model)[0])
        )
        ours.append(
            float(
                road_combined(
                    model, x, cam, target, percentiles=percentiles, seed=seed, device="cpu"
                )[0]
            )
        )
    spread = max(np.std(theirs), np.std(ours), 1e-3)
    assert abs(np.mean(ours) - np.mean(theirs)) < 4 * spread
