"""Tests of the checks run before the long steps (landtaxa.checks): the region, the truth, the disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasters import write_raster

from landtaxa.checks import check_disk, check_truth_overlap, image_region


def test_disk_check_message(tmp_path: Path) -> None:
    assert "need about 2.00 MB" in check_disk(2_000_000, tmp_path / "results", margin_gb=0)
    with pytest.raises(ValueError) as err:
        check_disk(2_000_000, tmp_path / "results", margin_gb=1e6)
    msg = str(err.value)
    assert f"{tmp_path / 'results'}: not enough disk space" in msg and "disk.margin_gb" in msg and "GB is free" in msg


def test_truth_overlap_is_judged_in_the_grid_s_crs(tmp_path: Path) -> None:
    """A truth raster in degrees over the region passes; the same raster one degree east, off the
    region, is refused with a message naming it and both extents."""
    image = write_raster(tmp_path / "2020-01-01_a.tif", np.ones((3, 40, 40), "uint16"), "EPSG:32631",
                         (500000, 4000000, 10))
    region = image_region([str(image)], tile_size=8)
    assert (region.width, region.height, region.n_tiles(8)) == (40, 40, 25)
    over = write_raster(tmp_path / "over.tif", np.ones((10, 10), "uint8"), "EPSG:4326",
                        (2.95, 36.2, 0.01))  # 2.95-3.05 E, 36.1-36.2 N: holds the region
    assert check_truth_overlap(str(over), region) is None
    off = write_raster(tmp_path / "off.tif", np.ones((10, 10), "uint8"), "EPSG:4326", (3.95, 36.2, 0.01))
    with pytest.raises(ValueError, match=r"off.tif: the truth raster does not overlap the region"):
        check_truth_overlap(str(off), region)
