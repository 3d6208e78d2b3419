"""Attribution datasets written to netCDF and zarr: round trips, and failed writes leave
nothing behind."""

from __future__ import annotations

import pytest
import xarray as xr
from conftest import tiny_image

import holiwidget
from holiwidget import HoliwidgetError


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
