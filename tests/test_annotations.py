"""The annotation CSV reader of the evaluation."""

from __future__ import annotations

import codecs
import logging

import numpy as np
import pytest
from clirun import run_cli
from PIL import Image

from holiwidget.errors import HoliwidgetError
from holiwidget.evaluation import collect_inputs, read_annotations


def test_read_annotations_of_the_shared_set(shared) -> None:
    ann = read_annotations(shared / "data" / "imagenet-val-1300" / "annotations.csv")
    assert len(ann) == 1300 and sum(len(a.boxes) for a in ann.values()) == 1943
    first = ann["ILSVRC2012_val_00000347.JPEG"]
    assert first.label == 472 and first.boxes.shape == (8, 4)
    m = first.mask()
    assert m.shape == (224, 224) and 0 < m.mean() < 1


# ----------------------------------------------------------------------------- encodings

_CSV = "image,label,width,height,x0,y0,x1,y1\ncafé.jpg,3,100,80,10,10,50,50\n"


def test_utf8_with_a_byte_order_mark_is_read(tmp_path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(_CSV, encoding="utf-8-sig")
    assert path.read_bytes().startswith(codecs.BOM_UTF8)
    ann = read_annotations(path)
    assert list(ann) == ["café.jpg"] and ann["café.jpg"].label == 3


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (_CSV.encode("latin-1"), r"is not UTF-8 text: byte 0xe9 on line 2"),
        (_CSV.encode("utf-16"), "is UTF-16 text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "is not UTF-8 text"),
        (b"image,label\nx.jpg,1\x00\x00\n", "NUL byte on line 2"),
    ],
    ids=["latin-1", "utf-16", "binary", "nul"],
)
def test_other_encodings_are_refused_in_one_line(tmp_path, data, text) -> None:
    path = tmp_path / "annotations.csv"
    path.write_bytes(data)
    with pytest.raises(HoliwidgetError, match=text) as err:
        read_annotations(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message


# ------------------------------------------------- duplicated rows, dropped boxes (logged)


def test_duplicate_rows_count_once_and_are_reported(tmp_path, caplog) -> None:
    path = tmp_path / "annotations.csv"
    rows = [
        "image,label,width,height,x0,y0,x1,y1,wnid",
        "a.jpg,3,100,80,10,10,50,50,n1",
        "a.jpg,3,100,80,10,10,50,50,n1",  # the same row again
        "a.jpg,3,100,80,10.0,10,50,50,n1",  # the same box written otherwise
        "a.jpg,3,100,80,20,20,60,60,n1",
        "b.jpg,4,100,80,,,,,n2",
        "b.jpg,4,100,80,,,,,n2",
    ]
    path.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="holiwidget"):
        ann = read_annotations(path)
    np.testing.assert_array_equal(ann["a.jpg"].boxes, [[10, 10, 50, 50], [20, 20, 60, 60]])
    assert len(ann["b.jpg"].boxes) == 0
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "3 duplicate row(s) ignored (line 3 repeats line 2, line 4 repeats line 2" in (
        warned[0].getMessage()
    )


def test_each_dropped_box_is_a_warning_line(tmp_path, caplog) -> None:
    path = tmp_path / "annotations.csv"
    rows = [
        "image,label,width,height,x0,y0,x1,y1",
        "a.jpg,3,100,80,50,10,20,40",  # x1 < x0
        "a.jpg,3,100,80,120,10,150,40",  # right of the image
        "a.jpg,3,100,80,90,10,150,40",  # reaches outside: clipped, kept (not a warning)
    ]
    path.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO, logger="holiwidget"):
        ann = read_annotations(path)
    np.testing.assert_array_equal(ann["a.jpg"].boxes, [[90, 10, 100, 40]])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "a.jpg: box (50, 10, 20, 40) is empty or outside the 100x80 image; dropped",
        "a.jpg: box (120, 10, 150, 40) is empty or outside the 100x80 image; dropped",
    ]
    assert len(ann["a.jpg"].notes) == 3  # the clipped box is noted too


def test_boxes_without_a_size_are_checked_against_the_file(tmp_path, caplog) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (60, 40), "white").save(folder / "a.png")
    path = tmp_path / "annotations.csv"
    path.write_text("image,label,x0,y0,x1,y1\na.png,1,70,5,90,20\na.png,1,5,5,20,20\n")
    with caplog.at_level(logging.WARNING, logger="holiwidget"):
        inputs = collect_inputs(folder, path)
        boxes = inputs.items[0].boxes
        again = boxes.sized(60, 40)  # what scoring does: nothing new to say
    assert (boxes.width, boxes.height) == (60, 40)
    np.testing.assert_array_equal(boxes.boxes, [[5, 5, 20, 20]])
    np.testing.assert_array_equal(again.boxes, boxes.boxes)
    assert [r.getMessage() for r in caplog.records] == [
        "a.png: box (70, 5, 90, 20) is empty or outside the 60x40 image; dropped"
    ]


def test_dropped_boxes_are_warnings_on_the_command_line(tmp_path, mobilenet_weights) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)).save(
        folder / "a.png"
    )
    path = tmp_path / "annotations.csv"
    path.write_text("image,label,x0,y0,x1,y1\na.png,1,70,5,90,20\na.png,1,5,5,20,20\n")
    code, _, stderr = run_cli(
        [
            "evaluate",
            *("--images", folder, "--annotations", path),
            *("--model", "mobilenet_v2", "--weights", mobilenet_weights),
            *("--layers", "features.18", "--methods", "gradcam", "--metrics", "epg"),
            *("--no-progress", "--output", tmp_path / "r.zarr"),
        ]
    )
    assert code == 0, stderr
    assert stderr.splitlines() == [
        "holiwidget: warning: a.png: box (70, 5, 90, 20) is empty or outside the 60x40 image; "
        "dropped"
    ]
