"""Which layers are explained: the holistic stage of known networks, the general rule, names."""

from __future__ import annotations

import pytest
from conftest import hook_count, tiny_image

import holiwidget
from holiwidget import HoliwidgetError

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
