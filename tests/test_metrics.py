"""Metrics: hand-computable cases, cross-checks against pytorch-grad-cam, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import holiwidget as hw
from holiwidget import HoliwidgetError
from holiwidget.images import prepare_images
from holiwidget.metrics import (
    auc,
    box_mask,
    cascade_groups,
    cascading_randomization,
    centre_prior,
    centre_prior_epg,
    deletion,
    energy_pointing_game,
    impute,
    insertion,
    insertion_deletion,
    overall,
    plot_sanity,
    read_annotations,
    removal_masks,
    road_combined,
    road_scores,
)
from holiwidget.metrics._imputation import impute_direct
from holiwidget.metrics._nested import solve_masked
from holiwidget.metrics.causal import blur, ranking

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


# ----------------------------------------------------------------------------- AUC, curves


def test_auc_of_known_curves() -> None:
    assert auc(np.linspace(0, 1, 225)) == pytest.approx(0.5)
    assert auc(np.ones(11)) == pytest.approx(1.0)
    assert auc([0.0, 1.0]) == pytest.approx(0.5)
    # a step at the middle: 0 then 1 -> area 0.5 - half a trapezoid of width 1/4
    assert auc([0, 0, 1, 1, 1]) == pytest.approx(0.625)
    # uneven abscissae: the last interval is short
    assert auc([1.0, 1.0, 0.0], [0.0, 0.9, 1.0]) == pytest.approx(0.95)
    np.testing.assert_allclose(auc(np.stack([np.zeros(5), np.ones(5)])), [0.0, 1.0])
    assert overall(np.array([0.7]), np.array([0.2]))[0] == pytest.approx(0.5)


def test_ranking_is_stable_and_blur_keeps_constants() -> None:
    m = torch.tensor([[[0.5, 1.0], [0.5, 0.5]]])
    assert ranking(m).tolist() == [[1, 0, 2, 3]]  # ties in raster order
    flat = torch.full((1, 3, 20, 20), 0.7)
    torch.testing.assert_close(blur(flat), flat)
    spike = torch.zeros(1, 1, 31, 31)
    spike[0, 0, 15, 15] = 1.0
    out = blur(spike)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 5.0**2))
    g /= g.sum()  # the 11-tap, sigma-5 kernel
    np.testing.assert_allclose(out[0, 0, 10:21, 10:21].numpy(), np.outer(g, g), rtol=1e-5)


def test_insertion_deletion_perfect_map_beats_its_inverse(region_setup) -> None:
    model, x, bump = region_setup
    maps = np.stack([bump, 1 - bump])
    res = insertion_deletion(model, x, maps, 0, step=SIDE, device="cpu")
    ins, dele = res.insertion, res.deletion
    assert ins.curves.shape == (2, SIDE + 1) and dele.curves.shape == (2, SIDE + 1)
    np.testing.assert_allclose(ins.fractions, np.arange(SIDE + 1) / SIDE)
    p_full = 1 / (1 + np.exp(-4.0))  # region at 2.0
    # deletion starts at the image and ends at zero everywhere (region at 0)
    np.testing.assert_allclose(dele.curves[:, 0], p_full, rtol=1e-5)
    np.testing.assert_allclose(dele.curves[:, -1], 1 / (1 + np.exp(4.0)), rtol=1e-5)
    # insertion ends at the image
    np.testing.assert_allclose(ins.curves[:, -1], p_full, rtol=1e-5)
    # insertion starts at the blurred image
    p_blur = torch.softmax(model(blur(x[None])), 1)[0, 0].item()
    np.testing.assert_allclose(ins.curves[:, 0], p_blur, rtol=1e-5)
    assert ins.auc[0] > ins.auc[1] + 0.3
    assert dele.auc[0] < dele.auc[1] - 0.5
    assert res.overall[0] > 0.5 > 0.0 > res.overall[1]
    np.testing.assert_allclose(ins.auc, auc(ins.curves, ins.fractions))
    # the single-kind entry points agree with the combined one
    np.testing.assert_allclose(insertion(model, x, maps, 0, step=SIDE, device="cpu").auc, ins.auc)
    np.testing.assert_allclose(deletion(model, x, maps, 0, step=SIDE, device="cpu").auc, dele.auc)


def test_causal_curve_values_are_hand_computable() -> None:
    """A model that reads one pixel: deletion drops exactly when that pixel goes."""

    class OnePixel(nn.Module):
        def forward(self, x):
            v = x[:, 0, 2, 3]
            return torch.stack([10 * v, torch.zeros_like(v)], 1)

    x = torch.zeros(3, 5, 5)
    x[:, 2, 3] = 1.0
    ramp = torch.arange(25, dtype=torch.float32).flip(0).view(5, 5)  # raster order first
    res = deletion(OnePixel(), x, ramp, 0, step=4, device="cpu")
    # pixel (2, 3) has rank 13: it is gone from the 4th step (16 pixels changed) on
    high, low = 1 / (1 + np.exp(-10.0)), 0.5
    np.testing.assert_allclose(
        res.fractions, [0, 4 / 25, 8 / 25, 12 / 25, 16 / 25, 20 / 25, 24 / 25, 1.0]
    )
    np.testing.assert_allclose(res.curves[0], [high] * 4 + [low] * 4, rtol=1e-6)
    np.testing.assert_allclose(res.auc, auc(res.curves, res.fractions))


def test_causal_default_target_is_top1_and_model_is_restored(region_setup) -> None:
    model, x, bump = region_setup
    model.train()
    res = deletion(model, x, bump, step=SIDE, device="cpu")
    assert res.targets.tolist() == [0]
    assert model.training and model.gain.requires_grad


# ----------------------------------------------------------------------------------- ROAD


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


# ----------------------------------------------------------------------------------- EPG


def test_epg_of_hand_made_maps() -> None:
    mask = box_mask([[0, 0, 113.5, 227]], (227, 227), (224, 224))
    assert mask[:, :112].all() and not mask[:, 112:].any()
    assert box_mask([[0, 0, 227, 227]], (227, 227)).all()
    assert energy_pointing_game(mask.astype(float), mask)[0] == pytest.approx(1.0)
    assert energy_pointing_game(np.ones((224, 224)), mask)[0] == pytest.approx(mask.mean())
    assert energy_pointing_game(~mask * 1.0, mask)[0] == 0.0
    assert np.isnan(energy_pointing_game(np.zeros((224, 224)), mask)[0])
    # a box mapped from a non-square file
    small = box_mask([[10, 20, 30, 40]], (100, 200), (50, 50))
    rows, cols = np.nonzero(small)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 9, 5, 14)


def test_centre_prior_and_its_epg() -> None:
    prior = centre_prior(224, 224)
    assert prior.max() == pytest.approx(np.exp(-0.5 * 2 * (0.5 / 56) ** 2))
    np.testing.assert_allclose(prior, prior[::-1, ::-1])
    central = box_mask([[56, 56, 168, 168]], (224, 224))
    corner = box_mask([[0, 0, 112, 112]], (224, 224))
    scores = centre_prior_epg(np.stack([central, corner]))
    assert scores[0] > 0.45  # +-1 sigma of a Gaussian cut at +-2 sigma: 0.51
    assert scores[1] == pytest.approx(0.25)  # a quarter, by symmetry


def test_read_annotations_of_the_shared_set(shared) -> None:
    ann = read_annotations(shared / "data" / "imagenet-val-1300" / "annotations.csv")
    assert len(ann) == 1300 and sum(len(a.boxes) for a in ann.values()) == 1943
    first = ann["ILSVRC2012_val_00000347.JPEG"]
    assert first.label == 472 and first.boxes.shape == (8, 4)
    m = first.mask()
    assert m.shape == (224, 224) and 0 < m.mean() < 1


# -------------------------------------------------------------------------------- sanity


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


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_reported_in_one_line(region_setup) -> None:
    model, x, bump = region_setup
    cases = [
        (lambda: deletion(model, x, bump, 0, step=0, device="cpu"), "step"),
        (lambda: insertion(model, x, bump[:10], 0, device="cpu"), "do not match"),
        (lambda: deletion(model, x.numpy(), bump, 0, device="cpu"), "tensor"),
        (lambda: deletion(model, x, np.stack([bump] * 3), [0, 0], device="cpu"), "targets"),
        (lambda: deletion(model, x, bump, 5, device="cpu"), "outside the model's"),
        (lambda: road_scores(model, x, bump, 0, percentiles=(0, 50), device="cpu"), "percentiles"),
        (lambda: road_scores(model, x, bump, 0, noise=-1, device="cpu"), "noise"),
        (lambda: road_scores(model, x, bump, 0, solver="magic", device="cpu"), "solver"),
        (lambda: box_mask([[0, 0, 300, 10]], (227, 227)), "outside"),
        (lambda: box_mask([[5, 5, 5, 10]], (227, 227)), "outside"),
        (lambda: energy_pointing_game(-np.ones((4, 4)), np.ones((4, 4))), "non-negative"),
        (lambda: energy_pointing_game(np.ones((4, 4)), np.ones((5, 5))), "same H x W"),
        (lambda: auc([1.0]), "curves"),
        (lambda: cascade_groups(nn.ReLU()), "no parameters"),
    ]
    for call, text in cases:
        with pytest.raises(HoliwidgetError, match=text) as info:
            call()
        assert "\n" not in str(info.value)
