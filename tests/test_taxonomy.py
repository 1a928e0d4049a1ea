"""Tests of :class:`landtaxa.products.taxonomy.Taxonomy`: one clustering loaded once for the product steps, with the
colours and class names every product of it shows (the map, the kinds table), on a small synthetic clustering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from series_data import blobs, centroids_of

from landtaxa.clustering.series import save_series
from landtaxa.inputs.grid import Grid
from landtaxa.products.analysis import kinds_step
from landtaxa.products.maps import map_step
from landtaxa.products.rasters import pca_colours
from landtaxa.products.styles import colour_hex
from landtaxa.products.taxonomy import Taxonomy
from landtaxa.storage import read_json, save_npz, write_json

DATES = ["2021-01-01", "2021-05-01", "2021-09-01"]
SIZES = [10, 7, 5, 4]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A 6 x 5 grid of 80 m tiles; 26 of them in 4 clusters over 3 dates; on the last date cluster 3's tiles take
    kind 0 (the evolution's table)."""
    work = tmp_path_factory.mktemp("taxonomy")
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=48, tile_size=8,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0, 0, 0], scale_max=[1000, 1000, 1000])
    grid.save(work / "grid.json")
    x, labels = blobs(SIZES, spread=0.3, seed=2, t=3, d=4)
    tile_ids = np.sort(np.random.default_rng(0).choice(30, len(labels), replace=False))
    valid = np.ones((len(labels), 3), bool)
    valid[labels == 1, 0] = False  # cluster 1 is clouded on the first date
    save_series(work / "series.npz", x, tile_ids, DATES, grid, valid=valid)
    cen = centroids_of(x, labels, 4).astype(np.float32)
    save_npz(work / "k4.npz", labels=labels, centroids=cen, tile_ids=tile_ids, dates=np.array(DATES))
    kind = np.stack([labels, labels, np.where(labels == 3, 0, labels)], axis=1)
    pd.DataFrame({"tile_id": np.repeat(tile_ids, 3), "date": np.tile(DATES, len(tile_ids)),
                  "kind": kind.reshape(-1)}).to_parquet(work / "labels.parquet")
    paths = {name: str(work / f) for name, f in (("grid", "grid.json"), ("series", "series.npz"),
                                                 ("clusters", "k4.npz"), ("kinds", "labels.parquet"))}
    return {"work": work, "paths": paths, "labels": labels, "tile_ids": tile_ids, "centroids": cen, "kind": kind,
            "valid": valid}


def test_load_gives_the_clustering_its_colours_kinds_and_names(files) -> None:
    t = Taxonomy.load(**files["paths"])
    np.testing.assert_array_equal(t.tile_ids, files["tile_ids"])
    np.testing.assert_array_equal(t.labels, files["labels"])
    np.testing.assert_array_equal(t.centroids, files["centroids"])
    assert t.k == 4 and t.title("geo") == "geo model, K=4"
    # the map's colours: one distinct colour per cluster, from the centroids
    np.testing.assert_array_equal(t.colours, pca_colours(files["centroids"]))
    assert t.colours.shape == (4, 3) and len({tuple(c) for c in t.colours}) == 4
    # the kinds, read in the clusters' tile order, and their dates
    np.testing.assert_array_equal(t.kind, files["kind"])
    assert t.dates == DATES
    np.testing.assert_array_equal(t.series.valid, files["valid"])
    assert t.grid.tile_size == 8 and t.grid.n_tiles == 30
    # the names from the data: tiles, km2 (80 m tiles), and the date cluster 3 changes kind
    for c, n in enumerate(SIZES):
        assert t.names[c].startswith(f"c{c}: {n} tiles, {n * 0.0064:.4g} km2, "), t.names[c]
        assert t.names[c].endswith("changes on 2021-09-01 (100%)" if c == 3 else "stable"), t.names[c]


def test_the_steps_write_the_taxonomy_s_colours_and_names(files, tmp_path: Path) -> None:
    """The map and the kinds table of one clustering show the same colours and names as the taxonomy."""
    t = Taxonomy.load(**files["paths"])
    p = files["paths"]
    map_step(grid=p["grid"], clusters=p["clusters"], kinds=p["kinds"], model="geo", tif=str(tmp_path / "m.tif"),
             png=str(tmp_path / "m.png"), legend=str(tmp_path / "legend.png"))
    with rasterio.open(tmp_path / "m.tif") as src:
        table = src.colormap(1)
    assert [table[c][:3] for c in range(4)] == [tuple(int(round(255 * v)) for v in col) for col in t.colours]
    aux = (tmp_path / "m.tif.aux.xml").read_text()
    assert all(name in aux for name in t.names)
    write_json(tmp_path / "stab.json", {"jaccard": [1.0, 1.0, 1.0, 1.0]})
    kinds_step(grid=p["grid"], series=p["series"], clusters=p["clusters"], stability=str(tmp_path / "stab.json"),
               kinds=p["kinds"], model="geo", csv=str(tmp_path / "kinds.csv"), json=str(tmp_path / "kinds.json"))
    rows = read_json(tmp_path / "kinds.json")["kinds"]
    assert [r["label"] for r in rows] == t.names
    assert [r["colour"] for r in rows] == colour_hex(t.colours)
    assert [r["mean_valid_dates"] for r in rows] == pytest.approx([3, 2, 3, 3])


def test_load_without_kinds_or_series(files) -> None:
    p = files["paths"]
    t = Taxonomy.load(grid=p["grid"], series=p["series"], clusters=p["clusters"])
    assert t.kind is None and t.names is None
    assert t.dates == DATES  # the series' dates
    np.testing.assert_array_equal(t.colours, Taxonomy.load(**p).colours)
    bare = Taxonomy.load(clusters=p["clusters"])
    assert bare.grid is None and bare.series is None and bare.dates is None and bare.k == 4
    np.testing.assert_array_equal(bare.colours, t.colours)


def test_load_refuses_a_series_of_other_tiles_and_kinds_without_a_grid(files, tmp_path: Path) -> None:
    p = files["paths"]
    other = tmp_path / "k4_other.npz"
    save_npz(other, labels=files["labels"], centroids=files["centroids"], tile_ids=files["tile_ids"][::-1].copy())
    with pytest.raises(ValueError, match=r"k4_other.npz and .*series.npz hold different tiles"):
        Taxonomy.load(series=p["series"], clusters=str(other))
    with pytest.raises(ValueError, match=r"class names of .*labels.parquet need the grid"):
        Taxonomy.load(clusters=p["clusters"], kinds=p["kinds"])
