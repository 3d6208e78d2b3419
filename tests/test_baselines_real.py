"""Relevance-CAM and IIA on real networks at their holistic stages, one 224 x 224 image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import holiwidget as hw
from holiwidget.layers import resolve_layers
from holiwidget.methods.iia import finish_iia, iia
from holiwidget.methods.relevance import finish_relevancecam, relevancecam


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return hw.images.prepare_images(["chelsea"]).tensor


def _model(name: str, weights: Path) -> torch.nn.Module:
    if name == "mobilenet_v2":
        return hw.load_model(name, weights=weights)
    torch.manual_seed(0)
    return hw.load_model(name, weights=None)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16_bn"])
def test_holistic_stages(name, image, mobilenet_weights):
    model = _model(name, mobilenet_weights)
    layers = resolve_layers(model, hw.holistic_stage(model))
    with torch.no_grad():
        logits = model(image)
    targets = logits.argmax(1)
    if name == "mobilenet_v2":
        assert 281 <= int(targets) <= 285  # the real weights see a cat
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with hw.capture.prepared(model):
        raw = {
            "relevancecam": relevancecam(model, layers, image, targets),
            "iia": iia(model, layers, image, targets),
        }
    finish = {"relevancecam": finish_relevancecam, "iia": finish_iia}
    for method, maps in raw.items():
        assert list(maps) == list(layers)
        for layer, native in maps.items():
            assert native.dim() == 3 and native.shape[0] == 1
            out = finish[method](native, (224, 224))
            assert out.shape == (1, 224, 224), (method, layer)
            assert torch.isfinite(out).all(), (method, layer)
            assert out.min() >= 0 and out.max() <= 1, (method, layer)
            assert out.max() - out.min() > 0.5, (method, layer)  # not constant
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
