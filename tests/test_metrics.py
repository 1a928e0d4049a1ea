"""Tests of the taxonomy metrics and the truth-to-tiles majority vote (landtaxa.clustering.metrics)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    normalized_mutual_info_score,
    silhouette_score,
)

from landtaxa.clustering.metrics import taxonomy_metrics, truth_tiles
from landtaxa.inputs.grid import Grid


def _grid(n_rows: int, n_cols: int, tile_size: int, res: float = 10.0) -> Grid:
    return Grid(
        crs="EPSG:32630", transform=(res, 0, 500000, 0, -res, 4700000), width=n_cols * tile_size,
        height=n_rows * tile_size, tile_size=tile_size, bands=[1, 2, 3], dtype="uint16",
        scale_min=[0, 0, 0], scale_max=[1000, 1000, 1000],
    )


# --- taxonomy_metrics ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def clustering():
    grid = _grid(12, 12, 4)
    rng = np.random.default_rng(0)
    tile_ids = np.sort(rng.choice(grid.n_tiles, 120, replace=False))
    rows, cols = grid.tile_rowcol(tile_ids)
    # three spatially coherent clusters (left / top right / bottom right) with a few strays
    labels = np.where(cols < 5, 0, np.where(rows < 6, 1, 2))
    stray = rng.choice(len(labels), 10, replace=False)
    labels[stray] = rng.integers(0, 3, 10)
    means = rng.normal(0, 1, (3, 4, 2))
    series = (means[labels] + 0.5 * rng.normal(0, 1, (len(labels), 4, 2))).astype(np.float32)
    # truth: the cluster except for some tiles, and no reference for others
    truth = np.full(grid.n_tiles, -1, np.int64)
    truth[tile_ids] = labels + 5
    truth[tile_ids[rng.choice(len(tile_ids), 15, replace=False)]] = 9
    truth[tile_ids[rng.choice(len(tile_ids), 30, replace=False)]] = -1
    return grid, series, tile_ids, labels, truth


def test_taxonomy_metrics_against_sklearn(clustering) -> None:
    grid, series, tile_ids, labels, truth = clustering
    m = taxonomy_metrics(grid, series, tile_ids, labels, inertia=123.5, truth=truth, seed=0)
    flat = series.reshape(len(series), -1)
    rows, cols = divmod(tile_ids, grid.n_cols)
    coords = np.stack([rows, cols], 1).astype(float)
    assert m["k"] == 3 and m["n_tiles"] == 120 and m["n_dates"] == 4
    assert m["inertia"] == 123.5
    assert m["silhouette"] == pytest.approx(silhouette_score(flat, labels), rel=1e-5)
    assert m["geo_silhouette"] == pytest.approx(silhouette_score(coords, labels), rel=1e-9)
    assert m["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(coords, labels), rel=1e-9)
    # geographic metrics see the spatial layout: coherent clusters score well
    assert m["geo_silhouette"] > 0.2
    ref = truth[tile_ids]
    has = ref >= 0
    assert m["n_truth_tiles"] == int(has.sum()) == 120 - int((ref < 0).sum())
    assert m["ari"] == pytest.approx(adjusted_rand_score(ref[has], labels[has]), rel=1e-9)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(ref[has], labels[has]), rel=1e-9)
    # tiles without reference are left out: counting -1 as a class would give another score
    assert m["ari"] != pytest.approx(adjusted_rand_score(ref, labels), rel=1e-3)
    assert m["cluster_sizes"] == np.bincount(labels, minlength=3).tolist()
    assert sum(m["cluster_sizes"]) == 120


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_scores_are_scikit_learns(seed: int) -> None:
    """Each score, on labels that are not 0..k-1 and with a cluster of a single point, equals scikit-learn's."""
    from sklearn.metrics import silhouette_samples as sk_silhouette_samples

    from landtaxa.clustering.metrics import adjusted_rand, calinski_harabasz, normalized_mutual_info, silhouette_samples

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (90, 6)) + 50  # far from the origin: the norms' cancellation shows
    labels = rng.choice([3, 7, 11, 20], 90)
    labels[17] = 42  # a cluster of one point: its silhouette is 0
    x[labels == 7] += 1.5
    ours = silhouette_samples(x, labels)
    np.testing.assert_allclose(ours, sk_silhouette_samples(x, labels), rtol=1e-9, atol=1e-12)
    assert ours[17] == 0.0
    assert calinski_harabasz(x, labels) == pytest.approx(calinski_harabasz_score(x, labels), rel=1e-12)
    other = np.where(rng.random(90) < 0.7, labels, rng.choice([0, 1, 2], 90))
    assert adjusted_rand(labels, other) == pytest.approx(adjusted_rand_score(labels, other), rel=1e-12)
    assert normalized_mutual_info(labels, other) == pytest.approx(normalized_mutual_info_score(labels, other),
                                                                  rel=1e-12)
    assert adjusted_rand(labels, labels + 1) == 1.0
    assert normalized_mutual_info(labels, 5 - labels) == pytest.approx(1.0, abs=1e-12)


def test_the_scores_edge_cases_match_scikit_learn() -> None:
    from landtaxa.clustering.metrics import adjusted_rand, calinski_harabasz, normalized_mutual_info, silhouette_samples

    one, two = np.zeros(8, int), np.arange(8) % 2
    for a, b in [(one, one), (one, two), (two, one), (np.arange(8), np.arange(8)), (np.arange(8), two)]:
        assert adjusted_rand(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
        assert normalized_mutual_info(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    x = np.repeat(np.eye(2), 4, axis=0)  # every cluster a single repeated point: no dispersion inside
    assert calinski_harabasz(x, two[np.argsort(two, kind="stable")]) == 1.0 == calinski_harabasz_score(
        x, two[np.argsort(two, kind="stable")])
    with pytest.raises(ValueError, match="2 to n - 1"):
        silhouette_samples(x, one)


def test_metrics_of_a_series_on_disk_read_only_the_sample(clustering, tmp_path, monkeypatch) -> None:
    """From the cube, the same metrics as from the array; the silhouette reads only its sampled series."""
    from landtaxa.clustering.series import Series, save_series

    grid, series, tile_ids, labels, truth = clustering
    store = save_series(tmp_path / "s.npz", series, tile_ids, ["2021-01-01", "2021-02-01", "2021-03-01",
                                                                "2021-04-01"], grid)
    read = []
    take = Series.take
    monkeypatch.setattr(Series, "take", lambda self, rows: read.append(len(rows)) or take(self, rows))
    monkeypatch.setattr(Series, "blocks", lambda self, order=None: pytest.fail("the silhouette reads a sample"))
    m = taxonomy_metrics(grid, store, tile_ids, labels, inertia=1.0, truth=truth, seed=3, sample_size=50)
    assert sum(read) == 50
    ref = silhouette_score(series.reshape(len(series), -1), labels, sample_size=50, random_state=3)
    assert m["silhouette"] == pytest.approx(ref, rel=1e-5)
    whole = taxonomy_metrics(grid, series, tile_ids, labels, inertia=1.0, truth=truth, seed=3, sample_size=50)
    assert {k: v for k, v in m.items() if k != "silhouette"} == {k: v for k, v in whole.items() if k != "silhouette"}


def test_taxonomy_metrics_json_ready_and_without_truth(clustering) -> None:
    import json

    grid, series, tile_ids, labels, _ = clustering
    m = taxonomy_metrics(grid, series, tile_ids, labels, inertia=1.0)
    assert "ari" not in m and "nmi" not in m and "n_truth_tiles" not in m
    json.dumps(m)  # plain Python types only
    assert all(isinstance(m[key], float) for key in ("silhouette", "geo_silhouette", "calinski_harabasz"))


def test_taxonomy_metrics_perfect_truth(clustering) -> None:
    grid, series, tile_ids, labels, _ = clustering
    truth = np.full(grid.n_tiles, -1, np.int64)
    truth[tile_ids] = (labels + 1) % 3  # same partition, other class numbers
    m = taxonomy_metrics(grid, series, tile_ids, labels, inertia=1.0, truth=truth)
    assert m["ari"] == pytest.approx(1.0) and m["nmi"] == pytest.approx(1.0)


# --- truth_tiles --------------------------------------------------------------------------

def _write(path, data: np.ndarray, crs: str, transform: Affine, nodata=None, dtype="uint8") -> None:
    profile = {
        "driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": dtype,
        "crs": crs, "transform": transform, "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype), 1)


def test_truth_tiles_same_grid_majority(tmp_path) -> None:
    grid = _grid(2, 3, 4)  # 8 x 12 px, 6 tiles of 4 x 4
    truth = np.zeros((8, 12), np.uint8)  # 0 = nodata
    truth[0:4, 0:4] = 2
    truth[0:4, 0:4].flat[:6] = 5  # tile 0: 10 px of 2, 6 of 5 -> 2
    truth[0:4, 4:8] = 7
    truth[0:4, 4:8].flat[:9] = 3  # tile 1: 9 px of 3, 7 of 7 -> 3
    # tile 2: all nodata -> -1
    truth[4, 0:3] = 7  # tile 3: only 3 valid px, all 7 -> 7 (nodata is not a vote)
    truth[4:8, 4:8] = 4  # tile 4: uniform 4
    truth[4:8, 8:12] = 1
    truth[4:6, 8:12] = 6  # tile 5: 8 vs 8 -> tie goes to the smaller class, 1
    path = tmp_path / "truth.tif"
    _write(path, truth, grid.crs, grid.affine, nodata=0)
    out = truth_tiles(grid, path)
    assert out.dtype == np.int64 and out.shape == (6,)
    assert out.tolist() == [2, 3, -1, 7, 4, 1]
    # independent of the windows (here of one tile, then of 2 x 2)
    np.testing.assert_array_equal(truth_tiles(grid, path, window_px=grid.tile_size), out)
    np.testing.assert_array_equal(truth_tiles(grid, path, window_px=2 * grid.tile_size), out)


def test_truth_tiles_finer_resolution_partial_cover(tmp_path) -> None:
    grid = _grid(4, 4, 4)  # 10 m pixels, 40 m tiles, 160 m square
    # a 5 m truth covering the 3 left tile columns and the 3 top tile rows, class = 10*row + col
    tr = Affine(5.0, 0, 500000, 0, -5.0, 4700000)
    truth = np.zeros((24, 24), np.uint8)
    for r in range(3):
        for c in range(3):
            truth[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = 10 * r + c + 1
    truth[0, 0:3] = 99  # a few odd pixels do not win the vote
    path = tmp_path / "fine.tif"
    _write(path, truth, grid.crs, tr)  # no nodata: every pixel is a reference
    out = truth_tiles(grid, path).reshape(4, 4)
    expected = np.full((4, 4), -1)
    for r in range(3):
        for c in range(3):
            expected[r, c] = 10 * r + c + 1
    np.testing.assert_array_equal(out, expected)


def test_truth_tiles_coarser_resolution_offset(tmp_path) -> None:
    grid = _grid(4, 4, 4)
    # 20 m truth shifted by half a tile (20 m) to the east: tile columns straddle two classes,
    # tile column c covers truth columns c-1 and c equally on x in [500000 + 40c, 500040 + 40c)
    tr = Affine(20.0, 0, 500020, 0, -20.0, 4700000)
    truth = np.repeat(np.repeat(np.array([[1, 2, 3, 4]]), 8, axis=0), 2, axis=1)  # (8, 8) px, 40 m columns
    path = tmp_path / "coarse.tif"
    _write(path, truth, grid.crs, tr)
    out = truth_tiles(grid, path).reshape(4, 4)
    # column 0: half outside (no reference) and half class 1 -> 1; then ties -> smaller class
    np.testing.assert_array_equal(out, np.tile([1, 1, 2, 3], (4, 1)))


def test_truth_tiles_other_crs(tmp_path) -> None:
    grid = _grid(8, 8, 16)  # 10 m, 160 m tiles, 1280 m square in UTM 30N
    left, bottom, right, top = grid.bounds
    x_mid, y_mid = (left + right) / 2, (bottom + top) / 2
    # the truth in lon/lat: four quadrant classes split at the region's centre, with a margin around
    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", left - 300, bottom - 300, right + 300, top + 300)
    lon_mid = transform_bounds(grid.crs, "EPSG:4326", x_mid, y_mid, x_mid, y_mid)[0]
    lat_mid = transform_bounds(grid.crs, "EPSG:4326", x_mid, y_mid, x_mid, y_mid)[1]
    step = 2e-5  # about 2 m
    width, height = int((east - west) / step) + 1, int((north - south) / step) + 1
    lon = west + (np.arange(width) + 0.5) * step
    lat = north - (np.arange(height) + 0.5) * step
    cls = 1 + (lon[None, :] >= lon_mid) + 2 * (lat[:, None] < lat_mid)
    path = tmp_path / "lonlat.tif"
    _write(path, cls, "EPSG:4326", Affine(step, 0, west, 0, -step, north))
    out = truth_tiles(grid, path).reshape(8, 8)
    rows, cols = np.mgrid[0:8, 0:8]
    expected = 1 + (cols >= 4) + 2 * (rows >= 4)
    np.testing.assert_array_equal(out, expected)


def test_truth_tiles_no_overlap(tmp_path) -> None:
    grid = _grid(4, 4, 4)
    path = tmp_path / "far away.tif"
    _write(path, np.ones((10, 10)), grid.crs, Affine(10.0, 0, 600000, 0, -10.0, 4800000))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*does not overlap"):
        truth_tiles(grid, path)


def test_truth_tiles_all_nodata_over_region(tmp_path) -> None:
    grid = _grid(4, 4, 4)
    path = tmp_path / "empty.tif"
    _write(path, np.zeros((16, 16)), grid.crs, grid.affine, nodata=0)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*does not overlap"):
        truth_tiles(grid, path)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_truth_tiles_no_crs(tmp_path) -> None:
    grid = _grid(4, 4, 4)
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8") as dst:
        dst.write(np.ones((16, 16), np.uint8), 1)
    with pytest.raises(ValueError, match=re.escape(f"{path}: truth raster: no CRS and no geotransform")):
        truth_tiles(grid, path)


def test_seed_agreement_over_the_tiles_both_hold() -> None:
    from landtaxa.clustering.metrics import seed_agreement

    a = {"tile_ids": np.array([1, 2, 3, 4, 5]), "labels": np.array([0, 0, 1, 1, 2])}
    b = {"tile_ids": np.array([2, 3, 4, 5, 6]), "labels": np.array([7, 4, 4, 9, 9])}  # renamed, tile 1 and 6 apart
    assert seed_agreement(a, b) == pytest.approx(1.0)
    c = {"tile_ids": np.array([2, 3, 4, 5]), "labels": np.array([0, 1, 0, 1])}
    assert seed_agreement(a, c) < 0.1


def test_comparison_table_says_how_each_model_compares_with_the_stronger_baseline() -> None:
    from landtaxa.clustering.metrics import comparison_table, gather_metrics

    metrics = gather_metrics({"spectral": {"ari": 0.5, "nmi": 0.6, "silhouette": 0.3, "geo_silhouette": 0.1},
                              "means": {"ari": 0.6, "nmi": 0.5, "silhouette": 0.1, "geo_silhouette": 0.2},
                              "geo": {"ari": 0.7, "nmi": 0.6, "silhouette": 0.2, "geo_silhouette": 0.0},
                              "refined": {"ari": 0.4, "nmi": 0.5, "silhouette": 0.4, "geo_silhouette": 0.0}})
    # each score against the stronger of the two baselines on that score, which compared_with names
    assert metrics["geo"]["compared_with_spectral"]["ari"] == pytest.approx(0.1)
    assert metrics["geo"]["compared_with_spectral"]["nmi"] == pytest.approx(0.0)
    assert metrics["geo"]["compared_with"] == {"ari": "means", "nmi": "spectral", "silhouette": "spectral",
                                               "geo_silhouette": "means"}
    assert "compared_with_spectral" not in metrics["means"]
    metrics["main"] = {"model": "geo", "reason": "test"}
    rows = {r["model"]: r for r in comparison_table(metrics)}
    assert rows["geo (main)"]["against the baseline"] == "better than means in ARI (+0.100)"
    assert rows["refined"]["against the baseline"] == "not better than means in ARI (-0.200)"
    assert rows["spectral"]["against the baseline"].startswith("a baseline")


def test_the_main_map_falls_back_to_the_classic_baseline_when_the_members_disagree() -> None:
    from landtaxa.clustering.metrics import choose_main

    metrics = {"consensus": {"seed_agreement": 0.82, "members": 5}, "means": {}}
    assert choose_main(metrics, ["consensus", "means"], 0.7)["model"] == "consensus"
    assert choose_main(metrics, ["consensus", "means"], 0.9)["model"] == "means"
    assert "0.820" in choose_main(metrics, ["consensus", "means"], 0.9)["reason"]
    assert choose_main({"refined": {}}, ["refined"], 0.7)["model"] == "refined"  # one member: no consensus


def test_metrics_step_states_the_members_agreement_and_the_main_model(tmp_path) -> None:
    from landtaxa.clustering.metrics import metrics_step
    from landtaxa.params import MetricsParams
    from landtaxa.storage import read_json, save_npz, write_json

    tiles = np.arange(6)
    for model, ari in (("spectral", 0.2), ("means", 0.3), ("geo", 0.4), ("consensus", 0.5)):
        write_json(tmp_path / f"{model}.json", {"model": model, "ari": ari})
    write_json(tmp_path / "consensus.json", {"model": "consensus", "ari": 0.5, "seed_agreement": 0.5, "members": 2})
    save_npz(tmp_path / "a.npz", tile_ids=tiles, labels=np.array([0, 0, 1, 1, 2, 2]))
    save_npz(tmp_path / "b.npz", tile_ids=tiles, labels=np.array([2, 2, 0, 0, 1, 1]))  # the same map, renamed
    models = ["spectral", "means", "geo", "consensus"]
    metrics_step(inputs=[str(tmp_path / f"{m}.json") for m in models], models=models, out=str(tmp_path / "m.json"),
                 table=str(tmp_path / "m.csv"), chain=["geo"], member_labels=[str(tmp_path / "a.npz"),
                                                                              str(tmp_path / "b.npz")],
                 candidates=["consensus", "means"], params=MetricsParams(min_agreement=0.7))
    out = read_json(tmp_path / "m.json")
    assert out["geo"]["seed_agreement"] == pytest.approx(1.0)
    assert out["main"]["model"] == "means"  # the consensus's members agree at 0.5 only
    assert "means (main)" in (tmp_path / "m.csv").read_text()
