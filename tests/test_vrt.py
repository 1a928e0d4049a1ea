"""VRTs in physical units: bands stacked on the finest band's lattice, resampling, rewrites, plain rasters."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from rasters import write_raster
from stac_archive import SCALE, make_archive, physical, read_vrt

from landtaxa.inputs import vrt
from landtaxa.inputs.datasets import InventoryError


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("stac"))


def test_coarser_bands_follow_the_chosen_resampling(archive, tmp_path: Path) -> None:
    item = archive.items[0]
    hrefs = [str(archive.asset_path(item.item_id, b)) for b in ("B11", "B04")]
    nearest, _ = read_vrt(vrt.write_vrt(hrefs, tmp_path / "n.vrt", [SCALE] * 2, [0, 0]))
    bilinear, _ = read_vrt(vrt.write_vrt(hrefs, tmp_path / "b.vrt", [SCALE] * 2, [0, 0], resampling="bilinear"))
    assert nearest.shape == (2, 12, 12)  # the finest band's lattice, whatever the band order
    np.testing.assert_array_equal(nearest[1], bilinear[1])
    assert not np.allclose(nearest[0][np.isfinite(nearest[0]) & np.isfinite(bilinear[0])],
                           bilinear[0][np.isfinite(nearest[0]) & np.isfinite(bilinear[0])])
    with pytest.raises(ValueError, match="resampling 'fancy' is not one of"):
        vrt.write_vrt(hrefs, tmp_path / "x.vrt", resampling="fancy")


def test_unchanged_vrt_is_not_rewritten(archive, tmp_path: Path) -> None:
    hrefs = [str(archive.asset_path(archive.items[0].item_id, "B04"))]
    path = vrt.write_vrt(hrefs, tmp_path / "a.vrt", [SCALE], [0.0])
    os.utime(path, (1_000_000, 1_000_000))
    vrt.write_vrt(hrefs, path, [SCALE], [0.0])
    assert path.stat().st_mtime == 1_000_000  # Snakemake sees nothing new
    vrt.write_vrt(hrefs, path, [SCALE], [-0.1])
    assert path.stat().st_mtime != 1_000_000
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_wrap_raster_gives_a_plain_raster_physical_units(tmp_path: Path) -> None:
    dn = np.stack([np.full((4, 5), 1000 + 100 * b, np.uint16) for b in range(3)])
    dn[:, 0, 0] = 0
    path = write_raster(tmp_path / "img.tif", dn, "EPSG:32631", (500000, 4000000, 10), nodata=0)
    got, profile = read_vrt(vrt.wrap_raster(path, tmp_path / "img.vrt", 1e-4, -0.1))
    assert profile["count"] == 3 and profile["dtype"] == "float32"
    np.testing.assert_allclose(got, physical(dn, -0.1), atol=1e-6)
    got, _ = read_vrt(vrt.wrap_raster(path, tmp_path / "b.vrt", [1e-4, 1e-4, 1.0], [0, 0, 0]))
    np.testing.assert_allclose(got[2, 1:, 1:], 1200)  # a class band kept as it is
    assert vrt.parse_band_values("1e-4, 2e-4;3", "s") == [1e-4, 2e-4, 3.0]
    assert vrt.parse_band_values(float("nan"), "s") is None and vrt.parse_band_values(" ", "s") is None
    with pytest.raises(InventoryError, match=r"sheet, row 2: cannot read 'x' as numbers"):
        vrt.parse_band_values("x", "sheet, row 2")
    with pytest.raises(InventoryError, match=r"img.tif: 2 scale values given for its 3 bands"):
        vrt.wrap_raster(path, tmp_path / "c.vrt", [1e-4, 1e-4])


def test_gdal_strings_are_read_without_assuming_local_files(archive, tmp_path: Path) -> None:
    item = archive.items[0]
    zipped = tmp_path / "assets.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(archive.asset_path(item.item_id, "B04"), "B04.tif")
    path = vrt.write_vrt([f"/vsizip/{zipped}/B04.tif"], tmp_path / "z.vrt", [SCALE], [item.offset])
    got, _ = read_vrt(path)
    np.testing.assert_allclose(got[0], physical(item.dn["B04"], item.offset), atol=1e-6)
    with pytest.raises(InventoryError, match=r"/vsizip/.*/nothing.tif: raster: not a readable raster \(GDAL: "):
        vrt.write_vrt([f"/vsizip/{zipped}/nothing.tif"], tmp_path / "y.vrt")


def test_vrt_of_sources_in_two_crss_is_refused(archive, tmp_path: Path) -> None:
    a = archive.asset_path("S2A_30TYQ_20220110_0_L2A", "B04")
    b = archive.asset_path("S2B_31TCL_20220110_0_L2A", "B04")
    with pytest.raises(InventoryError, match=r"B04.tif: its CRS \(EPSG:32631\) differs from .*EPSG:32630"):
        vrt.write_vrt([str(a), str(b)], tmp_path / "x.vrt")
    with pytest.raises(InventoryError, match=r"nowhere.tif: raster: file not found"):
        vrt.write_vrt([str(tmp_path / "nowhere.tif")], tmp_path / "x.vrt")
    assert not (tmp_path / "x.vrt").exists()
