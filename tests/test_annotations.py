"""The annotation CSV reader of the evaluation."""

from __future__ import annotations

from holiwidget.evaluation import read_annotations


def test_read_annotations_of_the_shared_set(shared) -> None:
    ann = read_annotations(shared / "data" / "imagenet-val-1300" / "annotations.csv")
    assert len(ann) == 1300 and sum(len(a.boxes) for a in ann.values()) == 1943
    first = ann["ILSVRC2012_val_00000347.JPEG"]
    assert first.label == 472 and first.boxes.shape == (8, 4)
    m = first.mask()
    assert m.shape == (224, 224) and 0 < m.mean() < 1
