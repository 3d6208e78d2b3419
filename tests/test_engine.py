"""The explain engine on real torch models: reference agreement, peer cross-checks, batches,
input validation, devices and scale targets. No mocks."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference as ref
import torch
import xarray as xr
from conftest import (
    BASE_METHODS,
    TinyCNN,
    hook_count,
    minmax_np,
    rel_diff,
    tiny_image,
)
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import holiwidget
from holiwidget import HoliwidgetError
from holiwidget.methods.eigen import eigen_projection
from holiwidget.methods.finish import finish_maps

PGC = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}


# --------------------------------------------------------------------------------------
# 1. Holistic-CAM and CAMERAS against the naive reference


def check_against_reference(
    ds: xr.Dataset, caps: list[ref.Capture], image: int = 0, **fsd: float
) -> None:
    """PHA and M_f within 1e-5 of their range, the final map within mean 1e-4 / max 0.02,
    CAMERAS within 1e-4 (holistic-cam.md, "Targets")."""
    want = ref.holistic_from_captures(
        caps, fsd.get("threshold", 0.5), fsd.get("median", 51), fsd.get("box", 91)
    )
    assert int(ds.target[image]) == want.target
    pha = ds.primary.values[image, 0]
    mf = ds.fundamental.values[image, 0]
    cam = ds.attribution.sel(cam="holistic").values[image, 0]
    assert rel_diff(pha, want.pha) <= 1e-5, rel_diff(pha, want.pha)
    assert rel_diff(mf, want.mf) <= 1e-5, rel_diff(mf, want.mf)
    diff = np.abs(cam - want.cam)
    assert diff.mean() <= 1e-4 and diff.max() <= 0.02, (diff.mean(), diff.max())
    assert cam.min() == 0 and abs(cam.max() - want.cam.max()) <= 1e-6
    if "cameras" in list(ds.cam.values):
        cameras = ds.attribution.sel(cam="cameras").values[image, 0]
        want_c = ref.cameras_from_captures(caps)
        assert np.abs(cameras - want_c).max() <= 1e-4, np.abs(cameras - want_c).max()


@pytest.mark.parametrize(
    ("layer", "target", "fsd"),
    [
        ("stage1", 3, {}),
        ("stage2", None, {}),
        ("stage3", 7, {}),
        ("stage2.2", 1, {}),
        ("stage3", 2, {"threshold": 0.3, "median": 31, "box": 111}),
        ("stage2", 6, {"threshold": 1.0, "median": 3, "box": 5}),
        ("stage1.0", 4, {}),
    ],
)
def test_holistic_matches_reference_tiny(tiny, imagenet_images, layer, target, fsd):
    x = ref.preprocess(imagenet_images[1])

    def run() -> xr.Dataset:
        return holiwidget.explain(
            tiny, x, layers=layer, methods=("holistic", "cameras"), target=target, **fsd
        )

    if layer == "stage1.0":
        # a conv output (negative values) that the in-place ReLU after it overwrites: the
        # engine must explain the value before the ReLU, as the reference does
        with pytest.warns(UserWarning, match="negative"):
            ds = run()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            ds = run()
    if target is None:
        with torch.no_grad():
            assert int(ds.target[0]) == int(tiny(x).argmax())
    check_against_reference(ds, ref.pyramid_captures(tiny, layer, x, target), **fsd)


def test_holistic_matches_reference_mobilenet_features18(mobilenet, three, mobilenet_singles):
    x, targets = three
    caps = ref.pyramid_captures(mobilenet, "features.18", x[:1], targets[0])
    check_against_reference(mobilenet_singles[0], caps)


def test_holistic_matches_reference_mobilenet_features13(mobilenet, three):
    x, targets = three
    layer = "features.13.conv.0"
    ds = holiwidget.explain(
        mobilenet, x[1:2], layers=layer, methods=("holistic", "cameras"), target=targets[1]
    )
    check_against_reference(ds, ref.pyramid_captures(mobilenet, layer, x[1:2], targets[1]))


def test_reference_preprocessing_matches_engine(imagenet_images):
    from holiwidget.images import prepare_images

    prep = prepare_images(imagenet_images[0])
    assert torch.equal(prep.tensor, ref.preprocess(imagenet_images[0]))


# --------------------------------------------------------------------------------------
# 2. Base-scale methods against pytorch-grad-cam


@pytest.fixture(scope="module")
def peer_cases(resnet, mobilenet, three) -> dict:
    """Our base-scale maps, and the layer activation, per (model, layer)."""
    x, targets = three
    torch.manual_seed(0)
    tiny = TinyCNN().eval()  # tiny gradients: maps whose raw values are ~1e-6
    cases = {}
    for key, model, layer, image, target in (
        ("resnet50", resnet, "layer4", 2, targets[2]),
        ("mobilenet_v2", mobilenet, "features.18", 0, targets[0]),
        ("tiny-stage1", tiny, "stage1", 1, 3),
        ("tiny-stage3", tiny, "stage3", 1, 3),
    ):
        xi = x[image : image + 1]
        ds = holiwidget.explain(model, xi, layers=layer, methods=BASE_METHODS, target=target)
        cap = ref.capture(copy.deepcopy(model), layer, xi, target)
        cases[key] = (model, layer, xi, target, ds, cap)
    return cases


PEER_PAIRS = [
    (key, method)
    for key in ("resnet50", "mobilenet_v2", "tiny-stage1", "tiny-stage3")
    for method in BASE_METHODS
    # pytorch-grad-cam's Eigen-CAM takes a full SVD: U would be (112*112)^2 floats here
    if (key, method) != ("tiny-stage1", "eigencam")
]


@pytest.mark.parametrize(("key", "method"), PEER_PAIRS)
def test_base_methods_match_pytorch_grad_cam(peer_cases, key, method):
    model, layer, x, target, ds, cap = peer_cases[key]
    peer_model = copy.deepcopy(model)
    module = dict(peer_model.named_modules())[layer]
    with PGC[method](model=peer_model, target_layers=[module]) as cam:
        theirs = minmax_np(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0])
    ours = ds.attribution.sel(cam=method).values[0, 0]
    assert ours.shape == theirs.shape == (224, 224)
    if method != "eigencam":
        assert np.abs(ours - theirs).max() <= 1e-4, np.abs(ours - theirs).max()
        # and the naive reference formulas agree too
        naive = ref.base_scale_maps(cap.activation, cap.gradient, 224)[method]
        assert np.abs(ours - naive).max() <= 1e-4, np.abs(ours - naive).max()
        return
    a = cap.activation
    proj = eigen_projection(a)
    flipped = finish_maps(-proj, (224, 224))[0].numpy()
    d_same = np.abs(ours - theirs).max()
    d_flip = np.abs(flipped - theirs).max()
    assert min(d_same, d_flip) <= 1e-4, (d_same, d_flip)
    # ours is the sign that correlates positively with the channel-mean activation
    p = proj[0].double().flatten()
    mean = a[0].double().mean(0).flatten()
    assert float(((p - p.mean()) * (mean - mean.mean())).sum()) > 0
    assert np.allclose(ours, finish_maps(proj, (224, 224))[0].numpy(), atol=1e-6)


# --------------------------------------------------------------------------------------
# 3. A batch equals one-image calls


def compare_batch_single(batch: xr.Dataset, singles: list[xr.Dataset]) -> dict:
    """Worst differences between a batch and its one-image calls.

    On the CPU every image gets network passes of its own, so every map, Holistic-CAM's final
    one included (it goes through an 8-bit step that would turn a different summation order
    into a visible flip), must agree to 1e-5; PHA and M_f relative to their range, and the
    final map also with the single call's M_f used for both wraps.
    """
    worst: dict[str, float] = {}

    def note(key: str, value: float) -> None:
        worst[key] = max(worst.get(key, 0.0), float(value))

    for i, single in enumerate(singles):
        assert int(batch.target[i]) == int(single.target[0])
        for cam in batch.cam.values:
            d = np.abs(
                batch.attribution.sel(cam=cam).values[i] - single.attribution.sel(cam=cam).values[0]
            )
            note(cam, d.max())
            if cam == "holistic":
                note("holistic mean", d.mean())
        if "primary" in batch:
            params = json.loads(batch.attrs["parameters"])
            for li in range(batch.sizes["layer"]):
                for var in ("primary", "fundamental"):
                    note(var, rel_diff(batch[var].values[i, li], single[var].values[0, li]))
                same_wrap, _ = holiwidget.holistic_map(
                    batch.primary.values[i, li],
                    single.fundamental.values[0, li],
                    params["threshold"],
                    params["median"],
                    params["box"],
                )
                final = single.attribution.sel(cam="holistic").values[0, li]
                note("holistic, same wrap", np.abs(same_wrap - final).max())
        np.testing.assert_allclose(
            float(batch.probability[i]), float(single.probability[0]), rtol=1e-5
        )
    return worst


def check_batch_single(worst: dict) -> None:
    assert all(v <= 1e-5 for v in worst.values()), worst


def test_batch_equals_single_tiny(tiny):
    images = [tiny_image(i) for i in range(3)]
    targets = [1, 5, 8]
    batch = holiwidget.explain(tiny, images, methods="all", target=targets)
    grouped = holiwidget.explain(tiny, images, methods="all", target=targets, batch_size=2)
    singles = [
        holiwidget.explain(tiny, images[i], methods="all", target=targets[i]) for i in range(3)
    ]
    assert list(batch.target.values) == targets
    for ds in (batch, grouped):
        check_batch_single(compare_batch_single(ds, singles))


def test_batch_equals_single_mobilenet(mobilenet, three, mobilenet_singles):
    x, targets = three
    batch = holiwidget.explain(mobilenet, x, layers="features.18", methods="all", target=targets)
    assert list(batch.target.values) == targets
    check_batch_single(compare_batch_single(batch, mobilenet_singles))


# --------------------------------------------------------------------------------------
# 6. Bad input, odd input


def _bad_inputs(tmp: Path) -> dict:
    text = tmp / "notes.jpg"
    text.write_text("this is not an image\n")
    nan = torch.zeros(1, 3, 64, 64)
    nan[0, 1, 5, 5] = float("nan")
    img = tiny_image()
    return {
        "missing file": ({"images": str(tmp / "missing.jpg")}, "no such"),
        "non-image file": ({"images": str(text)}, "cannot read"),
        "empty list": ({"images": []}, "no images"),
        "5 channels": ({"images": np.zeros((32, 32, 5), np.uint8)}, "shape"),
        "nan tensor": ({"images": nan}, "NaN"),
        "target outside": ({"images": img, "target": 10}, "outside"),
        "negative target": ({"images": img, "target": -1}, "outside"),
        "unknown method": ({"images": img, "methods": "gradcam,fancycam"}, "unknown method"),
        "threshold 0": ({"images": img, "threshold": 0}, "threshold"),
        "even median": ({"images": img, "median": 50}, "median"),
        "even box": ({"images": img, "box": 90}, "box"),
        "targets count": ({"images": [img, img], "target": [1, 2, 3]}, "targets"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "non-image file",
        "empty list",
        "5 channels",
        "nan tensor",
        "target outside",
        "negative target",
        "unknown method",
        "threshold 0",
        "even median",
        "even box",
        "targets count",
    ],
)
def test_bad_input_one_line_error(tiny, tmp_path, case):
    kwargs, match = _bad_inputs(tmp_path)[case]
    kwargs.setdefault("methods", ("holistic",))
    with pytest.raises(HoliwidgetError, match=match) as err:
        holiwidget.explain(tiny, layers="stage3", **kwargs)
    message = str(err.value)
    assert message and "\n" not in message
    assert hook_count(tiny) == 0


def test_grayscale_and_rgba_accepted(tiny):
    gray = tiny_image()[..., 0]
    rgba = np.dstack([tiny_image(1), np.full((96, 80), 255, np.uint8)])
    ds = holiwidget.explain(tiny, [gray, rgba], layers="stage3", methods=("holistic", "gradcam"))
    assert ds.attribution.shape == (2, 2, 1, 224, 224)
    assert np.isfinite(ds.attribution.values).all()
    # the RGBA image is explained as its RGB part
    rgb = holiwidget.explain(tiny, tiny_image(1), layers="stage3", methods=("holistic", "gradcam"))
    np.testing.assert_allclose(ds.attribution.values[1], rgb.attribution.values[0], atol=1e-6)


def test_zero_gradients_give_finite_maps(tiny):
    with torch.no_grad():
        tiny.head.weight.zero_()
        tiny.head.bias.zero_()
    ds = holiwidget.explain(tiny, [tiny_image(), np.zeros((64, 64), np.uint8)], methods="all")
    for var in ("attribution", "primary", "fundamental"):
        assert np.isfinite(ds[var].values).all(), var
    att = ds.attribution.values
    assert att.min() >= 0 and att.max() <= 1


def test_constant_image_gives_finite_maps(tiny):
    ds = holiwidget.explain(tiny, np.full((64, 64, 3), 128, np.uint8), methods="all", target=3)
    for var in ("attribution", "primary", "fundamental"):
        assert np.isfinite(ds[var].values).all(), var


def test_negative_activations_warn(tiny, mobilenet, three):
    with pytest.warns(UserWarning, match="negative"):
        holiwidget.explain(tiny, tiny_image(), layers="stage1.0", methods=("gradcam",))
    x, _ = three
    with pytest.warns(UserWarning, match="negative"):
        holiwidget.explain(mobilenet, x[:1], layers="features.17", methods=("gradcam",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        holiwidget.explain(mobilenet, x[:1], layers="features.18", methods=("gradcam",))


# --------------------------------------------------------------------------------------
# 7. Devices and scale targets


def test_device_auto_is_cpu_here(tiny):
    ds = holiwidget.explain(tiny, tiny_image(), methods=("gradcam",), device="auto")
    assert ds.attrs["device"] == "cpu"
    assert next(tiny.parameters()).device.type == "cpu"


class _SizeSwitch(nn.Module):
    """Top-1 is class 0 for inputs up to 600 pixels wide and class 1 beyond."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.features(x).mean(dim=(2, 3))
        bonus = 10.0 if x.shape[-1] > 600 else -10.0
        return torch.cat([s[:, :1], s[:, 1:2] + bonus], dim=1)


def test_scale_targets_own_leaves_out_disagreeing_scales():
    torch.manual_seed(0)
    model = _SizeSwitch().eval()
    own = holiwidget.explain(model, "coffee", layers="features", scale_targets="own")
    fixed = holiwidget.explain(model, "coffee", layers="features")
    assert list(own.scale.values) == [224, 324, 424, 524, 624, 724, 824, 924]
    assert own.scale_used.values[0].tolist() == [True] * 4 + [False] * 4
    assert fixed.scale_used.values.all()
    assert int(own.target[0]) == int(fixed.target[0]) == 0
    assert np.isfinite(own.attribution.values).all()
    assert not np.allclose(own.primary.values, fixed.primary.values, rtol=1e-3, atol=0)
    with pytest.raises(HoliwidgetError, match="drop target"):
        holiwidget.explain(model, "coffee", layers="features", scale_targets="own", target=0)


@pytest.mark.parametrize("scales", [(224, 424, 724), (224, 924, 324)])
def test_scales_choose_the_pyramid(tiny, imagenet_images, scales):
    x = ref.preprocess(imagenet_images[1])
    ds = holiwidget.explain(tiny, x, layers="stage2", methods=("holistic",), scales=scales)
    ascending = tuple(sorted(scales))
    assert list(ds.scale.values) == list(ascending)
    assert json.loads(ds.attrs["parameters"])["pyramid"] == list(ascending)
    check_against_reference(ds, ref.pyramid_captures(tiny, "stage2", x, None, ascending))
    full = holiwidget.explain(tiny, x, layers="stage2", methods=("holistic",))
    assert not np.allclose(ds.primary.values, full.primary.values, rtol=1e-3, atol=0)


def test_one_scale_is_the_single_scale_method(tiny, imagenet_images):
    x = ref.preprocess(imagenet_images[2])
    ds = holiwidget.explain(tiny, x, layers="stage3", methods=("holistic",), scales=(224,))
    assert "scale" not in ds.dims  # one pass: no per-scale flags
    assert json.loads(ds.attrs["parameters"])["pyramid"] == [224]
    np.testing.assert_allclose(ds.primary.values, ds.fundamental.values, rtol=1e-6, atol=1e-7)
    check_against_reference(ds, ref.pyramid_captures(tiny, "stage3", x, None, (224,)))


@pytest.mark.parametrize(
    ("scales", "match"),
    [
        ((), "non-empty list"),
        ("224,324", "non-empty list"),
        ((224, 0), "positive integers"),
        ((224, 32.5), "positive integers"),
        ((224, 324, 224), "repeat a side"),
        ((324, 224), "start with the fundamental scale"),
    ],
)
def test_bad_scales_one_line_error(tiny, scales, match):
    with pytest.raises(HoliwidgetError, match=match) as err:
        holiwidget.explain(tiny, "coffee", layers="stage3", scales=scales)
    assert "\n" not in str(err.value)
    assert hook_count(tiny) == 0


# --------------------------------------------------------------------------------------
# 8. The methods with passes of their own: Relevance-CAM and IIA


def test_relevancecam_and_iia_through_explain_equal_their_functions(mobilenet, three):
    from holiwidget.capture import prepared
    from holiwidget.layers import resolve_layers
    from holiwidget.methods.iia import finish_iia, iia
    from holiwidget.methods.relevance import finish_relevancecam, relevancecam

    x, targets = three
    layers = ["features.6.conv.0", "features.18"]
    ds = holiwidget.explain(
        mobilenet, x[:1], layers=layers, methods=("relevancecam", "iia"), target=targets[0]
    )
    assert list(ds.cam.values) == ["relevancecam", "iia"]
    modules = resolve_layers(mobilenet, layers)
    t = torch.tensor([targets[0]])
    with prepared(mobilenet):
        rel = relevancecam(mobilenet, modules, x[:1], t)
        ii = iia(mobilenet, modules, x[:1], t)
    for li, name in enumerate(layers):
        ours = ds.attribution.values[0, :, li]
        assert np.allclose(ours[0], finish_relevancecam(rel[name], (224, 224))[0].numpy())
        assert np.allclose(ours[1], finish_iia(ii[name], (224, 224))[0].numpy())
        assert ours.min() >= 0 and ours.max() <= 1 and ours.std(axis=(1, 2)).min() > 0
    assert hook_count(mobilenet) == 0


def test_all_leaves_out_relevancecam_where_it_has_no_rules(tiny, caplog):
    ds = holiwidget.explain(tiny, tiny_image(), methods="all", target=1)
    assert "relevancecam" not in ds.cam.values and "iia" in ds.cam.values
    assert any("leaving relevancecam out" in r.getMessage() for r in caplog.records)
    with pytest.raises(HoliwidgetError, match="relevancecam has no LRP canonizer for TinyCNN"):
        holiwidget.explain(tiny, tiny_image(), methods="relevancecam,gradcam", target=1)
