"""Clouds and nodata in alignment: mask rasters, class bands, nodata override; header checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rasterio.crs import CRS
from rasters import read_raster, write_raster

from landtaxa.align import align_date
from landtaxa.grid import Grid
from landtaxa.inventory import InventoryError, check_images

UTM = "EPSG:32631"
X0, Y0, RES, TS = 500000.0, 4000000.0, 10.0, 8


def grid(bands=(1, 2), dtype="uint16") -> Grid:
    return Grid(crs=CRS.from_string(UTM).to_wkt(), transform=(RES, 0.0, X0, 0.0, -RES, Y0), width=16, height=16,
                tile_size=TS, bands=list(bands), dtype=dtype, scale_min=[0.0] * len(bands),
                scale_max=[1.0] * len(bands))


def image(tmp_path: Path, name: str, value: int, bands: int = 2, nodata=None) -> Path:
    return write_raster(tmp_path / name, np.full((bands, 16, 16), value, "uint16"), UTM, (X0, Y0, RES), nodata=nodata)


def test_mask_raster_flags_cloudy_pixels(tmp_path: Path) -> None:
    img = image(tmp_path, "img.tif", 500)
    cloud = np.zeros((16, 16), "uint8")
    cloud[:8, :8] = 1  # the top-left tile is fully clouded
    cloud[8:, 8:12] = 1  # half of the bottom-right tile
    msk = write_raster(tmp_path / "cloud.tif", cloud, UTM, (X0, Y0, RES))
    fr = align_date(grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[1])
    np.testing.assert_allclose(fr, [[0.0, 1.0], [1.0, 0.5]])
    _, valid, _ = read_raster(tmp_path / "a.tif")
    np.testing.assert_array_equal(valid, cloud == 0)


def test_mask_of_the_first_granule_lets_the_second_fill_in(tmp_path: Path) -> None:
    first, second = image(tmp_path, "first.tif", 100), image(tmp_path, "second.tif", 200)
    cloud = np.zeros((16, 16), "uint8")
    cloud[:, :8] = 1
    msk = write_raster(tmp_path / "cloud.tif", cloud, UTM, (X0, Y0, RES))
    align_date(grid(), [first, second], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk, None], invalid_values=[1])
    data, valid, _ = read_raster(tmp_path / "a.tif")
    assert valid.all()
    assert (data[:, :, :8] == 200).all() and (data[:, :, 8:] == 100).all()


def test_valid_pixel_mask_with_invalid_zero_and_mask_footprint(tmp_path: Path) -> None:
    """A 1 = clear mask (e.g. IS_VALID) uses invalid [0]; outside the mask's footprint is invalid."""
    img = image(tmp_path, "img.tif", 500)
    clear = np.ones((16, 8), "uint8")  # the mask covers only the left half
    clear[0, 0] = 0
    msk = write_raster(tmp_path / "valid.tif", clear, UTM, (X0, Y0, RES))
    fr = align_date(grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[0])
    np.testing.assert_allclose(fr, [[63 / 64, 0.0], [1.0, 0.0]])


def test_class_band_of_the_image(tmp_path: Path) -> None:
    """Sentinel-2 SCL style: band 3 holds classes; 9 (cloud) and 3 (shadow) are invalid, 4 (vegetation) not."""
    arr = np.full((3, 16, 16), 700, "uint16")
    arr[2] = 4
    arr[2, :4, :] = 9
    arr[2, 12:, :4] = 3
    img = write_raster(tmp_path / "scl.tif", arr, UTM, (X0, Y0, RES))
    fr = align_date(grid(bands=(1, 2)), [img], tmp_path / "a.tif", tmp_path / "a.npz", mask_band=3,
                    invalid_values=[3, 8, 9])
    _, valid, _ = read_raster(tmp_path / "a.tif")
    assert valid.sum() == 256 - 64 - 16
    assert not valid[:4].any() and not valid[12:, :4].any()
    np.testing.assert_allclose(fr, [[0.5, 0.5], [0.75, 1.0]])


def test_nodata_override(tmp_path: Path) -> None:
    """A raster without a nodata tag whose 0 means missing: the config's nodata=0 masks it."""
    arr = np.full((2, 16, 16), 300, "uint16")
    arr[:, :8, :] = 0
    img = write_raster(tmp_path / "img.tif", arr, UTM, (X0, Y0, RES))
    fr_tag = align_date(grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz")
    fr_cfg = align_date(grid(), [img], tmp_path / "b.tif", tmp_path / "b.npz", nodata=0)
    np.testing.assert_allclose(fr_tag, 1.0)
    np.testing.assert_allclose(fr_cfg, [[0.0, 0.0], [1.0, 1.0]])


def test_mask_without_crs_is_refused(tmp_path: Path) -> None:
    img = image(tmp_path, "img.tif", 500)
    msk = write_raster(tmp_path / "nocrs.tif", np.zeros((16, 16), "uint8"), None, (X0, Y0, RES))
    with pytest.raises(ValueError, match="nocrs.tif: mask raster has no CRS"):
        align_date(grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[1])
    assert not (tmp_path / "a.tif").exists()


def junk(path: Path) -> Path:
    path.write_text("not a raster")
    return path


def sheet(*paths, masks=None) -> pd.DataFrame:
    return pd.DataFrame({"date": [f"2020-01-0{i + 1}" for i in range(len(paths))], "granule": "g",
                         "path": [str(p) for p in paths], "mask": masks or [""] * len(paths)})


def test_check_images_accepts_a_consistent_archive(tmp_path: Path) -> None:
    check_images(sheet(image(tmp_path, "a.tif", 1), image(tmp_path, "b.tif", 2)), bands=[2])


@pytest.mark.parametrize(
    ("make_second", "message"),
    [
        (lambda p: image(p, "b.tif", 2, bands=3), "b.tif: has 3 bands but .*a.tif has 2"),
        (lambda p: write_raster(p / "b.tif", np.ones((2, 16, 16), "float32"), UTM, (X0, Y0, RES)),
         "b.tif: data type float32 differs from .*a.tif \\(uint16\\)"),
        (lambda p: write_raster(p / "b.tif", np.ones((2, 16, 16), "uint16"), None, (X0, Y0, RES)),
         "b.tif: raster has no CRS"),
        (lambda p: junk(p / "b.tif"), "b.tif: not a readable raster"),
    ],
)
def test_check_images_names_the_file_and_problem(tmp_path: Path, make_second, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        check_images(sheet(image(tmp_path, "a.tif", 1), make_second(tmp_path)))


def test_check_images_band_beyond_count_and_bad_mask(tmp_path: Path) -> None:
    a = image(tmp_path, "a.tif", 1)
    with pytest.raises(InventoryError, match="a.tif: has 2 bands, the config asks for band 4"):
        check_images(sheet(a), bands=[1, 4])
    with pytest.raises(InventoryError, match="a.tif: has 2 bands, the config asks for band 3"):
        check_images(sheet(a), mask_band=3)
    (tmp_path / "m.tif").write_text("junk")
    with pytest.raises(InventoryError, match="m.tif: not a readable mask raster"):
        check_images(sheet(a, masks=[str(tmp_path / "m.tif")]))
