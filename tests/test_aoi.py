"""The area of interest: reading polygon files, their bounds, the tiles they select, areas.

The AOI is drawn in tile units on a UTM grid, so which tile centres lie inside is known by
hand, then written in other CRSs (EPSG:4326, EPSG:3857) and formats with pyogrio.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from landtaxa.inputs.aoi import aoi_bounds, check_overlap, read_aoi, tile_mask
from landtaxa.inputs.datasets import InventoryError
from landtaxa.inputs.grid import Grid

UTM = "EPSG:32631"
X0, Y0, RES, TS, N = 500000.0, 4990000.0, 10.0, 10, 8  # 8 x 8 tiles of 100 m
TILE = RES * TS


def grid(crs: str = UTM, transform=(RES, 0.0, X0, 0.0, -RES, Y0), size: int = N * TS, tile_size: int = TS) -> Grid:
    return Grid(crs=CRS.from_user_input(crs).to_wkt(), transform=transform, width=size, height=size,
                tile_size=tile_size, bands=[1], dtype="uint16")


def in_tiles(points: list[tuple[float, float]]) -> shapely.Polygon:
    """A polygon given in tile units from the grid's top-left corner (x right, y down), in UTM."""
    return shapely.Polygon([(X0 + x * TILE, Y0 - y * TILE) for x, y in points])


# A triangle whose long edge runs a quarter tile beyond the centres with col + row = 5, and a
# square around the centres of the bottom-right 2 x 2 tiles.
AOI_UTM = [in_tiles([(0, 0), (6.25, 0), (0, 6.25)]), in_tiles([(5.8, 5.8), (8.2, 5.8), (8.2, 8.2), (5.8, 8.2)])]
ROW, COL = np.divmod(np.arange(N * N), N)
EXPECTED = (ROW + COL <= 5) | ((ROW >= 6) & (COL >= 6))


def write_aoi(path: Path, shapes: list, crs: str = "EPSG:4326", driver: str | None = None, src: str = UTM) -> Path:
    moved = [shapely.geometry.shape(transform_geom(src, crs, shapely.geometry.mapping(s))) for s in shapes]
    pyogrio.raw.write(str(path), shapely.to_wkb(np.array(moved, dtype=object)),
                      [np.array([f"part{i}" for i in range(len(moved))], dtype=object)], ["name"],
                      crs=crs, driver=driver, geometry_type="Polygon")
    return path


@pytest.mark.parametrize(
    ("name", "crs", "driver"),
    [("aoi.geojson", "EPSG:4326", "GeoJSON"), ("aoi.gpkg", "EPSG:3857", "GPKG"),
     ("aoi.shp", "EPSG:4326", "ESRI Shapefile")],
)
def test_tiles_whose_centre_is_inside_are_selected(tmp_path: Path, name: str, crs: str, driver: str) -> None:
    path = write_aoi(tmp_path / name, AOI_UTM, crs, driver)
    aoi = read_aoi(path)
    assert aoi.crs == CRS.from_user_input(crs) and len(aoi.geometries) == 2
    mask = tile_mask(grid(), path)
    assert mask.dtype == bool and mask.shape == (N * N,)
    np.testing.assert_array_equal(mask.reshape(N, N), EXPECTED.reshape(N, N))
    # The same by hand: each tile centre taken into the AOI's CRS and tested against its polygons.
    centres = [shapely.Point(X0 + (c + 0.5) * TILE, Y0 - (r + 0.5) * TILE) for r, c in zip(ROW, COL, strict=True)]
    polygons = shapely.union_all([shapely.geometry.shape(g) for g in aoi.geometries])
    inside = [polygons.contains(shapely.geometry.shape(transform_geom(UTM, aoi.crs, shapely.geometry.mapping(p))))
              for p in centres]
    np.testing.assert_array_equal(mask, inside)


def test_bounds_in_the_grid_crs(tmp_path: Path) -> None:
    path = write_aoi(tmp_path / "aoi.geojson", AOI_UTM)
    left, bottom, right, top = aoi_bounds(path, UTM)
    np.testing.assert_allclose([left, bottom, right, top], [X0, Y0 - 8.2 * TILE, X0 + 8.2 * TILE, Y0], atol=0.01)
    lon0, lat0, lon1, lat1 = aoi_bounds(read_aoi(path), "EPSG:4326")
    assert 2.9999 < lon0 < lon1 < 3.02 and 45.05 < lat0 < lat1 < 45.07


def test_aoi_in_a_zip_is_read_through_vsizip(tmp_path: Path) -> None:
    write_aoi(tmp_path / "aoi.shp", AOI_UTM, driver="ESRI Shapefile")
    archive = tmp_path / "aoi.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("aoi.*"):
            if part != archive:
                zf.write(part, part.name)
    mask = tile_mask(grid(), f"/vsizip/{archive}/aoi.shp")
    np.testing.assert_array_equal(mask, EXPECTED)


def test_aoi_missing_the_region_is_refused_with_the_file_named(tmp_path: Path) -> None:
    far = write_aoi(tmp_path / "far.geojson", [shapely.box(10.0, 10.0, 10.1, 10.1)], src="EPSG:4326")
    g = grid()
    with pytest.raises(InventoryError) as err:
        check_overlap(far, g.bounds, g.crs)
    msg = str(err.value)
    assert msg.startswith(f"{far}: the AOI does not overlap the region (AOI bounds (")
    assert "in EPSG:32631); check the AOI's extent and CRS (config key aoi)" in msg
    with pytest.raises(InventoryError, match=r"far.geojson: the AOI does not overlap the grid"):
        tile_mask(g, far)
    check_overlap(write_aoi(tmp_path / "near.geojson", AOI_UTM), g.bounds, g.crs)  # overlaps: no error


def test_aoi_without_a_tile_centre_is_refused(tmp_path: Path) -> None:
    small = write_aoi(tmp_path / "small.geojson", [in_tiles([(2.1, 2.1), (2.4, 2.1), (2.4, 2.4), (2.1, 2.4)])])
    with pytest.raises(InventoryError, match=r"small.geojson: the AOI overlaps the grid but holds no tile centre"):
        tile_mask(grid(), small)


def test_bad_aoi_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nowhere.gpkg: AOI file not found"):
        read_aoi(tmp_path / "nowhere.gpkg")
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(InventoryError, match=r"broken.geojson: not a readable polygon file"):
        read_aoi(broken)
    points = tmp_path / "points.geojson"
    pyogrio.raw.write(str(points), shapely.to_wkb(np.array([shapely.Point(3.0, 45.0)], dtype=object)),
                      [np.array(["p"], dtype=object)], ["name"], crs="EPSG:4326", geometry_type="Point")
    with pytest.raises(InventoryError, match=r"points.geojson: feature 1 is a Point; the AOI must hold polygons"):
        read_aoi(points)
    no_crs = write_aoi(tmp_path / "nocrs.shp", AOI_UTM, driver="ESRI Shapefile")
    no_crs.with_suffix(".prj").unlink()
    with pytest.raises(InventoryError, match=r"nocrs.shp: the AOI file has no CRS"):
        read_aoi(no_crs)
