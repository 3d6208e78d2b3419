"""Bad and unusual input: each refused in one line before it does harm, or converted as meant.

Real models (TinyCNN, ResNet-50) and real files written by the tests; nothing is mocked.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import TinyCNN, hook_count, tiny_image
from PIL import Image
from torch import nn

import holiwidget
from holiwidget.capture import prepared
from holiwidget.checks import class_index, class_indices
from holiwidget.devices import resolve_device
from holiwidget.errors import HoliwidgetError
from holiwidget.evaluation import collect_inputs
from holiwidget.explorer import Explorer
from holiwidget.images import image_size, pixel_limit, prepare_images
from holiwidget.methods.holistic import MAX_BOX, MAX_MEDIAN, Denoising, low_pass_wrap
from holiwidget.metrics import insertion_deletion, road_scores


class Passes:
    """Counts a model's forward passes (network passes) through a forward hook."""

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1

    def remove(self) -> None:
        self.handle.remove()


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def upright_reference(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What EXIF orientation 6 or 8 means, written out with numpy: 6 turns the stored
    pixels a quarter clockwise, 8 a quarter anticlockwise."""
    return np.rot90(stored, k=-1 if orientation == 6 else 1)


def blocks(seed: int) -> np.ndarray:
    """A 40 x 70 RGB image of 10-pixel blocks: asymmetric, and JPEG keeps it closely."""
    colours = np.random.default_rng(seed).integers(0, 256, (4, 7, 3), dtype=np.uint8)
    return np.kron(colours, np.ones((10, 10, 1), np.uint8))


def exif(orientation: int) -> Image.Exif:
    data = Image.Exif()
    data[0x0112] = orientation
    return data


# --------------------------------------------------------------------------------------
# 9. Images above PIL's decompression-bomb limit


def test_pixel_limit_is_pils() -> None:
    assert pixel_limit() == Image.MAX_IMAGE_PIXELS == 89_478_485


def test_huge_jpeg_is_decoded_reduced_and_huge_png_refused(tiny, tmp_path) -> None:
    # 182 megapixels: above twice PIL's limit, so that PIL's open refuses it outright. A
    # greyscale JPEG of two flat halves encodes and decodes in a fraction of a second.
    width, height = 14000, 13000
    assert width * height > 2 * pixel_limit()
    big = Image.new("L", (width, height), 30)
    big.paste(220, (width // 2, 0, width, height))
    jpeg = tmp_path / "panorama.jpg"
    big.save(jpeg, quality=50)
    png = tmp_path / "scan.png"
    Image.new("L", (9500, 9500), 128).save(png, compress_level=1)  # 90.3 MP: above the limit
    huge_png = tmp_path / "huge.png"
    big.save(huge_png, compress_level=1)
    del big

    assert image_size(jpeg) == (width, height)  # the boxes' frame: the full resolution
    prep = prepare_images(jpeg)
    left, right = prep.display[0, :, :100].mean(), prep.display[0, :, 124:].mean()
    assert abs(left - 30) < 3 and abs(right - 220) < 3  # the picture, not a failure
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        ds = holiwidget.explain(tiny, [jpeg], layers="stage3", methods="gradcam")
    assert ds.attribution.shape == (1, 1, 1, 224, 224)

    with pytest.raises(HoliwidgetError, match=r"9500x9500 \(90\.2 megapixels\), above the limit"):
        prepare_images(png)
    with pytest.raises(HoliwidgetError, match=r"more than 179\.0 megapixels") as err:
        holiwidget.explain(tiny, [huge_png], layers="stage3")
    assert "save it as JPEG" in one_line(err)

    # evaluate: the JPEG is scored, the PNG left out with its reason; no traceback
    res = holiwidget.evaluate(
        tiny, [jpeg, png], layers="stage3", methods="gradcam", metrics="deletion", step=7168
    )
    assert list(res["image"].values) == ["panorama.jpg"]
    skipped = json.loads(res.attrs["skipped"])
    assert "above the limit" in skipped["scan.png"]


# --------------------------------------------------------------------------------------
# 11. Denoising kernels beyond what OpenCV handles


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"median": 713}, "median kernel must be an odd integer from 1 to 255"),
        ({"median": MAX_MEDIAN + 2}, "from 1 to 255"),
        ({"median": 254}, "use 253 or 255"),
        ({"box": MAX_BOX + 2}, "box kernel must be an odd integer from 1 to 4095"),
        ({"box": 0}, "box kernel"),
    ],
)
def test_kernels_out_of_range_are_refused_before_any_pass(tiny, kwargs, text) -> None:
    passes = Passes(tiny)
    with pytest.raises(HoliwidgetError, match=text) as err:
        holiwidget.explain(tiny, tiny_image(), layers="stage3", **kwargs)
    one_line(err)
    passes.remove()
    assert passes.count == 0


def test_largest_kernels_work(tiny) -> None:
    ds = holiwidget.explain(
        tiny, tiny_image(), layers="stage3", median=MAX_MEDIAN, box=MAX_BOX, threshold=0.3
    )
    att = ds.attribution.values
    assert np.isfinite(att).all() and att.min() >= 0 and att.max() <= 1
    assert json.loads(ds.attrs["parameters"])["median"] == MAX_MEDIAN
    # the median itself is right at the limit on the map that breaks OpenCV soonest (a
    # checkerboard of 0 and 255: it fails from 299 on): numpy's median of the same windows
    side = 224
    board = (np.indices((side, side)).sum(0) % 2).astype(np.float32)
    board[:40] = 1.0  # more ones than zeros near the top: medians of 1 there, 0 below
    wrap = low_pass_wrap(board, 1.0, MAX_MEDIAN, 1)
    padded = np.pad(np.round(board * 255).astype(np.uint8), MAX_MEDIAN // 2, mode="edge")
    for y, x in [(0, 0), (20, 100), (112, 112), (223, 223), (60, 5)]:
        window = padded[y : y + MAX_MEDIAN, x : x + MAX_MEDIAN]
        assert wrap[y, x] == np.median(window), (y, x)


# --------------------------------------------------------------------------------------
# 13. Devices a model cannot run on or come back from


@pytest.mark.parametrize("device", ["meta", "xla", torch.device("meta"), "cuda:7"])
def test_unusable_devices_are_refused_and_the_model_stays(tiny, device) -> None:
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    with pytest.raises(HoliwidgetError, match="device") as err:
        holiwidget.explain(tiny, tiny_image(), layers="stage3", device=device)
    one_line(err)
    with pytest.raises(HoliwidgetError, match="device"), prepared(tiny, torch.device("meta")):
        pass
    assert {p.device.type for p in tiny.parameters()} == {"cpu"}
    for k, v in tiny.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    x = prepare_images(tiny_image()).tensor
    with pytest.raises(HoliwidgetError, match="device"):
        insertion_deletion(tiny, x, np.ones((224, 224), np.float32), 0, device=device)
    assert next(tiny.parameters()).device.type == "cpu"


def test_model_on_the_meta_device_is_refused() -> None:
    model = TinyCNN().to("meta")
    with pytest.raises(HoliwidgetError, match="'meta' device") as err:
        holiwidget.explain(model, tiny_image(), layers="stage3", device="cpu")
    one_line(err)
    assert next(model.parameters()).device.type == "meta"
    assert resolve_device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------------------
# 14. A model whose weights hold NaN or inf


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_model_is_refused_after_one_pass(value) -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    with torch.no_grad():
        model.head.bias[3] = value
    passes = Passes(model)
    with pytest.raises(HoliwidgetError, match="output is not finite for image 'chelsea'") as err:
        holiwidget.explain(model, ["chelsea"], layers="stage3", methods="all")
    one_line(err)
    assert passes.count == 1  # the fundamental scale's pass only
    passes.remove()
    assert hook_count(model) == 0 and model.training is False

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    saliency = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    for call in (
        lambda: insertion_deletion(model, x, saliency, 0, step=64, device="cpu"),
        lambda: road_scores(model, x, saliency, 0, device="cpu"),
    ):
        with pytest.raises(HoliwidgetError, match="output is not finite") as err:
            call()
        one_line(err)


def test_nan_in_a_buffer_is_refused_too() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    model.stage2[1].running_var[0] = float("nan")
    with pytest.raises(HoliwidgetError, match="not finite"):
        holiwidget.explain(model, tiny_image(), layers="stage2", methods="eigencam")


# --------------------------------------------------------------------------------------
# 15. Python API types


@pytest.mark.parametrize(
    "target",
    [3, np.int64(3), np.int32(3), torch.tensor(3), np.array(3), torch.tensor([3]), [np.int8(3)]],
)
def test_integer_targets_of_every_kind_are_accepted(tiny, target) -> None:
    ds = holiwidget.explain(tiny, tiny_image(), layers="stage3", methods="gradcam", target=target)
    assert int(ds.target.values[0]) == 3


@pytest.mark.parametrize(
    "target", [3.0, 3.7, "12", True, torch.tensor(3.0), np.float32(3), [1.0], b"3", {"a": 1}]
)
def test_other_targets_are_refused(tiny, target) -> None:
    with pytest.raises(HoliwidgetError, match="class index") as err:
        holiwidget.explain(tiny, tiny_image(), layers="stage3", methods="gradcam", target=target)
    one_line(err)


def test_target_parsing_rules() -> None:
    assert class_index(np.uint8(7)) == 7 and class_index(torch.tensor(7)) == 7
    assert class_indices(torch.tensor([[1], [2]])) == [1, 2]
    assert class_indices(np.array([4, 5])) == [4, 5] and class_indices((1, 2)) == [1, 2]
    assert class_indices(torch.tensor(4)) == 4
    for bad in (np.array([1.0]), torch.tensor([True]), "7", 7.0, None):
        with pytest.raises(HoliwidgetError, match="class ind"):
            class_indices(bad)


def test_metric_targets_follow_the_same_rules(region_setup) -> None:
    model, x, bump = region_setup
    ok = insertion_deletion(model, x, bump, torch.tensor(0), step=64, device="cpu")
    ref = insertion_deletion(model, x, bump, 0, step=64, device="cpu")
    np.testing.assert_array_equal(ok.insertion.auc, ref.insertion.auc)
    for bad in (0.0, "0", torch.tensor(0.0)):
        with pytest.raises(HoliwidgetError, match="class index"):
            insertion_deletion(model, x, bump, bad, step=64, device="cpu")


@pytest.mark.parametrize(
    ("images", "text"),
    [
        (None, "images is None"),
        (5, "images is of type int"),
        (b"\x89PNG", "io.BytesIO"),
        ({"a": 1}, "of type dict"),
        ([None], "image 0 is a NoneType"),
        ([], "no images given"),
    ],
)
def test_images_of_the_wrong_type_are_refused(tiny, images, text) -> None:
    with pytest.raises(HoliwidgetError, match=text) as err:
        holiwidget.explain(tiny, images, layers="stage3")
    one_line(err)


def test_numpy_scalars_are_accepted_as_parameters(tiny) -> None:
    ds = holiwidget.explain(
        tiny,
        tiny_image(),
        layers="stage3",
        threshold=np.float32(0.5),
        median=np.int64(31),
        box=np.int16(61),
    )
    params = json.loads(ds.attrs["parameters"])
    assert (params["threshold"], params["median"], params["box"]) == (0.5, 31, 61)
    assert Denoising(np.float64(0.25)).threshold == 0.25
    with pytest.raises(HoliwidgetError, match="threshold"):
        Denoising(np.float32("nan"))


@pytest.fixture
def explorer(tiny) -> Explorer:
    ex = Explorer(tiny, methods=("holistic", "gradcam"), interactive=False)
    ex.dataset  # noqa: B018 (computes the first maps)
    assert ex.last_error is None, ex.last_error
    return ex


def test_explorer_refuses_bad_targets_and_empty_adds(explorer: Explorer, tmp_path) -> None:
    ex = explorer
    target = ex.session.target
    with pytest.raises(HoliwidgetError, match=r"got 3\.7") as err:
        ex.set_target(3.7)
    one_line(err)
    assert ex.session.target == target
    other = (target + 1) % 10
    ex.set_target(np.int64(other))
    assert int(ex.dataset["target"].values[0]) == other
    ex.set_target(torch.tensor(target))
    assert int(ex.dataset["target"].values[0]) == target

    with pytest.raises(HoliwidgetError, match="no images to add") as err:
        ex.add_images([])
    one_line(err)
    path = tmp_path / "given.png"
    Image.fromarray(tiny_image(3)).save(path)
    ex.add_images(str(path))  # plain paths are what is meant
    assert ex.dataset["image"].values[0] == "given"


def test_explorer_constructor_refuses_float_targets_and_non_images(tiny) -> None:
    with pytest.raises(HoliwidgetError, match=r"got 3\.7") as err:
        _ = Explorer(tiny, target=3.7, interactive=False).dataset
    one_line(err)
    with pytest.raises(HoliwidgetError, match="images is a int") as err:
        Explorer(tiny, images=5, interactive=False)
    one_line(err)


def test_explorer_threshold_slider_refuses_nan_and_goes_on(explorer: Explorer) -> None:
    ex = explorer
    ex.threshold.value = 0.3
    ex.threshold.value = float("nan")
    assert "threshold must be in (0, 1]" in ex.last_error
    assert ex.threshold.value == 0.3  # put back: a NaN would fail every later move
    ex.median.value = 31
    assert ex.last_error is None, ex.last_error
    params = json.loads(ex.dataset.attrs["parameters"])
    assert (params["threshold"], params["median"]) == (0.3, 31)


# --------------------------------------------------------------------------------------
# 16. 16-bit images


def _ramp16() -> np.ndarray:
    """A 16-bit horizontal ramp 0..65535 with a dark square: not one value over 8 bits."""
    ramp = np.tile(np.linspace(0, 65535, 80).round().astype(np.uint16), (60, 1))
    ramp[10:30, 10:30] = 1000
    return ramp


def test_16_bit_images_are_scaled_to_8_bits_everywhere(tmp_path) -> None:
    ramp = _ramp16()
    eight = np.round(ramp / 257).astype(np.uint8)
    want = prepare_images(eight).display
    png = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(png)
    with Image.open(png) as img:
        assert img.mode == "I;16"
        pil16 = img.copy()
    for given in (png, pil16, ramp, pil16.convert("I")):
        got = prepare_images(given).display
        np.testing.assert_array_equal(got, want)
    assert want.min() < 10 and want.max() > 245  # a ramp, not a blank white image
    # and uploaded to the explorer
    from holiwidget.explorer.sources import upload_sources

    (upload,) = upload_sources([{"name": "ramp16.png", "content": png.read_bytes()}])
    np.testing.assert_array_equal(prepare_images(upload.item).display, want)
    with pytest.raises(HoliwidgetError, match=r"0\.\.65535"):
        prepare_images(Image.fromarray(np.full((8, 8), 70000, np.int32)))
    with pytest.raises(HoliwidgetError, match=r"outside 0\.\.255"):
        prepare_images(np.full((8, 8), 300, np.int64))


# --------------------------------------------------------------------------------------
# 17. EXIF orientation


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied_to_files(tmp_path, orientation) -> None:
    stored = blocks(5)  # 40 rows, 70 columns, as stored
    png = tmp_path / "phone.png"
    Image.fromarray(stored).save(png, exif=exif(orientation))
    upright = upright_reference(stored, orientation)
    assert upright.shape[:2] == (70, 40)
    np.testing.assert_array_equal(prepare_images(png).display, prepare_images(upright).display)
    assert image_size(png) == (40, 70)  # width, height as displayed
    jpeg = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(jpeg, exif=exif(orientation), quality=95)
    assert image_size(jpeg) == (40, 70)
    got = prepare_images(jpeg).display.astype(int)
    assert np.abs(got - prepare_images(upright).display).mean() < 6  # JPEG's loss only


def test_evaluation_boxes_are_in_the_upright_frame(tmp_path, caplog) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    stored = blocks(6)
    Image.fromarray(stored).save(folder / "phone.jpg", exif=exif(6))
    csv_path = tmp_path / "boxes.csv"
    # the photo is 40 wide and 70 high as displayed: this box lies inside it, and a box
    # 50 pixels down would lie outside the stored 40-row frame
    csv_path.write_text("image,label,x0,y0,x1,y1\nphone.jpg,3,5,50,35,65\n")
    with caplog.at_level("WARNING", logger="holiwidget"):
        inputs = collect_inputs(folder, csv_path)
    boxes = inputs.items[0].boxes
    assert (boxes.width, boxes.height) == (40, 70)
    np.testing.assert_array_equal(boxes.boxes, [[5, 50, 35, 65]])
    assert not boxes.notes and not caplog.records


# --------------------------------------------------------------------------------------
# 18. Inputs too small for the explained layers: one rule for every kind


@pytest.mark.parametrize("side", [1, 3, 8])
def test_tiny_tensors_are_refused_naming_the_minimum(tiny, side) -> None:
    x = torch.zeros(1, 3, side, side)
    passes = Passes(tiny)
    with pytest.raises(HoliwidgetError, match=f"input {side}x{side} is too small") as err:
        holiwidget.explain(tiny, x, layers="stage1,stage3", methods="gradcam")
    message = one_line(err)
    passes.remove()
    assert "layer 'stage3' keeps 1x1 pixels" in message and "at least 9x9" in message
    ds = holiwidget.explain(tiny, torch.randn(1, 3, 9, 9), layers="stage3", methods="gradcam")
    assert ds.attribution.values.max() > 0  # 2x2 at stage3: a real map


def test_minimum_size_of_a_resnet_layer4(resnet) -> None:
    with pytest.raises(HoliwidgetError, match="layer 'layer4' keeps 1x1") as err:
        holiwidget.explain(resnet, torch.zeros(1, 3, 32, 32), layers="layer4", methods="gradcam")
    side = int(one_line(err).split("give inputs of at least ")[1].split("x")[0])
    assert side == 33
    ds = holiwidget.explain(
        resnet, torch.randn(1, 3, side, side), layers="layer4", methods="gradcam"
    )
    assert ds.attribution.shape[-2:] == (side, side)


def test_tiny_files_arrays_and_pil_images_are_resized_and_explained(tiny, tmp_path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(path)
    tiny3 = tiny_image(7)[:3, :3]
    ds = holiwidget.explain(
        tiny, [path, tiny3, Image.fromarray(tiny3)], layers="stage3", methods="gradcam"
    )
    assert ds.attribution.shape == (3, 1, 1, 224, 224)
    assert (ds.input.values[0] == (200, 30, 30)).all()
    with pytest.raises(HoliwidgetError, match="no pixels"):
        prepare_images(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(HoliwidgetError, match="no pixels"):
        prepare_images(torch.zeros(1, 3, 0, 4))


def test_passes_counter_counts_network_passes(tiny) -> None:
    # what the "before any pass" and "after one pass" checks above rely on
    passes = Passes(tiny)
    holiwidget.explain(tiny, tiny_image(), layers="stage3", methods=("gradcam", "holistic"))
    passes.remove()
    assert passes.count == 8
