"""Tests of mosaicking one date onto the common grid (landtaxa.inputs.align)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.warp import transform as warp_points
from rasterio.windows import Window
from rasters import corrupt_block, read_raster, write_raster

from landtaxa.inputs import align
from landtaxa.inputs.align import align_date
from landtaxa.inputs.grid import Grid, io_block, tile_fractions, window_side, window_tile_ids, windows
from landtaxa.storage import load_npz

UTM31 = "EPSG:32631"
X0, Y0, RES = 500000.0, 4000000.0, 10.0
TS = 8
H, W = 32, 40  # 4 tile rows x 5 tile cols


def make_grid(dtype: str = "uint16", bands=(1, 2), width: int = W, height: int = H, tile_size: int = TS,
              origin=(X0, Y0), res: float = RES, crs: str = UTM31) -> Grid:
    return Grid(
        crs=CRS.from_string(crs).to_wkt(),
        transform=(res, 0.0, origin[0], 0.0, -res, origin[1]),
        width=width,
        height=height,
        tile_size=tile_size,
        bands=list(bands),
        dtype=dtype,
        scale_min=[0.0] * len(bands),
        scale_max=[1.0] * len(bands),
    )


# Granules on the grid's lattice, placed by (row, col) offset in grid pixels.
A_OFF, A_SHAPE = (2, 3), (14, 20)  # grid rows 2..15, cols 3..22
B_OFF, B_SHAPE = (10, 12), (16, 22)  # grid rows 10..25, cols 12..33 (overlap: rows 10..15, cols 12..22)
A_HOLE = (slice(10, 12), slice(11, 15))  # A's nodata inside the overlap (grid rows 12..13, cols 14..17)
B_HOLE = (slice(10, 12), slice(13, 15))  # B's nodata where only B covers (grid rows 20..21, cols 25..26)

CASES = {
    # name: (dtype, nodata written in the file, value put in the holes)
    "uint8": ("uint8", 0, 0),
    "uint16": ("uint16", 65535, 65535),
    "float32-nan": ("float32", np.nan, np.nan),
    "float32-value": ("float32", -9999.0, -9999.0),
    "float32-no-nodata-nan": ("float32", None, np.nan),
}


def granule_values(shape, base: float, dtype: str) -> np.ndarray:
    """Two bands of distinct, valid values (below 256 so that uint8 fits)."""
    h, w = shape
    idx = np.arange(h * w).reshape(h, w) % 97
    band1 = base + idx
    band2 = base + 50 + idx
    out = np.stack([band1, band2]).astype(np.float64)
    if np.dtype(dtype).kind == "f":
        out += 0.25
    return out.astype(dtype)


def write_granule(path: Path, off, shape, base, dtype, nodata, hole_value, hole) -> tuple[Path, np.ndarray]:
    data = granule_values(shape, base, dtype)
    valid = np.ones(shape, bool)
    if hole is not None:
        data[:, hole[0], hole[1]] = hole_value
        valid[hole] = False
    x0, y0 = X0 + off[1] * RES, Y0 - off[0] * RES
    write_raster(path, data, UTM31, (x0, y0, RES), nodata=nodata)
    return path, (data, valid)


def expected_mosaic(granules, dtype, n_bands=2):
    """First-valid mosaic by pasting granules on the grid, in order."""
    data = np.zeros((n_bands, H, W), dtype)
    filled = np.zeros((H, W), bool)
    for off, (values, valid) in granules:
        h, w = valid.shape
        region = (slice(off[0], off[0] + h), slice(off[1], off[1] + w))
        take = valid & ~filled[region]
        sub = data[:, region[0], region[1]]
        sub[:, take] = values[:, take]
        filled[region] |= take
    return data, filled


def fractions_by_loop(mask: np.ndarray, ts: int) -> np.ndarray:
    rows, cols = mask.shape[0] // ts, mask.shape[1] // ts
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            out[r, c] = mask[r * ts : (r + 1) * ts, c * ts : (c + 1) * ts].sum() / ts**2
    return out


@pytest.fixture(params=list(CASES))
def case(request, tmp_path):
    dtype, nodata, hole_value = CASES[request.param]
    a, a_arrays = write_granule(tmp_path / "a.tif", A_OFF, A_SHAPE, 1, dtype, nodata, hole_value, A_HOLE)
    b, b_arrays = write_granule(tmp_path / "b.tif", B_OFF, B_SHAPE, 101, dtype, nodata, hole_value, B_HOLE)
    return {"dtype": dtype, "paths": [a, b], "granules": [(A_OFF, a_arrays), (B_OFF, b_arrays)], "dir": tmp_path}


def test_mosaic_first_valid_wins(case):
    dtype, tmp = case["dtype"], case["dir"]
    grid = make_grid(dtype)
    fractions = align_date(grid, case["paths"], tmp / "out" / "d.tif", tmp / "out" / "d.npz", window_px=16)
    data, mask, profile = read_raster(tmp / "out" / "d.tif")

    # The raster is on the grid.
    assert CRS.from_user_input(profile["crs"]) == CRS.from_string(UTM31)
    assert profile["transform"] == grid.affine
    assert (profile["width"], profile["height"], profile["count"]) == (W, H, 2)
    assert profile["dtype"] == dtype
    assert data.dtype == np.dtype(dtype)

    exp_data, exp_mask = expected_mosaic(case["granules"], dtype)
    np.testing.assert_array_equal(mask, exp_mask)
    np.testing.assert_array_equal(np.where(exp_mask, data, 0), np.where(exp_mask, exp_data, 0))
    assert np.isfinite(data[:, exp_mask]).all()
    assert (data[:, ~exp_mask] == 0).all()  # masked pixels hold zeros, not stray source values

    a_vals, _ = case["granules"][0][1]
    b_vals, _ = case["granules"][1][1]
    # Covered by A only / by B only: the source values.
    assert data[0, 2, 3] == a_vals[0, 0, 0] and data[1, 5, 7] == a_vals[1, 3, 4]
    assert data[0, 25, 33] == b_vals[0, 15, 21]
    # Overlap: A (first) wins ...
    assert data[0, 10, 12] == a_vals[0, 8, 9] != b_vals[0, 0, 0]
    assert data[1, 15, 22] == a_vals[1, 13, 19]
    # ... except in A's nodata hole, where B fills in.
    assert data[0, 12, 14] == b_vals[0, 2, 2] and data[1, 13, 17] == b_vals[1, 3, 5]
    assert mask[12:14, 14:18].all()
    # B's nodata where only B covers, and pixels outside both footprints, are masked.
    assert not mask[20:22, 25:27].any()
    assert not mask[0:2].any() and not mask[26:].any() and not mask[:, 34:].any()
    assert mask.sum() == exp_mask.sum()

    # Tile valid fractions: returned, equal to the mask's, and saved.
    assert fractions.shape == (grid.n_rows, grid.n_cols)
    assert fractions.dtype == np.float32
    np.testing.assert_allclose(fractions, fractions_by_loop(mask, TS), atol=1e-6)
    np.testing.assert_allclose(fractions, fractions_by_loop(exp_mask, TS), atol=1e-6)
    assert fractions[3, 0] == 0.0 and fractions[0, 4] == 0.0  # corners outside both granules
    assert fractions[3, 4] == pytest.approx(4 / 64)  # B's bottom-right 2 x 2 pixels
    assert fractions[1, 1] == 1.0  # rows 8..15, cols 8..15: inside A
    saved = load_npz(tmp / "out" / "d.npz")
    assert set(saved) == {"fraction"}
    np.testing.assert_array_equal(saved["fraction"], fractions)


def test_granule_order_decides_the_overlap(case):
    dtype, tmp = case["dtype"], case["dir"]
    grid = make_grid(dtype)
    align_date(grid, case["paths"][::-1], tmp / "ba.tif", tmp / "ba.npz")
    data, mask, _ = read_raster(tmp / "ba.tif")
    exp_data, exp_mask = expected_mosaic(case["granules"][::-1], dtype)
    np.testing.assert_array_equal(mask, exp_mask)
    np.testing.assert_array_equal(np.where(exp_mask, data, 0), np.where(exp_mask, exp_data, 0))
    b_vals, _ = case["granules"][1][1]
    assert data[0, 10, 12] == b_vals[0, 0, 0]


def test_band_selection_and_order(tmp_path):
    path, (values, _) = write_granule(tmp_path / "a.tif", (0, 0), (H, W), 1, "uint16", None, 0, None)
    grid = make_grid("uint16", bands=[2, 1])
    align_date(grid, [path], tmp_path / "o.tif", tmp_path / "o.npz")
    data, mask, profile = read_raster(tmp_path / "o.tif")
    assert profile["count"] == 2
    np.testing.assert_array_equal(data[0], values[1])
    np.testing.assert_array_equal(data[1], values[0])
    assert mask.all()
    np.testing.assert_array_equal(load_npz(tmp_path / "o.npz")["fraction"], np.ones((4, 5), np.float32))


@pytest.mark.parametrize("window_px", [8, 24])
def test_result_does_not_depend_on_the_windows(case, window_px):
    tmp = case["dir"]
    grid = make_grid(case["dtype"])
    assert len(windows(grid, window_px)) > 1 and len(windows(grid, 1024)) == 1
    ref = align_date(grid, case["paths"], tmp / "ref.tif", tmp / "ref.npz", window_px=1024)
    got = align_date(grid, case["paths"], tmp / "got.tif", tmp / "got.npz", window_px=window_px)
    np.testing.assert_array_equal(got, ref)
    ref_data, ref_mask, _ = read_raster(tmp / "ref.tif")
    got_data, got_mask, _ = read_raster(tmp / "got.tif")
    np.testing.assert_array_equal(got_mask, ref_mask)
    np.testing.assert_array_equal(got_data, ref_data)  # NaN == NaN for this helper


def test_reprojected_granule_lands_in_place(tmp_path):
    # A constant granule in lon/lat, 0.004 x 0.003 degrees around (3 E, 40 N), on a UTM 31N grid.
    lon0, lon1, lat0, lat1 = 2.998, 3.002, 39.9985, 40.0015
    step = 0.0001
    nx, ny = round((lon1 - lon0) / step), round((lat1 - lat0) / step)
    src = write_raster(tmp_path / "geo.tif", np.full((1, ny, nx), 7, "uint8"), "EPSG:4326", (lon0, lat1, step),
                       nodata=0)
    (cx,), (cy,) = warp_points("EPSG:4326", UTM31, [3.0], [40.0])
    size = 64
    origin = (round(cx) - size * RES / 2, round(cy) + size * RES / 2)
    grid = make_grid("uint8", bands=[1], width=size, height=size, tile_size=16, origin=origin)
    fractions = align_date(grid, [src], tmp_path / "o.tif", tmp_path / "o.npz")
    data, mask, _ = read_raster(tmp_path / "o.tif")

    # Longitude/latitude of every grid pixel centre.
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    xs, ys = grid.affine @ (cols.ravel(), rows.ravel())
    lon, lat = (np.asarray(v).reshape(size, size) for v in warp_points(UTM31, "EPSG:4326", xs, ys))
    # Two pixels (20 m) of tolerance, in degrees.
    mlon, mlat = 20 / 85000, 20 / 111000
    inside = (lon > lon0 + mlon) & (lon < lon1 - mlon) & (lat > lat0 + mlat) & (lat < lat1 - mlat)
    outside = (lon < lon0 - mlon) | (lon > lon1 + mlon) | (lat < lat0 - mlat) | (lat > lat1 + mlat)
    assert inside.sum() > 600 and outside.sum() > 1500
    assert mask[inside].all() and (data[0][inside] == 7).all()
    assert not mask[outside].any() and (data[0][outside] == 0).all()
    assert set(np.unique(data[0][mask])) == {7}
    # The covered area matches the footprint's (about 341 m x 333 m).
    area = (lon1 - lon0) * 111320 * np.cos(np.radians(40.0)) * (lat1 - lat0) * 111000
    assert mask.sum() * RES**2 == pytest.approx(area, rel=0.08)
    np.testing.assert_allclose(fractions, fractions_by_loop(mask, 16), atol=1e-6)


def test_atomic_output_when_align_fails_midway(case, monkeypatch):
    tmp = case["dir"]
    grid = make_grid(case["dtype"])
    calls = []
    original = align.tile_fractions

    def failing(mask, tile_size):
        calls.append(mask.shape)
        if len(calls) > 1:
            raise RuntimeError("disk full")
        return original(mask, tile_size)

    monkeypatch.setattr(align, "tile_fractions", failing)
    before = sorted(p.name for p in tmp.iterdir())
    with pytest.raises(RuntimeError, match="disk full"):
        align_date(grid, case["paths"], tmp / "d.tif", tmp / "d.npz", window_px=8)
    assert len(calls) == 2  # the first window was written
    assert not (tmp / "d.tif").exists()
    assert not (tmp / "d.npz").exists()
    assert sorted(p.name for p in tmp.iterdir()) == before  # no temporary left behind


def test_failure_leaves_an_existing_output_untouched(case, monkeypatch):
    tmp = case["dir"]
    (tmp / "d.tif").write_bytes(b"previous run")

    def failing(mask, tile_size):
        raise RuntimeError("killed")

    monkeypatch.setattr(align, "tile_fractions", failing)
    with pytest.raises(RuntimeError, match="killed"):
        align_date(make_grid(case["dtype"]), case["paths"], tmp / "d.tif", tmp / "d.npz")
    assert (tmp / "d.tif").read_bytes() == b"previous run"
    assert not (tmp / "d.npz").exists()
    assert not [p.name for p in tmp.iterdir() if p.name.startswith(".")]


def test_granule_errors_name_the_file(tmp_path):
    good = write_raster(tmp_path / "good.tif", np.ones((2, 8, 8), "uint16"), UTM31, (X0, Y0, RES))
    nocrs = write_raster(tmp_path / "nocrs.tif", np.ones((2, 8, 8), "uint16"), None, (X0, Y0, RES))
    one = write_raster(tmp_path / "one.tif", np.ones((1, 8, 8), "uint16"), UTM31, (X0, Y0, RES))
    grid = make_grid("uint16")
    with pytest.raises(ValueError, match=r"nocrs\.tif: image: no CRS; georeference it"):
        align_date(grid, [good, nocrs], tmp_path / "o.tif", tmp_path / "o.npz")
    with pytest.raises(ValueError, match=r"one\.tif: has 1 bands, the grid uses band 2"):
        align_date(grid, [good, one], tmp_path / "o.tif", tmp_path / "o.npz")
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.npz").exists()


def test_windows_cover_every_pixel_once_in_whole_tiles():
    grid = make_grid(width=40, height=24)  # 5 x 3 tiles of 8 px
    wins = windows(grid, 16)  # 2 x 2 tiles
    assert wins[:3] == [(0, 0, Window(0, 0, 16, 16)), (0, 2, Window(16, 0, 16, 16)), (0, 4, Window(32, 0, 8, 16))]
    assert wins[-1] == (2, 4, Window(32, 16, 8, 8))
    covered = np.zeros((grid.height, grid.width), int)
    ids = []
    for r0, c0, w in wins:
        covered[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
        assert (w.row_off, w.col_off) == (r0 * 8, c0 * 8) and w.width % 8 == 0 and w.height % 8 == 0
        ids.append(window_tile_ids(grid, r0, c0, w))
    assert (covered == 1).all()
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(grid.n_tiles))
    np.testing.assert_array_equal(window_tile_ids(grid, 0, 2, Window(16, 0, 16, 16)), [2, 3, 7, 8])
    assert windows(grid, 1024) == [(0, 0, Window(0, 0, 40, 24))]  # one block holds the whole grid


def test_window_and_block_sides():
    # blocks: whole tiles, multiples of 16 px, at least 256 px unless a tile is larger
    assert [io_block(ts) for ts in (16, 100, 10, 7, 300)] == [256, 400, 320, 336, 1200]
    assert [window_side(100, px) for px in (1024, 400, 399, 99, 250)] == [800, 400, 300, 100, 200]
    assert window_side(16, 1024) == 1024 and window_side(16, 300) == 256


def test_tile_fractions():
    mask = np.zeros((4, 6), bool)
    mask[0, 0] = True  # tile (0, 0): 1 of 4
    mask[0:2, 2:4] = True  # tile (0, 1): full
    mask[2:4, 4] = True  # tile (1, 2): half
    out = tile_fractions(mask, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0.25, 1.0, 0.0], [0.0, 0.0, 0.5]], np.float32))


def test_date_without_valid_pixel_is_refused_or_kept_on_request(tmp_path: Path, caplog) -> None:
    """empty_dates: error (default) refuses the date, writing nothing; keep writes it, all tiles at 0, and warns."""
    grid = make_grid()
    empty = write_raster(tmp_path / "cloudy day.tif", np.zeros((2, H, W), "uint16"), UTM31, (X0, Y0, RES), nodata=0)
    with pytest.raises(ValueError, match="every pixel of this date is nodata or masked"):
        align_date(grid, [empty], tmp_path / "a.tif", tmp_path / "a.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloudy day.tif"]
    logger = logging.getLogger("landtaxa")  # does not propagate to the root logger: listen on it directly
    logger.addHandler(caplog.handler)
    try:
        fractions = align_date(grid, [empty], tmp_path / "b.tif", tmp_path / "b.npz", keep_empty=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert fractions.shape == (grid.n_rows, grid.n_cols) and not fractions.any()
    np.testing.assert_array_equal(load_npz(tmp_path / "b.npz")["fraction"], fractions)
    assert (tmp_path / "b.tif").exists()
    assert "kept (empty_dates: keep)" in caplog.text and "cloudy day.tif" in caplog.text


UTM = "EPSG:32631"


def test_corrupt_block_in_alignment_names_the_file(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(50, 150, (3, 40, 40)).astype("uint16")
    good = write_raster(tmp_path / "good.tif", data, UTM, (500000, 4000000, 10))
    bad = corrupt_block(write_raster(tmp_path / "bad.tif", data, UTM, (500000, 4000000, 10), tiled=True,
                                     blockxsize=16, blockysize=16, compress="deflate"))
    grid = Grid(crs=UTM, transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=40, tile_size=8,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0] * 3, scale_max=[200] * 3)
    with pytest.raises(ValueError, match=re.escape(f"{bad}: cannot read pixels")):
        align_date(grid, [bad, good], tmp_path / "out" / "a.tif", tmp_path / "out" / "a_valid.npz")
    assert not list((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- clouds and nodata

MASK_TS = 8


def mask_grid(bands=(1, 2), dtype="uint16") -> Grid:
    return Grid(crs=CRS.from_string(UTM31).to_wkt(), transform=(RES, 0.0, X0, 0.0, -RES, Y0), width=16, height=16,
                tile_size=MASK_TS, bands=list(bands), dtype=dtype, scale_min=[0.0] * len(bands),
                scale_max=[1.0] * len(bands))


def mask_image(tmp_path: Path, name: str, value: int, bands: int = 2, nodata=None) -> Path:
    return write_raster(tmp_path / name, np.full((bands, 16, 16), value, "uint16"), UTM31, (X0, Y0, RES), nodata=nodata)


def test_mask_raster_flags_cloudy_pixels(tmp_path: Path) -> None:
    img = mask_image(tmp_path, "img.tif", 500)
    cloud = np.zeros((16, 16), "uint8")
    cloud[:8, :8] = 1  # the top-left tile is fully clouded
    cloud[8:, 8:12] = 1  # half of the bottom-right tile
    msk = write_raster(tmp_path / "cloud.tif", cloud, UTM31, (X0, Y0, RES))
    fr = align_date(mask_grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[1])
    np.testing.assert_allclose(fr, [[0.0, 1.0], [1.0, 0.5]])
    _, valid, _ = read_raster(tmp_path / "a.tif")
    np.testing.assert_array_equal(valid, cloud == 0)


def test_mask_of_the_first_granule_lets_the_second_fill_in(tmp_path: Path) -> None:
    first, second = mask_image(tmp_path, "first.tif", 100), mask_image(tmp_path, "second.tif", 200)
    cloud = np.zeros((16, 16), "uint8")
    cloud[:, :8] = 1
    msk = write_raster(tmp_path / "cloud.tif", cloud, UTM31, (X0, Y0, RES))
    align_date(mask_grid(), [first, second], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk, None],
               invalid_values=[1])
    data, valid, _ = read_raster(tmp_path / "a.tif")
    assert valid.all()
    assert (data[:, :, :8] == 200).all() and (data[:, :, 8:] == 100).all()


def test_valid_pixel_mask_with_invalid_zero_and_mask_footprint(tmp_path: Path) -> None:
    """A 1 = clear mask (e.g. IS_VALID) uses invalid [0]; outside the mask's footprint is invalid."""
    img = mask_image(tmp_path, "img.tif", 500)
    clear = np.ones((16, 8), "uint8")  # the mask covers only the left half
    clear[0, 0] = 0
    msk = write_raster(tmp_path / "valid.tif", clear, UTM31, (X0, Y0, RES))
    fr = align_date(mask_grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[0])
    np.testing.assert_allclose(fr, [[63 / 64, 0.0], [1.0, 0.0]])


def test_class_band_of_the_mask_image(tmp_path: Path) -> None:
    """Sentinel-2 SCL style: band 3 holds classes; 9 (cloud) and 3 (shadow) are invalid, 4 (vegetation) not."""
    arr = np.full((3, 16, 16), 700, "uint16")
    arr[2] = 4
    arr[2, :4, :] = 9
    arr[2, 12:, :4] = 3
    img = write_raster(tmp_path / "scl.tif", arr, UTM31, (X0, Y0, RES))
    fr = align_date(mask_grid(bands=(1, 2)), [img], tmp_path / "a.tif", tmp_path / "a.npz", mask_band=3,
                    invalid_values=[3, 8, 9])
    _, valid, _ = read_raster(tmp_path / "a.tif")
    assert valid.sum() == 256 - 64 - 16
    assert not valid[:4].any() and not valid[12:, :4].any()
    np.testing.assert_allclose(fr, [[0.5, 0.5], [0.75, 1.0]])


def test_nodata_override(tmp_path: Path) -> None:
    """A raster without a nodata tag whose 0 means missing: the config's nodata=0 masks it."""
    arr = np.full((2, 16, 16), 300, "uint16")
    arr[:, :8, :] = 0
    img = write_raster(tmp_path / "img.tif", arr, UTM31, (X0, Y0, RES))
    fr_tag = align_date(mask_grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz")
    fr_cfg = align_date(mask_grid(), [img], tmp_path / "b.tif", tmp_path / "b.npz", nodata=0)
    np.testing.assert_allclose(fr_tag, 1.0)
    np.testing.assert_allclose(fr_cfg, [[0.0, 0.0], [1.0, 1.0]])


def test_mask_without_crs_is_refused(tmp_path: Path) -> None:
    img = mask_image(tmp_path, "img.tif", 500)
    msk = write_raster(tmp_path / "nocrs.tif", np.zeros((16, 16), "uint8"), None, (X0, Y0, RES))
    with pytest.raises(ValueError, match=r"nocrs\.tif: mask of image .*img\.tif: no CRS"):
        align_date(mask_grid(), [img], tmp_path / "a.tif", tmp_path / "a.npz", masks=[msk], invalid_values=[1])
    assert not (tmp_path / "a.tif").exists()
