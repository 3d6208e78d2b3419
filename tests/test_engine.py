"""The explain engine on real torch models: reference agreement, peer cross-checks, batches,
model hygiene, layer choice, input validation, datasets and devices. No mocks."""

from __future__ import annotations

import copy
import csv
import gc
import json
import types
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
import reference as ref
import torch
import xarray as xr
from conftest import TinyCNN
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models.resnet import Bottleneck

import holiwidget
from holiwidget import HoliwidgetError
from holiwidget.maps import finish_maps
from holiwidget.methods.eigen import eigen_projection

BASE_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "eigencam")
PGC = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}


# --------------------------------------------------------------------------------------
# helpers and fixtures


def rel_diff(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max absolute difference relative to the range of ``theirs``."""
    span = float(np.ptp(theirs))
    return float(np.abs(ours - theirs).max()) / (span if span > 0 else 1.0)


def minmax_np(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def hook_count(model: nn.Module) -> int:
    """Every module hook and every parameter tensor hook on the model."""
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            total += len(getattr(m, attr))
    for p in model.parameters():
        total += len(p._backward_hooks or {})
    return total


def labels(shared: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(shared / "data" / "imagenet-val-1300" / "annotations.csv") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["image"], int(row["label"]))
    return out


@pytest.fixture(scope="module")
def three(imagenet_images, shared) -> tuple[torch.Tensor, list[int]]:
    """Three real ImageNet images (normalised, 224x224) and their ground-truth classes."""
    lab = labels(shared)
    paths = imagenet_images[:3]
    x = torch.cat([ref.preprocess(p) for p in paths])
    targets = [lab[p.name] for p in paths]
    assert len(set(targets)) == 3
    return x, targets


@pytest.fixture(scope="module")
def mobilenet(mobilenet_weights) -> nn.Module:
    return holiwidget.load_model("mobilenet_v2", weights=mobilenet_weights)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return holiwidget.load_model("resnet50", weights=None)


@pytest.fixture(scope="module")
def mobilenet_singles(mobilenet, three) -> list[xr.Dataset]:
    """Each of the three images explained alone: features.18, every method."""
    torch.set_num_threads(2)
    x, targets = three
    return [
        holiwidget.explain(
            mobilenet, x[i : i + 1], layers="features.18", methods="all", target=targets[i]
        )
        for i in range(3)
    ]


def tiny_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (96, 80, 3), dtype=np.uint8)


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


def test_compiled_fusion_equals_torch_fusion(mobilenet, three, monkeypatch):
    """The CPU's compiled fusion against the torch fusion that accelerators run (here on the
    CPU): PHA, M_f, Holistic-CAM and CAMERAS at every depth, the summed shallow layer included."""
    x, targets = three
    layers = ["features.3.conv.0", "features.6.conv.0", "features.13.conv.0", "features.18"]

    def run() -> xr.Dataset:
        return holiwidget.explain(
            mobilenet, x[2:3], layers=layers, methods=("holistic", "cameras"), target=targets[2]
        )

    compiled = run()
    monkeypatch.setattr(holiwidget.engine, "_COMPILED_FUSION", False)
    plain = run()
    # two computations, not one: they differ by float rounding
    assert not np.array_equal(compiled.primary.values, plain.primary.values)
    for li in range(len(layers)):
        for var in ("primary", "fundamental"):
            ours, theirs = compiled[var].values[0, li], plain[var].values[0, li]
            assert rel_diff(ours, theirs) <= 1e-5, (layers[li], var, rel_diff(ours, theirs))
        maps = compiled.attribution.values[0, :, li], plain.attribution.values[0, :, li]
        diff = np.abs(maps[0] - maps[1])
        assert diff[0].mean() <= 1e-4 and diff[0].max() <= 0.02, (layers[li], diff[0].max())
        assert diff[1].max() <= 1e-4, (layers[li], diff[1].max())


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
# 4. The model is left as it was found


def test_no_hooks_left_after_call_and_after_error(tiny):
    user_handle = tiny.stage2.register_forward_hook(lambda m, i, o: None)
    before = hook_count(tiny)
    assert before == 1
    holiwidget.explain(tiny, tiny_image(), layers="stage1,stage3", methods="all")
    assert hook_count(tiny) == before
    with pytest.raises(HoliwidgetError, match="outside"):
        holiwidget.explain(tiny, tiny_image(), layers="stage1,stage3", methods="all", target=10)
    assert hook_count(tiny) == before
    user_handle.remove()
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


def _mixed_state(model: nn.Module) -> tuple[list, list, dict]:
    model.train()
    model.stage2[1].eval()  # a mixed state must come back exactly
    for p in model.stage1.parameters():
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return flags, modes, state


def _assert_state(model: nn.Module, flags: list, modes: list, state: dict) -> None:
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BN running stats untouched
    assert hook_count(model) == 0


def test_flags_modes_and_state_restored(tiny):
    flags, modes, state = _mixed_state(tiny)
    ds = holiwidget.explain(
        tiny, tiny_image(), layers="stage1,stage2,stage3", methods="all", target=2
    )
    _assert_state(tiny, flags, modes, state)
    # also after a call that fails inside the network pass
    with pytest.raises(HoliwidgetError):
        holiwidget.explain(tiny, tiny_image(), layers="stage2", methods="all", target=99)
    _assert_state(tiny, flags, modes, state)
    # explained in evaluation mode: the same maps as for the model in eval mode
    tiny.eval()
    for p in tiny.parameters():
        p.requires_grad_(True)
    ds_eval = holiwidget.explain(
        tiny, tiny_image(), layers="stage1,stage2,stage3", methods="all", target=2
    )
    xr.testing.assert_allclose(ds.attribution, ds_eval.attribution, atol=1e-6)
    assert all(p.grad is None for p in tiny.parameters())


def test_modes_restored_with_auto_layers(tiny):
    flags, modes, state = _mixed_state(tiny)
    holiwidget.explain(tiny, tiny_image(), layers="auto", methods=("gradcam",), target=2)
    _assert_state(tiny, flags, modes, state)


def test_works_inside_no_grad(tiny):
    outside = holiwidget.explain(tiny, tiny_image(), methods="all", target=4)
    with torch.no_grad():
        inside = holiwidget.explain(tiny, tiny_image(), methods="all", target=4)
    assert torch.is_grad_enabled()
    xr.testing.assert_allclose(outside.attribution, inside.attribution, atol=1e-7)
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


def _bottleneck_forward_no_inplace(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


def test_inplace_downstream_resnet(resnet, three):
    """layer4.2.bn3's output is changed in place by ``out += identity`` and the in-place
    ReLU: the engine must explain the bn3 output itself."""
    x, _ = three
    x = x[:1]
    layer, target = "layer4.2.bn3", 17
    with pytest.warns(UserWarning, match="negative"):
        ds = holiwidget.explain(resnet, x, layers=layer, methods=BASE_METHODS, target=target)
    assert hook_count(resnet) == 0
    assert all(p.grad is None for p in resnet.parameters())

    # An equivalent model without any in-place operation, captured with a plain hook.
    clean = copy.deepcopy(resnet)
    for m in clean.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
        if isinstance(m, Bottleneck):
            m.forward = types.MethodType(_bottleneck_forward_no_inplace, m)
    store = {}

    def plain_hook(module, inputs, output):
        store["a"] = output.detach()  # shares storage, as pytorch-grad-cam does
        output.register_hook(lambda g: store.__setitem__("g", g))

    handle = dict(clean.named_modules())[layer].register_forward_hook(plain_hook)
    clean(x)[0, target].backward()
    handle.remove()
    plain = ref.base_scale_maps(store["a"], store["g"], 224)
    # ... and the in-place model captured with a cloning hook (the naive reference)
    cap = ref.capture(copy.deepcopy(resnet), layer, x, target)
    assert torch.allclose(cap.activation, store["a"], atol=1e-5)
    cloned = ref.base_scale_maps(cap.activation, cap.gradient, 224)
    for method in ("gradcam", "gradcampp", "xgradcam", "layercam"):
        ours = ds.attribution.sel(cam=method).values[0, 0]
        assert np.abs(ours - plain[method]).max() <= 1e-4, method
        assert np.abs(ours - cloned[method]).max() <= 1e-4, method
    eig = finish_maps(eigen_projection(cap.activation), (224, 224))[0].numpy()
    assert np.abs(ds.attribution.sel(cam="eigencam").values[0, 0] - eig).max() <= 1e-4

    # The hazard is real: a plain (non-cloning) hook on the in-place model records the sum.
    store.clear()
    handle = dict(resnet.named_modules())[layer].register_forward_hook(
        lambda m, i, o: store.__setitem__("a", o.detach())
    )
    with torch.no_grad():
        resnet(x)
    handle.remove()
    assert (store["a"] - cap.activation).abs().max() > 1e-2


def test_outputs_are_copied_only_where_changed_in_place(tiny):
    """A recorded output goes on uncopied unless an op downstream changes it in place: then
    the pass runs again with a copy (found by the version counter for a non-leaf, by
    autograd's refusal for the leaf), and the module is remembered."""
    from holiwidget.capture import _COPY_OUTPUT, prepared, record_pass

    x = holiwidget.images.prepare_images([tiny_image()]).tensor
    conv1, conv2, bn2 = tiny.stage1[0], tiny.stage2[0], tiny.stage2[1]
    layers = {"stage1.0": conv1, "stage2.0": conv2, "stage2.1": bn2, "stage3": tiny.stage3}
    for m in layers.values():
        _COPY_OUTPUT.discard(m)
    with prepared(tiny):
        rec = record_pass(tiny, layers, x, lambda logits: logits.argmax(1))
    # conv1 (the leaf) and bn2 (not a leaf) feed in-place ReLUs; conv2 feeds bn2, stage3 the
    # pooling: those two are handed on as they are.
    assert conv1 in _COPY_OUTPUT and bn2 in _COPY_OUTPUT
    assert conv2 not in _COPY_OUTPUT and tiny.stage3 not in _COPY_OUTPUT
    # what was recorded is each layer's own output, before an in-place ReLU changed it
    clean = copy.deepcopy(tiny)
    for m in clean.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    store = {}

    def keep(name):
        def hook(module, inputs, output):
            store[name] = output
            output.retain_grad()

        return hook

    handles = [
        dict(clean.named_modules())[name].register_forward_hook(keep(name)) for name in layers
    ]
    x_grad = x.clone().requires_grad_(True)  # so that conv1's output is not a leaf here
    logits = clean(x_grad)
    logits[0, int(rec.targets[0])].backward()
    for h in handles:
        h.remove()
    assert float(store["stage1.0"].detach().min()) < 0
    assert float(store["stage2.1"].detach().min()) < 0
    for name in layers:
        torch.testing.assert_close(rec.activations[name], store[name].detach())
        torch.testing.assert_close(rec.gradients[name], store[name].grad)


def test_many_calls_leave_no_hooks_and_no_memory_growth(tiny):
    proc = psutil.Process()
    img = tiny_image()

    def run(i: int) -> None:
        methods = ("holistic",) if i % 50 == 0 else ("gradcam",)
        holiwidget.explain(tiny, img, layers="stage2,stage3", methods=methods, target=i % 10)

    for i in range(20):
        run(i)
    gc.collect()
    before = proc.memory_info().rss
    for i in range(200):
        run(i)
    gc.collect()
    growth = (proc.memory_info().rss - before) / 2**20
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())
    assert growth < 30, f"RSS grew by {growth:.1f} MB over 200 calls"


# --------------------------------------------------------------------------------------
# 5. Which layers


def test_auto_layers_known_networks(mobilenet, resnet):
    from torchvision import models as tvm

    assert holiwidget.holistic_stage(resnet) == ["layer1", "layer2", "layer3", "layer4"]
    assert holiwidget.holistic_stage(tvm.vgg16()) == [
        "features.9",
        "features.16",
        "features.23",
        "features.30",
    ]
    assert holiwidget.holistic_stage(tvm.vgg16_bn()) == [
        "features.13",
        "features.23",
        "features.33",
        "features.43",
    ]
    assert holiwidget.holistic_stage(mobilenet) == [
        "features.3.conv.0",
        "features.6.conv.0",
        "features.13.conv.0",
        "features.18",
    ]


def test_auto_layers_general_rule_tiny(tiny):
    # the last non-negative output of each resolution: the stage containers (post-ReLU)
    assert holiwidget.holistic_stage(tiny) == ["stage1", "stage2", "stage3"]
    ds = holiwidget.explain(tiny, tiny_image(), methods=("gradcam",))
    assert list(ds.layer.values) == ["stage1", "stage2", "stage3"]
    assert hook_count(tiny) == 0


def test_unknown_layer_lists_close_names(tiny, resnet):
    with pytest.raises(HoliwidgetError) as err:
        holiwidget.explain(tiny, tiny_image(), layers="stage4")
    assert "stage3" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(HoliwidgetError, match="layer4"):
        holiwidget.explain(resnet, tiny_image(), layers="layer5", methods=("gradcam",))


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
# 7. Datasets and devices


@pytest.fixture
def small_ds(tiny) -> xr.Dataset:
    return holiwidget.explain(tiny, [tiny_image(0), tiny_image(1)], methods="all", target=[2, 6])


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_dataset_round_trip(small_ds, tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    holiwidget.save_dataset(small_ds, path)
    back = holiwidget.open_dataset(path)
    xr.testing.assert_identical(small_ds, back)
    # written again over the old one
    holiwidget.save_dataset(small_ds, path)
    xr.testing.assert_identical(small_ds, holiwidget.open_dataset(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failed_save_leaves_no_file(small_ds, tmp_path):
    with pytest.raises(HoliwidgetError, match="does not exist"):
        holiwidget.save_dataset(small_ds, tmp_path / "missing" / "a.nc")
    assert not (tmp_path / "missing").exists()
    bad = small_ds.copy()
    bad.attrs["unwritable"] = {"a": 1}  # netCDF attributes cannot hold dicts
    with pytest.raises(HoliwidgetError, match="nothing was written"):
        holiwidget.save_dataset(bad, tmp_path / "b.nc")
    assert list(tmp_path.iterdir()) == []
    # a failed overwrite leaves the earlier file whole
    good = holiwidget.save_dataset(small_ds, tmp_path / "c.nc")
    with pytest.raises(HoliwidgetError, match="cannot write"):
        holiwidget.save_dataset(bad, good)
    assert [p.name for p in tmp_path.iterdir()] == ["c.nc"]
    xr.testing.assert_identical(small_ds, holiwidget.open_dataset(good))


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
