"""The explorer's session model by itself: no widget, no figure, a real (tiny) torch model."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import holiwidget as hw
from holiwidget.explorer.export import caption, default_name, export_path, state_dataset
from holiwidget.explorer.providers import DatasetProvider, ModelProvider, Progress
from holiwidget.explorer.session import Session
from holiwidget.explorer.sources import upload_sources
from holiwidget.images import prepare_images
from holiwidget.metrics import causal

METHODS = ("holistic", "gradcam")


class Recorder(Progress):
    """Counts what a session reports: jobs begun and steps ticked."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.ticks = 0

    def begin(self, message: str, steps: int) -> None:
        self.jobs.append(message)

    def tick(self) -> None:
        self.ticks += 1


class Passes:
    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def session(tiny) -> Session:
    s = Session(ModelProvider(tiny, None, "auto", METHODS, device="cpu"), progress=Recorder())
    s.ensure()
    return s


def record(session: Session) -> list[str]:
    kinds: list[str] = []
    session.subscribe(kinds.append)
    return kinds


def test_first_maps_and_their_state(session: Session) -> None:
    ds = session.ds
    assert ds["attribution"].shape == (1, 2, 3, 224, 224)
    assert session.target == int(ds["top1"].values[0])
    assert (session.layer, session.method) == ("stage1", "holistic")
    assert session.note[1] == "ok" and "computed" in session.note[0]
    # The progress saw the top-5 pass and the pyramid's eight passes.
    assert len(session.progress.jobs) == 2 and session.progress.ticks == 1 + 8
    assert session.target_choices()[0][1] == session.target and len(session.target_choices()) == 5


def test_denoising_redenoises_without_a_pass_and_announces_maps(session: Session, tiny) -> None:
    passes, kinds = Passes(tiny), record(session)
    session.set_denoising(0.2, 31, 61)
    prim, fund = session.ds["primary"].values[0], session.ds["fundamental"].values[0]
    for li in range(3):
        cam, lpw = hw.holistic_map(prim[li], fund[li], 0.2, 31, 61)
        np.testing.assert_array_equal(session.ds["attribution"].values[0, 0, li], cam)
        np.testing.assert_array_equal(session.ds["lpw"].values[0, li], lpw)
    assert kinds == ["map", "maps"] and passes.count == 0
    assert "no network pass" in session.note[0] and "τ 0.20, m 31, b 61" in session.note[0]
    session.set_denoising(denoise=False)
    assert session.denoising_text() == "denoising off"
    with pytest.raises(hw.HoliwidgetError, match="odd"):
        session.set_denoising(median=40)
    with pytest.raises(hw.HoliwidgetError):
        session.set_denoising(threshold=float("nan"))
    assert (session.threshold, session.median) == (0.2, 31)  # a refused value changes nothing


def test_the_map_in_view_is_redenoised_before_the_others(session: Session) -> None:
    """The map in view is new when "map" is announced; the other layers by "maps"."""
    session.set_current(layer=str(session.ds["layer"].values[2]))
    at_map: list[np.ndarray] = []
    session.subscribe(
        lambda kind: kind == "map" and at_map.append(session.ds["attribution"].values[0, 0].copy())
    )
    session.set_denoising(0.3, 41, 71)
    prim, fund = session.ds["primary"].values[0], session.ds["fundamental"].values[0]
    cams = [hw.holistic_map(prim[li], fund[li], 0.3, 41, 71)[0] for li in range(3)]
    np.testing.assert_array_equal(at_map[0][2], cams[2])
    np.testing.assert_array_equal(session.ds["attribution"].values[0, 0], np.stack(cams))


def test_images_targets_and_the_cache(session: Session, tiny) -> None:
    passes, kinds = Passes(tiny), record(session)
    first = session.ds["attribution"].values.copy()
    session.show("sample:coffee")
    assert passes.count == 1 + 8 and kinds == ["busy", "busy", "dataset"]
    session.show("sample:chelsea")
    assert passes.count == 9 and "from the cache" in session.note[0]
    np.testing.assert_array_equal(session.ds["attribution"].values, first)
    session.search("class 7 (7)")
    assert session.target == 7 and 7 in [i for _, i in session.target_choices()]
    with pytest.raises(hw.HoliwidgetError, match="10 classes match"):
        session.search("class")
    with pytest.raises(hw.HoliwidgetError, match="no class name contains"):
        session.search("zebra")
    with pytest.raises(hw.HoliwidgetError, match="outside the model's 10 classes"):
        session.set_target(12)
    with pytest.raises(hw.HoliwidgetError):
        session.set_target(3.7)
    assert session.target == 7
    session.select(layers=["stage3", "stage2"], methods=["gradcam"])
    assert list(session.ds["layer"].values) == ["stage2", "stage3"]  # the model's order
    assert (session.layer, session.method) == ("stage2", "gradcam")
    with pytest.raises(hw.HoliwidgetError, match="select at least one layer"):
        session.select(layers=[])
    assert session.layers == ["stage2", "stage3"]
    with pytest.raises(hw.HoliwidgetError, match="relevancecam"):
        session.select(methods=["relevancecam"])  # no LRP rules for this model: refused
    assert session.methods == ["gradcam"]  # a failed selection leaves the state as it was


def test_current_probe_and_stale_curves(session: Session) -> None:
    kinds = record(session)
    session.set_current("stage2", "gradcam")
    session.probe_at(100, 30)
    assert kinds == ["current", "probe"]
    att = session.ds["attribution"].values[0]
    np.testing.assert_array_equal(session.probe_values().values, att[:, :, 100, 30])
    assert "pixel (y 100, x 30)" in session.note[0] and "Grad-CAM, stage2" in session.note[0]
    with pytest.raises(hw.HoliwidgetError, match="outside"):
        session.probe_at(500, 3)
    with pytest.raises(hw.HoliwidgetError, match="not shown"):
        session.set_current("stage9")

    session.set_current("stage2", "holistic")
    curves = session.compute_curves()
    assert curves["insertion"][1].shape == (225,)
    session.set_denoising(threshold=0.3)  # the current map changed: the curves are stale
    assert session.curves is None and session.curves_note.startswith("stale")
    session.compute_curves()
    session.show("sample:coffee")  # another image: nothing carried over
    assert session.curves is None and session.curves_note == "not computed"
    assert session.scores == {}


def test_score_all_equals_the_metrics_library_map_by_map(session: Session) -> None:
    scores = session.score_all()
    ds = session.ds
    assert len(scores) == 6
    x = prepare_images(ds["input"].values[0]).tensor[:1]
    for (layer, method), (ins, dele) in scores.items():
        li, mi = list(ds["layer"].values).index(layer), list(ds["cam"].values).index(method)
        one = causal.insertion_deletion(
            session.provider.model, x, ds["attribution"].values[0, mi, li][None], [session.target],
            device="cpu",
        )  # fmt: skip
        assert ins == pytest.approx(float(one.insertion.auc[0]), abs=1e-6)
        assert dele == pytest.approx(float(one.deletion.auc[0]), abs=1e-6)
    saved = state_dataset(session)
    assert saved["insertion_auc"].dims == ("cam", "layer")
    assert np.isfinite(saved["deletion_auc"].values).all()
    # Re-denoising drops only Holistic-CAM's scores (its maps changed).
    session.set_denoising(threshold=0.4)
    assert {m for _, m in session.scores} == {"gradcam"}


def test_uploads_keep_their_names_and_exports_say_what_they_hold(session: Session) -> None:
    png = io.BytesIO()
    Image.new("RGB", (30, 20), "red").save(png, format="PNG")
    sources = upload_sources([{"name": "red square.png", "content": png.getvalue()}])
    session.add_images(sources)
    assert session.ds["image"].values[0] == "red square"
    name = default_name(session)
    assert name == f"red-square_TinyCNN_class{session.target}_tau0.50_m51_b91"
    assert "red square | TinyCNN | class" in caption(session)
    assert "Holistic-CAM, stage1" in caption(session) and "τ 0.50, m 51, b 91" in caption(session)
    assert export_path("", "figure", name) == Path(name + ".png")
    assert export_path("state.svg", "dataset", name) == Path("state.nc")


def test_browsing_a_saved_dataset(session: Session, tmp_path: Path) -> None:
    session.set_denoising(threshold=0.3)
    path = hw.save_dataset(state_dataset(session), tmp_path / "state.nc")
    browse = Session(DatasetProvider(path))
    assert not browse.explains and browse.threshold == pytest.approx(0.3)
    browse.ensure()
    np.testing.assert_array_equal(browse.ds["attribution"].values, session.ds["attribution"].values)
    assert browse.target_choices() == [(browse.target_choices()[0][0], session.target)]
    for act, why in (
        (lambda: browse.set_target(1), "target is fixed"),
        (browse.compute_curves, "insertion and deletion needs a model"),
        (lambda: browse.search("cat"), "searching classes needs a model"),
        (lambda: browse.add_images(upload_sources([])) or browse.add_images([]), "no images"),
    ):
        with pytest.raises(hw.HoliwidgetError, match=why):
            act()
    settings = json.loads(state_dataset(session).attrs["explorer"])
    assert settings["colormap"] == "jet" and settings["layer"] == "stage1"


def test_look_is_checked(session: Session) -> None:
    session.set_look(opacity=0.8, cmap="turbo")
    assert (session.opacity, session.cmap) == (0.8, "turbo")
    with pytest.raises(hw.HoliwidgetError, match="unknown colormap"):
        session.set_look(cmap="rainbow")
    with pytest.raises(hw.HoliwidgetError, match="opacity"):
        session.set_look(opacity=2)


def test_the_session_needs_no_widget() -> None:
    """In a fresh interpreter, a whole session (passes, re-denoising, scores) imports
    neither ipywidgets nor the explorer's canvas widget (anywidget)."""
    code = """
import sys, torch
from torch import nn
from holiwidget.explorer.providers import ModelProvider
from holiwidget.explorer.session import Session
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(4, 3)).eval()
s = Session(ModelProvider(net, None, ["1"], ["gradcam"], device="cpu"))
s.ensure(); s.probe_at(5, 5); s.set_current("1", "gradcam")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("ipywidgets", "anywidget", "IPython")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
