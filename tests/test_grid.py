"""Tests of the common tile grid (landtaxa.inputs.grid)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_points
from rasterio.windows import Window
from rasters import write_raster

from landtaxa.inputs.grid import Grid, build_grid, pixel_areas_km2, tile_areas_km2

UTM31 = "EPSG:32631"
UTM30 = "EPSG:32630"

# Granule A: 30 rows x 40 cols of 10 m pixels, upper-left corner off the 10 m multiples.
A_ORIGIN = (500003.0, 4000007.0)
# Granule B: 20 rows x 50 cols, shifted by half a pixel off A's lattice.
B_ORIGIN = (A_ORIGIN[0] + 205.0, A_ORIGIN[1] - 155.0)


@pytest.fixture
def two_granules(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((2, 30, 40), "uint16"), UTM31, (*A_ORIGIN, 10.0))
    b = write_raster(tmp_path / "b.tif", np.ones((2, 20, 50), "uint16"), UTM31, (*B_ORIGIN, 10.0))
    return a, b


def _edge_points(bounds, n=200):
    """Points along the border of a (left, bottom, right, top) box."""
    left, bottom, right, top = bounds
    t = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([left + t * (right - left), np.full(n, right), right - t * (right - left), np.full(n, left)])
    ys = np.concatenate([np.full(n, top), top - t * (top - bottom), np.full(n, bottom), bottom + t * (top - bottom)])
    return xs, ys


# --- geometry --------------------------------------------------------------------------


def test_grid_covers_union_snapped_to_first_lattice_and_padded_to_tiles(two_granules):
    grid = build_grid(two_granules, tile_size=16, scale_min=0, scale_max=1)
    # Union: x 500003 .. 500708 (B's right edge), y 3999652 (B's bottom) .. 4000007.
    # On A's lattice: right 500708 -> 500713 (71 px), bottom 3999652 -> 3999647 (36 px).
    # Padded to whole 16 px tiles: 80 x 48 px.
    assert grid.transform == (10.0, 0.0, 500003.0, 0.0, -10.0, 4000007.0)
    assert grid.affine == Affine(10.0, 0.0, 500003.0, 0.0, -10.0, 4000007.0)
    assert CRS.from_wkt(grid.crs) == CRS.from_string(UTM31)
    assert (grid.width, grid.height) == (80, 48)
    assert (grid.n_cols, grid.n_rows, grid.n_tiles) == (5, 3, 15)
    assert grid.resolution == 10.0
    assert grid.tile_size == 16
    assert grid.tile_metres == 160.0
    assert grid.bands == [1, 2]
    assert grid.n_bands == 2
    assert grid.dtype == "uint16"
    assert grid.bounds == pytest.approx((500003.0, 4000007.0 - 480.0, 500003.0 + 800.0, 4000007.0))
    # Both footprints lie inside the grid.
    left, bottom, right, top = grid.bounds
    assert left <= A_ORIGIN[0] and top >= A_ORIGIN[1]
    assert right >= B_ORIGIN[0] + 500 and bottom <= B_ORIGIN[1] - 200


def test_origin_follows_the_first_granules_lattice(two_granules):
    a, b = two_granules
    grid = build_grid([b, a], tile_size=16, scale_min=0, scale_max=1)
    # B's lattice is x = 500208 + 10 k, y = 3999852 + 10 k; A's corner (500003, 4000007)
    # snaps outwards to (499998, 4000012).
    assert grid.transform == (10.0, 0.0, 499998.0, 0.0, -10.0, 4000012.0)
    assert (grid.width, grid.height) == (80, 48)  # 72 x 37 px padded


def test_tile_transform_window_and_rowcol(two_granules):
    grid = build_grid(two_granules, tile_size=16, scale_min=0, scale_max=1)
    assert grid.tile_transform == grid.affine @ Affine.scale(16)
    assert grid.tile_transform == Affine(160.0, 0.0, 500003.0, 0.0, -160.0, 4000007.0)
    # Tile ids run row-major over 3 rows x 5 cols.
    assert grid.tile_window(0) == Window(0, 0, 16, 16)
    assert grid.tile_window(7) == Window(32, 16, 16, 16)
    assert grid.tile_window(14) == Window(64, 32, 16, 16)
    rows, cols = grid.tile_rowcol(np.array([0, 4, 5, 7, 14]))
    assert rows.tolist() == [0, 0, 1, 1, 2]
    assert cols.tolist() == [0, 4, 0, 2, 4]
    # The tile map pixel of a tile covers the same ground as the tile's window.
    for tid in (0, 7, 14):
        r, c = grid.tile_rowcol(tid)
        win = grid.tile_window(tid)
        assert grid.tile_transform @ (c, r) == grid.affine @ (win.col_off, win.row_off)


def test_resolution_override_keeps_the_first_granules_origin(two_granules):
    grid = build_grid(two_granules, tile_size=16, resolution=20.0, scale_min=0, scale_max=1)
    # 20 m lattice through (500003, 4000007): right 500708 -> 500723 (36 px),
    # bottom 3999652 -> 3999647 (18 px); padded to 48 x 32 px.
    assert grid.transform == (20.0, 0.0, 500003.0, 0.0, -20.0, 4000007.0)
    assert grid.resolution == 20.0
    assert (grid.width, grid.height) == (48, 32)
    assert grid.tile_metres == 320.0


def test_granule_in_another_crs_is_included(tmp_path):
    # A in UTM 31N just east of 0 deg longitude; B in UTM 30N, on the other side of the zone border.
    a_bounds = (250000.0, 4430010.0 - 3000.0, 253000.0, 4430010.0)
    b_bounds = (752000.0, 4432000.0 - 3000.0, 755000.0, 4432000.0)
    a = write_raster(tmp_path / "a.tif", np.ones((1, 100, 100), "uint8"), UTM31, (250000.0, 4430010.0, 30.0))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 100, 100), "uint8"), UTM30, (752000.0, 4432000.0, 30.0))
    grid = build_grid([a, b], tile_size=32, scale_min=0, scale_max=1)
    assert CRS.from_wkt(grid.crs) == CRS.from_string(UTM31)
    assert grid.resolution == 30.0
    # Origin on A's lattice.
    assert (grid.transform[2] - 250000.0) / 30.0 == pytest.approx(round((grid.transform[2] - 250000.0) / 30.0))
    assert (grid.transform[5] - 4430010.0) / 30.0 == pytest.approx(round((grid.transform[5] - 4430010.0) / 30.0))
    # B's footprint, transformed point by point into UTM 31N.
    bx, by = warp_points(UTM30, UTM31, *_edge_points(b_bounds))
    ax, ay = _edge_points(a_bounds)
    xs, ys = np.concatenate([ax, bx]), np.concatenate([ay, by])
    assert min(xs) < 250000.0  # B really extends the region westwards
    left, bottom, right, top = grid.bounds
    assert left <= min(xs) + 1e-6 and right >= max(xs) - 1e-6
    assert bottom <= min(ys) + 1e-6 and top >= max(ys) - 1e-6
    # ... and the grid is tight: at most one pixel of snapping beyond the union (left, top)
    # and less than one tile of padding (right, bottom).
    assert left > min(xs) - 30.0 - 1.0 and top < max(ys) + 30.0 + 1.0
    assert right < max(xs) + 32 * 30.0 and bottom > min(ys) - 32 * 30.0
    assert grid.width % 32 == 0 and grid.height % 32 == 0
    expected_w = math.ceil(round((max(xs) - left) / 30.0, 6) / 32) * 32
    assert grid.width == expected_w


def test_crs_override_reprojects_all_footprints(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 100, 100), "uint8"), UTM31, (250000.0, 4430010.0, 30.0))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 100, 100), "uint8"), UTM30, (752000.0, 4432000.0, 30.0))
    grid = build_grid([a, b], tile_size=16, crs=UTM30, resolution=60.0, scale_min=0, scale_max=1)
    assert CRS.from_wkt(grid.crs) == CRS.from_string(UTM30)
    assert grid.resolution == 60.0
    # A target CRS other than the first granule's puts the lattice through (0, 0).
    assert grid.transform[2] % 60.0 == pytest.approx(0.0, abs=1e-6)
    assert grid.transform[5] % 60.0 == pytest.approx(0.0, abs=1e-6)
    ax, ay = warp_points(UTM31, UTM30, *_edge_points((250000.0, 4427010.0, 253000.0, 4430010.0)))
    bx, by = _edge_points((752000.0, 4429000.0, 755000.0, 4432000.0))
    xs, ys = np.concatenate([ax, bx]), np.concatenate([ay, by])
    left, bottom, right, top = grid.bounds
    assert left <= min(xs) + 1e-6 < left + 60.0 + 1.0
    assert top >= max(ys) - 1e-6 > top - 60.0 - 1.0
    assert right >= max(xs) - 1e-6 and bottom <= min(ys) + 1e-6


def test_crs_override_equal_to_first_keeps_its_lattice(two_granules):
    grid = build_grid(two_granules, tile_size=16, crs="EPSG:32631", scale_min=0, scale_max=1)
    assert grid.transform == (10.0, 0.0, 500003.0, 0.0, -10.0, 4000007.0)


def test_band_subset(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((4, 20, 20), "uint16"), UTM31, (0.0, 200.0, 10.0))
    grid = build_grid([a], tile_size=16, bands=[3, 1], scale_min=[0, 1], scale_max=[10, 20])
    assert grid.bands == [3, 1]
    assert grid.n_bands == 2
    assert grid.scale_min == [0.0, 1.0] and grid.scale_max == [10.0, 20.0]


# --- scaling ---------------------------------------------------------------------------


def _ramp_raster(tmp_path, name="ramp.tif", **kwargs):
    ramp = np.arange(10000, dtype="float32").reshape(100, 100)
    return write_raster(tmp_path / name, np.stack([ramp, 2 * ramp + 5]), UTM31, (0.0, 1000.0, 10.0), **kwargs)


def test_explicit_scalar_scaling(tmp_path):
    grid = build_grid([_ramp_raster(tmp_path)], tile_size=16, scale_min=100, scale_max=3000.5)
    assert grid.scale_min == [100.0, 100.0]
    assert grid.scale_max == [3000.5, 3000.5]


def test_explicit_per_band_scaling(tmp_path):
    grid = build_grid([_ramp_raster(tmp_path)], tile_size=16, scale_min=[0, -5], scale_max=[10, 50])
    assert grid.scale_min == [0.0, -5.0]
    assert grid.scale_max == [10.0, 50.0]


def test_scaling_mixes_explicit_and_data_derived(tmp_path):
    grid = build_grid([_ramp_raster(tmp_path)], tile_size=16, scale_min=0)
    assert grid.scale_min == [0.0, 0.0]
    assert grid.scale_max == pytest.approx([9899.01, 2 * 9899.01 + 5])


def test_scaling_errors(tmp_path):
    path = _ramp_raster(tmp_path)
    with pytest.raises(ValueError, match="3 values for 2 bands"):
        build_grid([path], tile_size=16, scale_min=[0, 0, 0], scale_max=[1, 1, 1])
    with pytest.raises(ValueError, match="band 2: scaling max 5.0 is not above min 5.0"):
        build_grid([path], tile_size=16, scale_min=[0, 5], scale_max=[1, 5])


def test_percentiles_from_data(tmp_path):
    # Values 0 .. 9999 (band 2: 5 .. 20003): linear-interpolated 1st/99th percentiles are
    # 99.99 and 9899.01.
    grid = build_grid([_ramp_raster(tmp_path)], tile_size=16)
    assert grid.scale_min == pytest.approx([99.99, 2 * 99.99 + 5])
    assert grid.scale_max == pytest.approx([9899.01, 2 * 9899.01 + 5])
    grid = build_grid([_ramp_raster(tmp_path)], tile_size=16, percentiles=(0.0, 100.0))
    assert grid.scale_min == pytest.approx([0.0, 5.0])
    assert grid.scale_max == pytest.approx([9999.0, 20003.0])


def test_percentiles_pool_all_granules(tmp_path):
    ramp = np.arange(10000, dtype="uint16").reshape(100, 100)
    a = write_raster(tmp_path / "a.tif", ramp[:50], UTM31, (0.0, 1000.0, 10.0))
    b = write_raster(tmp_path / "b.tif", ramp[50:], UTM31, (0.0, 500.0, 10.0))
    grid = build_grid([a, b], tile_size=16)
    assert grid.scale_min == pytest.approx([99.99])
    assert grid.scale_max == pytest.approx([9899.01])


def test_percentiles_exclude_nodata_value(tmp_path):
    ramp = np.arange(10000, dtype="uint16").reshape(100, 100) + 1
    data = ramp.copy()
    data[:, 60:] = 60000  # 40 % of the pixels are nodata, far above the valid range
    path = write_raster(tmp_path / "a.tif", data, UTM31, (0.0, 1000.0, 10.0), nodata=60000)
    grid = build_grid([path], tile_size=16)
    valid = ramp[:, :60].astype(float)
    assert grid.scale_min == pytest.approx([np.percentile(valid, 1.0)])
    assert grid.scale_max == pytest.approx([np.percentile(valid, 99.0)])
    assert grid.scale_max[0] < 10001


def test_percentiles_exclude_nan_nodata_and_nodata_in_any_band(tmp_path):
    ramp = np.arange(10000, dtype="float32").reshape(100, 100)
    band1, band2 = ramp.copy(), ramp.copy()
    band1[:30] = np.nan  # nodata in band 1 only: the pixels are dropped from band 2 too
    band2[90:] = 1e9
    path = write_raster(tmp_path / "a.tif", np.stack([band1, band2]), UTM31, (0.0, 1000.0, 10.0), nodata=np.nan)
    grid = build_grid([path], tile_size=16, percentiles=(0.0, 90.0))
    assert grid.scale_min == pytest.approx([3000.0, 3000.0])
    kept = ramp[30:].astype(float)
    assert grid.scale_max[0] == pytest.approx(np.percentile(kept, 90.0))
    # Band 2 keeps rows 30..99, of which the last 10 hold 1e9.
    kept2 = np.concatenate([ramp[30:90].ravel(), np.full(1000, 1e9)])
    assert grid.scale_max[1] == pytest.approx(np.percentile(kept2, 90.0))


def test_all_nodata_raises(tmp_path):
    path = write_raster(tmp_path / "a.tif", np.zeros((1, 20, 20), "uint8"), UTM31, (0.0, 200.0, 10.0), nodata=0)
    with pytest.raises(ValueError, match="no valid pixel"):
        build_grid([path], tile_size=16)


def _grid(**kwargs) -> Grid:
    values = dict(
        crs=CRS.from_string(UTM31).to_wkt(),
        transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0),
        width=32,
        height=16,
        tile_size=8,
        bands=[1, 2],
        dtype="uint16",
        scale_min=[100.0, 0.0],
        scale_max=[300.0, 10.0],
    )
    values.update(kwargs)
    return Grid(**values)


def test_scale_maps_to_unit_range_and_clips():
    grid = _grid()
    data = np.array([[[0, 100, 200, 300, 1000]], [[-5, 0, 5, 10, 20]]], dtype=np.int32)  # (bands, 1, 5)
    out = grid.scale(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(out[1, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    # A batch of tiles (n, bands, h, w) scales along axis -3 as well.
    batch = np.stack([data, data])
    np.testing.assert_allclose(grid.scale(batch), np.stack([out, out]))
    # Channels last.
    np.testing.assert_allclose(grid.scale(np.moveaxis(data, 0, -1), band_axis=-1), np.moveaxis(out, 0, -1))
    assert data[0, 0, 2] == 200  # input left untouched


def test_save_load_round_trip(tmp_path, two_granules):
    grid = build_grid(two_granules, tile_size=16)
    path = tmp_path / "sub" / "grid.json"
    grid.save(path)
    back = Grid.load(path)
    assert back == grid
    assert isinstance(back.transform, tuple)
    assert back.affine == grid.affine
    assert (back.n_rows, back.n_cols) == (grid.n_rows, grid.n_cols)
    assert CRS.from_wkt(back.crs) == CRS.from_string(UTM31)
    assert not list(path.parent.glob(".*tmp*"))


# --- errors ----------------------------------------------------------------------------


def test_region_smaller_than_one_tile(tmp_path):
    path = write_raster(tmp_path / "small.tif", np.ones((1, 10, 40), "uint8"), UTM31, (0.0, 100.0, 10.0))
    with pytest.raises(ValueError, match=r"40 x 10 px.*smaller than one tile \(16 px\)"):
        build_grid([path], tile_size=16, scale_min=0, scale_max=1)


def test_band_beyond_count_names_the_file(tmp_path):
    a = write_raster(tmp_path / "three.tif", np.ones((3, 20, 20), "uint8"), UTM31, (0.0, 200.0, 10.0))
    b = write_raster(tmp_path / "two.tif", np.ones((2, 20, 20), "uint8"), UTM31, (0.0, 200.0, 10.0))
    with pytest.raises(ValueError, match=r"two\.tif: has 2 bands, config asks for band 3"):
        build_grid([a, b], tile_size=16)
    with pytest.raises(ValueError, match=r"three\.tif: has 3 bands, config asks for band 4"):
        build_grid([a], tile_size=16, bands=[1, 4])


def test_raster_without_crs_names_the_file(tmp_path):
    good = write_raster(tmp_path / "good.tif", np.ones((1, 20, 20), "uint8"), UTM31, (0.0, 200.0, 10.0))
    bad = write_raster(tmp_path / "nocrs.tif", np.ones((1, 20, 20), "uint8"), None, (0.0, 200.0, 10.0))
    for paths in ([bad, good], [good, bad]):
        with pytest.raises(ValueError, match=r"nocrs\.tif: image: no CRS"):
            build_grid(paths, tile_size=16)


def test_no_paths():
    with pytest.raises(ValueError, match="no images"):
        build_grid([], tile_size=16)


# --------------------------------------------------------------------------- areas


def test_pixel_and_tile_areas_in_projected_crss() -> None:
    rows, cols = np.mgrid[0:2, 0:3]
    np.testing.assert_allclose(pixel_areas_km2("EPSG:32630", Affine(10, 0, 0, 0, -10, 0), rows, cols), 1e-4)
    ft = pixel_areas_km2("EPSG:2263", Affine(1000, 0, 0, 0, -1000, 0), rows, cols)  # US survey feet
    np.testing.assert_allclose(ft, (1000 * 1200 / 3937) ** 2 / 1e6)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=30, tile_size=10,
                bands=[1], dtype="uint8")
    np.testing.assert_allclose(tile_areas_km2(grid), np.full(12, 0.01))
    np.testing.assert_allclose(tile_areas_km2(grid, np.array([3, 7])), [0.01, 0.01])


def test_tile_areas_in_a_geographic_crs_follow_latitude() -> None:
    world = Grid(crs="EPSG:4326", transform=(1.0, 0.0, -180.0, 0.0, -1.0, 90.0), width=360, height=180, tile_size=1,
                 bands=[1], dtype="uint8")
    areas = tile_areas_km2(world).reshape(180, 360)
    assert areas.sum() == pytest.approx(510_065_621.7, abs=1.0)  # the WGS 84 ellipsoid's surface, km2
    # One 1 x 1 degree tile at the equator, against a numerical integral of the ellipsoid's area element.
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    lat = np.linspace(0.0, math.radians(1.0), 20001)
    element = a * a * (1 - e2) * np.cos(lat) / (1 - e2 * np.sin(lat) ** 2) ** 2
    integral = ((element[1:] + element[:-1]) / 2 * np.diff(lat)).sum() * math.radians(1.0) / 1e6
    assert areas[89, 0] == pytest.approx(integral, rel=1e-9) and areas[90, 0] == pytest.approx(integral, rel=1e-9)
    assert areas[0, 0] < areas[45, 0] < areas[89, 0]
