"""Tests of the GeoParquet tile table and the kinds table (landtaxa.products.tables).

The tile table is read back with geopandas, as its users read it (geopandas is a test
dependency only: landtaxa writes the file with pyarrow); the kinds table against numbers
worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from landtaxa.inputs.grid import Grid
from landtaxa.products.evolution import transitions
from landtaxa.products.tables import write_kinds_table, write_tiles_parquet

DATES = ["2023-03-01", "2023-07-25", "2023-10-02"]


def _grid(crs: str = "EPSG:32630", transform: tuple = (10, 0, 500000, 0, -10, 4700000)) -> Grid:
    """6 rows x 5 columns of 10 px tiles."""
    return Grid(crs=crs, transform=transform, width=50, height=60, tile_size=10, bands=[1], dtype="uint16")


def _tiles() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Tile ids (0 and 7 missing), valid-date counts and the clusters of two models."""
    tile_ids = np.array([t for t in range(30) if t not in (0, 7)])
    valid = np.arange(len(tile_ids)) % 3 + 1
    geo = np.array([0] * 12 + [1] * 10 + [2] * 6)
    return tile_ids, valid, {"geo": geo, "refined": geo[::-1].copy()}


# --- tiles as GeoParquet ----------------------------------------------------------------------

@pytest.fixture
def gpd():
    """geopandas, a test dependency: it reads the GeoParquet back as its users do."""
    return pytest.importorskip("geopandas", reason="geopandas (a test dependency) reads the GeoParquet back")


def test_tiles_parquet_reads_in_geopandas_with_crs_and_tile_squares(gpd, tmp_path: Path) -> None:
    grid = _grid()
    tile_ids, valid, clusters = _tiles()
    out = tmp_path / "tiles.parquet"
    write_tiles_parquet(grid, tile_ids, valid, clusters, out)

    df = gpd.read_parquet(out)
    assert df.crs == grid.crs and df.crs.to_epsg() == 32630
    assert list(df.columns) == ["tile_id", "row", "col", "area_km2", "valid_dates", "cluster_geo", "cluster_refined",
                                "geometry"]
    np.testing.assert_array_equal(df["tile_id"], tile_ids)
    rows, cols = grid.tile_rowcol(tile_ids)
    np.testing.assert_array_equal(df["row"], rows)
    np.testing.assert_array_equal(df["col"], cols)
    np.testing.assert_array_equal(df["valid_dates"], valid)
    np.testing.assert_array_equal(df["cluster_geo"], clusters["geo"])
    np.testing.assert_array_equal(df["cluster_refined"], clusters["refined"])
    # every polygon is its tile's square: 100 m x 100 m, counter-clockwise, at the grid position
    np.testing.assert_allclose(df.area, grid.tile_metres**2)
    np.testing.assert_allclose(df["area_km2"], 0.01)
    assert all(p.exterior.is_ccw and p.is_valid and len(p.exterior.coords) == 5 for p in df.geometry)
    left, top = 500000 + 100 * cols, 4700000 - 100 * rows
    np.testing.assert_allclose(df.bounds.to_numpy(), np.stack([left, top - 100, left + 100, top], axis=1))
    # the GeoParquet metadata itself
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 32630}
    np.testing.assert_allclose(column["bbox"], df.total_bounds)
    assert not list(tmp_path.glob(".*tmp*"))


def test_tiles_parquet_geographic_grid(gpd, tmp_path: Path) -> None:
    """A grid in degrees: CRS read back as EPSG:4326, areas (on the WGS 84 ellipsoid) shrinking northwards."""
    grid = _grid("EPSG:4326", (0.1, 0, 10.0, 0, -0.1, 60.0))
    tile_ids, valid, clusters = _tiles()
    write_tiles_parquet(grid, tile_ids, valid, {"spectral": clusters["geo"]}, tmp_path / "t.parquet")
    df = gpd.read_parquet(tmp_path / "t.parquet")
    assert df.crs.to_epsg() == 4326
    with pytest.warns(UserWarning, match="geographic CRS"):  # planar area in square degrees: 1 x 1 degree tiles
        np.testing.assert_allclose(df.area, 1.0)
    assert df["area_km2"].iloc[-1] > df["area_km2"].iloc[0]  # the last row is furthest south
    # within 1% of the area on a sphere of the mean Earth radius (the ellipsoid's is exact)
    assert df["area_km2"].iloc[0] == pytest.approx(111.19 * 111.19 * np.cos(np.radians(59.5)), rel=1e-2)


def test_tiles_parquet_checks_lengths(tmp_path: Path) -> None:
    tile_ids, valid, clusters = _tiles()
    with pytest.raises(ValueError, match="valid-date counts"):
        write_tiles_parquet(_grid(), tile_ids, valid[:-1], clusters, tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="model geo: 27 cluster labels for 28 tiles"):
        write_tiles_parquet(_grid(), tile_ids, valid, {"geo": clusters["geo"][:-1]}, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


# --- the kinds table --------------------------------------------------------------------------

def test_kinds_table_numbers_by_hand(tmp_path: Path) -> None:
    """Three clusters of 4, 3 and 1 tiles of 0.5 km2; kinds that move as worked out below."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    valid = np.array([3, 3, 2, 2, 3, 1, 2, 3])
    kind = np.array([
        [0, 0, 0], [0, 0, 0], [0, 1, 1], [0, 2, 0],  # cluster 0: two tiles leave kind 0 on 2023-07-25
        [1, 1, 0], [1, 1, 0], [1, 1, 1],             # cluster 1: two tiles become kind 0 on 2023-10-02
        [2, 2, 2],
    ])
    trans = transitions(kind, 3)
    jaccard = np.array([0.95, 0.6, 1.0])
    names = ["c0: first", "c1: second", "c2: third"]
    colours = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    frame = write_kinds_table(tmp_path / "kinds.csv", tmp_path / "kinds.json", labels, 3, 0.5, valid, jaccard,
                              trans, DATES, names, colours, meta={"model": "refined"})

    csv = pd.read_csv(tmp_path / "kinds.csv", keep_default_na=False)
    assert list(csv.columns) == ["cluster", "label", "tiles", "km2", "share", "mean_valid_dates",
                                 "stability_jaccard", "colour", "transitions"]
    assert csv["label"].tolist() == names
    assert csv["tiles"].tolist() == [4, 3, 1]
    np.testing.assert_allclose(csv["km2"], [2.0, 1.5, 0.5])
    np.testing.assert_allclose(csv["share"], [0.5, 0.375, 0.125])
    np.testing.assert_allclose(csv["mean_valid_dates"], [10 / 4, 6 / 3, 3.0])
    np.testing.assert_allclose(csv["stability_jaccard"], jaccard)
    assert csv["colour"].tolist() == ["#ff0000", "#008000", "#0000ff"]
    # kind 0 -> 1 and 0 -> 2 on 2023-07-25 (one tile each); back 2 -> 0 and on 1 -> 0 on 2023-10-02
    assert csv["transitions"].tolist() == [
        "-> c1 on 2023-07-25 (1 tiles); -> c2 on 2023-07-25 (1 tiles)",
        "-> c0 on 2023-10-02 (2 tiles)",
        "-> c0 on 2023-10-02 (1 tiles)",
    ]
    pd.testing.assert_frame_equal(csv, frame.astype({"transitions": str}), check_dtype=False)

    data = json.loads((tmp_path / "kinds.json").read_text())
    assert data["model"] == "refined" and data["k"] == 3 and data["dates"] == DATES
    assert list(data["columns"]) == list(csv.columns)  # every column described
    assert [r["transitions"] for r in data["kinds"]][1] == [
        {"to": 0, "date_from": "2023-07-25", "date": "2023-10-02", "tiles": 2}]
    for rec, row in zip(data["kinds"], csv.to_dict("records"), strict=True):  # the same numbers in both files
        for key in ("cluster", "label", "tiles", "km2", "share", "mean_valid_dates", "stability_jaccard", "colour"):
            assert rec[key] == pytest.approx(row[key])


def test_kinds_table_without_evolution_or_stability(tmp_path: Path) -> None:
    labels = np.array([0, 1, 1])
    frame = write_kinds_table(tmp_path / "k.csv", tmp_path / "k.json", labels, 3, np.array([1.0, 2.0, 2.0]),
                              np.array([2, 2, 1]), None, None, DATES[:2], top=1)
    assert frame["label"].tolist() == ["c0", "c1", "c2"]
    assert frame["tiles"].tolist() == [1, 2, 0]
    np.testing.assert_allclose(frame["share"], [0.2, 0.8, 0.0])
    data = json.loads((tmp_path / "k.json").read_text())
    assert data["kinds"][2]["mean_valid_dates"] is None and data["kinds"][0]["stability_jaccard"] is None
    with pytest.raises(ValueError, match="transitions have shape"):
        write_kinds_table(tmp_path / "k.csv", tmp_path / "k.json", labels, 3, 1.0, np.array([2, 2, 1]), None,
                          np.zeros((2, 3, 3)), DATES[:2])


def test_tiles_step_joins_every_model_and_the_coverage(tmp_path: Path) -> None:
    import rasterio

    from landtaxa.products.tables import tiles_step
    from landtaxa.storage import save_npz

    grid = _grid()
    grid.save(tmp_path / "grid.json")
    counts = np.arange(grid.n_tiles, dtype=np.uint16).reshape(grid.n_rows, grid.n_cols) % 4
    with rasterio.open(tmp_path / "coverage.tif", "w", driver="GTiff", width=grid.n_cols, height=grid.n_rows,
                       count=1, dtype="uint16", crs=grid.crs, transform=grid.tile_transform) as dst:
        dst.write(counts, 1)
    save_npz(tmp_path / "a.npz", tile_ids=np.array([1, 2, 5]), labels=np.array([0, 1, 1]))
    save_npz(tmp_path / "b.npz", tile_ids=np.array([2, 5, 7]), labels=np.array([2, 0, 1]))
    tiles_step(grid=str(tmp_path / "grid.json"), coverage=str(tmp_path / "coverage.tif"),
               clusters=[str(tmp_path / "a.npz"), str(tmp_path / "b.npz")], models=["geo", "refined"],
               out=str(tmp_path / "tiles.parquet"))
    table = pq.read_table(tmp_path / "tiles.parquet").to_pandas()
    assert table["tile_id"].tolist() == [1, 2, 5, 7]
    assert table["cluster_geo"].tolist() == [0, 1, 1, -1] and table["cluster_refined"].tolist() == [-1, 2, 0, 1]
    assert table["valid_dates"].tolist() == [1, 2, 1, 3]
