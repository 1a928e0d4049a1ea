"""Tests of the taxonomy analysis (landtaxa.products.analysis): representatives, interpolation, the semantic
graph, projections, stability and the choice of K, on small synthetic series with known answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst
from scipy.spatial.distance import cdist
from series_data import blobs, centroids_of

from landtaxa.clustering.clusters import cluster_series
from landtaxa.clustering.series import save_series
from landtaxa.inputs.grid import Grid
from landtaxa.params import AnalysisParams, ClusterParams, RepresentativesParams, StabilityParams
from landtaxa.products import analysis as an
from landtaxa.storage import load_npz, read_json, save_npz


def test_representatives_are_the_members_closest_to_their_centroid() -> None:
    x, labels = blobs([40, 25, 10], spread=0.8, seed=1)
    cen = centroids_of(x, labels, 3)
    reps = an.representatives(x, labels, cen, 4)
    for k, idx in enumerate(reps):
        assert len(idx) == 4 and np.all(labels[idx] == k)
        d = np.linalg.norm((x - cen[k]).reshape(len(x), -1), axis=1)
        members = np.flatnonzero(labels == k)
        assert np.all(np.diff(d[idx]) >= 0)  # closest first
        others = np.setdiff1d(members, idx)
        assert d[idx].max() <= d[others].min()  # nobody left out is closer
    # a cluster smaller than n gives all its members
    assert len(an.representatives(x, labels, cen, 50)[2]) == 10


def test_interpolation_endpoints_and_closest_series() -> None:
    x, labels = blobs([30, 30], spread=0.5, seed=2)
    cen = centroids_of(x, labels, 2)
    pts = an.interpolate(cen, 0, 1, [0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(pts[0], cen[0], rtol=1e-6)
    np.testing.assert_allclose(pts[-1], cen[1], rtol=1e-6)
    np.testing.assert_allclose(pts[2], (cen[0] + cen[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts[1], 0.75 * cen[0] + 0.25 * cen[1], rtol=1e-5, atol=1e-6)
    idx, dist = an.closest(x, pts)
    brute = cdist(pts.reshape(len(pts), -1), x.reshape(len(x), -1))
    np.testing.assert_array_equal(idx, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1), rtol=1e-4)
    assert labels[idx[0]] == 0 and labels[idx[-1]] == 1


def _is_tree(k: int, edges: list) -> bool:
    parent = list(range(k))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for i, j, _ in edges:
        ri, rj = root(i), root(j)
        if ri == rj:
            return False  # a cycle
        parent[ri] = rj
    return len({root(a) for a in range(k)}) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minimum_spanning_tree_is_a_minimal_tree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cen = rng.normal(0, 1, (9, 4, 3)).astype(np.float32)
    edges = an.minimum_spanning_tree(cen)
    assert len(edges) == 8 and _is_tree(9, edges)
    dist = cdist(cen.reshape(9, -1), cen.reshape(9, -1))
    for i, j, w in edges:
        assert i < j and w == pytest.approx(dist[i, j], rel=1e-5)
    assert sum(w for *_, w in edges) == pytest.approx(scipy_mst(dist).sum(), rel=1e-5)


def test_minimum_spanning_tree_of_identical_centroids() -> None:
    """Zero distances (which scipy's dense input reads as 'no edge') still give K-1 edges."""
    cen = np.zeros((4, 2, 2), np.float32)
    cen[3] += 1.0
    edges = an.minimum_spanning_tree(cen)
    assert len(edges) == 3 and _is_tree(4, edges)
    assert sorted(w for *_, w in edges) == pytest.approx([0, 0, 2])


def test_graphml_holds_nodes_and_edges(tmp_path: Path) -> None:
    sizes = np.array([50, 30, 20])
    colours = np.array([[1.0, 0, 0], [0, 0.5, 0], [0, 0, 1.0]])
    an.write_graphml(tmp_path / "g.graphml", sizes, colours, [(0, 1, 1.5), (1, 2, 2.25)])
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    root = ET.parse(tmp_path / "g.graphml").getroot()
    nodes = root.findall(".//g:node", ns)
    edges = root.findall(".//g:edge", ns)
    assert [n.get("id") for n in nodes] == ["c0", "c1", "c2"]
    assert [d.text for d in nodes[1].findall("g:data", ns)] == ["30", "#008000"]
    assert [(e.get("source"), e.get("target"), e.find("g:data", ns).text) for e in edges] == [
        ("c0", "c1", "1.5"), ("c1", "c2", "2.25")]


def test_stability_is_perfect_on_separated_data_and_not_on_ambiguous_data() -> None:
    x, labels = blobs([60, 50, 40], spread=0.05, seed=3)
    seeds = [1, 2, 3]
    one = ClusterParams.from_json('{"n_init": 1}')
    st = an.stability(x, labels, 3, seeds, one)
    np.testing.assert_allclose(st["ari"], 1.0)
    np.testing.assert_allclose(st["jaccard"], 1.0)
    # structureless data: K-means from other seeds cuts it differently
    noise = np.random.default_rng(4).normal(0, 1, (150, 5, 3)).astype(np.float32)
    base = cluster_series(noise, 4, one).labels
    st = an.stability(noise, base, 4, [11, 12, 13, 14], one)
    assert st["ari"].shape == (5, 5) and np.allclose(np.diag(st["ari"]), 1)
    assert st["ari"][np.triu_indices(5, 1)].min() < 0.9
    assert st["jaccard"].min() < 1.0


def test_subsample_is_fixed_by_the_seed() -> None:
    a = an.subsample(5000, 300, seed=7)
    assert len(a) == 300 and len(np.unique(a)) == 300 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, an.subsample(5000, 300, seed=7))
    np.testing.assert_array_equal(an.subsample(50, 300, seed=7), np.arange(50))


def test_projections_separate_separated_clusters() -> None:
    x, labels = blobs([40, 40], spread=0.1, seed=5)
    proj = an.projections(x, seed=0)
    for name in ("tsne", "mds"):
        xy = proj[name]
        assert xy.shape == (80, 2) and np.isfinite(xy).all()
        # every point is nearer its own cluster's mean in the projection
        means = np.stack([xy[labels == c].mean(0) for c in range(2)])
        assert np.all(np.argmin(cdist(xy, means), axis=1) == labels), name


def test_series_pca_rgb_and_best_k() -> None:
    x, _ = blobs([30, 30, 30], spread=0.3, seed=6)
    rgb = an.series_pca_rgb(x)
    assert rgb.shape == (90, 3) and rgb.min() >= 0 and rgb.max() <= 1
    table = [{"k": 4, "silhouette": 0.3}, {"k": 5, "silhouette": 0.5}, {"k": 6, "silhouette": 0.5}]
    assert an.best_k(table) == 5


def test_centroid_layout_keeps_near_clusters_near_and_far_ones_far() -> None:
    """Two families of three centroids, 10 apart: every pair within a family is drawn closer than any
    pair across; one or two centroids get fixed positions."""
    rng = np.random.default_rng(0)
    cen = np.concatenate([rng.normal(0, 0.5, (3, 3, 2)), rng.normal(10, 0.5, (3, 3, 2))])
    lay = an.centroid_layout(cen)
    assert lay.shape == (6, 2)
    d = cdist(lay, lay)
    within = max(d[i, j] for fam in ((0, 1, 2), (3, 4, 5)) for i in fam for j in fam if i < j)
    across = min(d[i, j] for i in (0, 1, 2) for j in (3, 4, 5))
    assert within < across
    assert an.centroid_layout(cen[:2]).tolist() == [[0.0, 0.0], [1.0, 0.0]]


# --------------------------------------------------------------------------- the steps' products


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory) -> dict:
    """A 6 x 5 tile grid, 3 dates of aligned 3-band rasters, a series of 26 tiles in 4 clusters."""
    from rasters import write_raster

    work = tmp_path_factory.mktemp("taxonomy")
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=48, tile_size=8,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0, 0, 0], scale_max=[1000, 1000, 1000])
    grid.save(work / "grid.json")
    rng = np.random.default_rng(0)
    dates = ["2021-01-01", "2021-05-01", "2021-09-01"]
    aligned = [write_raster(work / f"{d}.tif", rng.integers(1, 1000, (3, 48, 40)).astype("uint16"), "EPSG:32631",
                            (500000, 4000000, 10)) for d in dates]
    x, _ = blobs([10, 7, 5, 4], spread=0.3, seed=2, t=3, d=4)
    tile_ids = np.sort(rng.choice(30, 26, replace=False))
    save_series(work / "series.npz", x, tile_ids, dates, grid, valid=np.ones((26, 3), bool))
    res = cluster_series(x, 4, ClusterParams.from_json('{"n_init": 2}'))
    save_npz(work / "k4.npz", labels=res.labels, centroids=res.centroids, tile_ids=tile_ids, dates=np.array(dates))
    save_npz(work / "k4_distances.npz", distances=res.distances)
    return {"work": work, "aligned": [str(a) for a in aligned], "labels": res.labels, "tile_ids": tile_ids, "x": x}


def test_analysis_step_writes_map_graph_and_projections(taxonomy) -> None:
    import pandas as pd
    import rasterio

    w = taxonomy["work"]
    out = w / "analysis"
    an.analysis_step(grid=str(w / "grid.json"), series=str(w / "series.npz"), clusters=str(w / "k4.npz"),
                     model="geo", out_dir=str(out), params=AnalysisParams.from_json('{"projection_tiles": 20}'))
    edges = pd.read_csv(out / "graph_edges.csv")
    assert len(edges) == 3  # K - 1 edges joining all K clusters: a spanning tree
    assert set(edges["source"]) | set(edges["target"]) == set(range(4)) and (edges["distance"] > 0).all()
    with rasterio.open(out / "series_pca.tif") as src:
        assert src.count == 4 and src.transform == Grid.load(w / "grid.json").tile_transform
        alpha = src.read(4).reshape(-1)
    assert np.all(alpha[taxonomy["tile_ids"]] == 255) and alpha.sum() == 255 * len(taxonomy["tile_ids"])
    assert {p.name for p in out.iterdir()} == {"series_pca.tif", "series_pca.png", "graph.png", "graph.graphml",
                                              "graph_edges.csv", "projections.png"}


def test_representatives_step_tables(taxonomy, monkeypatch) -> None:
    """The step chooses its tiles from the clustering's distances: the series is not read (no block, no tile)."""
    import pandas as pd

    from landtaxa.clustering.series import Series

    w = taxonomy["work"]
    out = w / "reps"
    for name in ("blocks", "take"):
        monkeypatch.setattr(Series, name, lambda *a, **kw: pytest.fail("the series was read"))
    an.representatives_step(grid=str(w / "grid.json"), series=str(w / "series.npz"), clusters=str(w / "k4.npz"),
                            distances=str(w / "k4_distances.npz"), aligned=taxonomy["aligned"], model="geo",
                            out_dir=str(out), params=RepresentativesParams.from_json("{}"))
    label_of = dict(zip(taxonomy["tile_ids"].tolist(), taxonomy["labels"].tolist(), strict=True))
    reps = pd.read_csv(out / "representatives.csv")
    assert all(label_of[t] == c for t, c in zip(reps["tile_id"], reps["cluster"], strict=True))
    assert set(reps["cluster"]) == set(range(4)) and reps.groupby("cluster").size().max() == 3
    interp = pd.read_csv(out / "interpolation.csv")
    assert list(interp["w"]) == [0, 0.25, 0.5, 0.75, 1]
    assert label_of[interp["tile_id"].iloc[0]] == 0 and label_of[interp["tile_id"].iloc[-1]] == 1
    x, labels = taxonomy["x"], taxonomy["labels"]
    cen = load_npz(w / "k4.npz")["centroids"]
    expected = an.representatives(x, labels, cen, 3)  # the pass over the series, as before
    assert reps["tile_id"].tolist() == taxonomy["tile_ids"][np.concatenate(expected)].tolist()
    idx, dist = an.closest(x, an.interpolate(cen, 0, 1, [0, 0.25, 0.5, 0.75, 1]))
    assert interp["tile_id"].tolist() == taxonomy["tile_ids"][idx].tolist()
    np.testing.assert_allclose(interp["distance"], dist, rtol=1e-4)
    with pytest.raises(ValueError, match="2 aligned images for the series' 3 dates"):
        an.representatives_step(grid=str(w / "grid.json"), series=str(w / "series.npz"), clusters=str(w / "k4.npz"),
                                distances=str(w / "k4_distances.npz"), aligned=taxonomy["aligned"][:2], model="geo",
                                out_dir=str(out), params=RepresentativesParams.from_json("{}"))
    save_npz(w / "k3_distances.npz", distances=np.zeros((26, 3), np.float32))
    with pytest.raises(ValueError, match=r"k3_distances.npz: distances of 26 tiles to 3 centroids, but .*k4.npz holds "
                                         r"26 tiles and 4 centroids; rerun the clustering"):
        an.representatives_step(grid=str(w / "grid.json"), series=str(w / "series.npz"), clusters=str(w / "k4.npz"),
                                distances=str(w / "k3_distances.npz"), aligned=taxonomy["aligned"], model="geo",
                                out_dir=str(out), params=RepresentativesParams.from_json("{}"))


def test_stability_step(taxonomy) -> None:
    w = taxonomy["work"]
    an.stability_step(series=str(w / "series.npz"), clusters=str(w / "k4.npz"), model="geo",
                      out=str(w / "stability.json"), png=str(w / "stability.png"),
                      params=StabilityParams.from_json('{"restarts": 3, "seed": 5}'))
    stab = read_json(w / "stability.json")
    ari = np.array(stab["ari"])
    assert stab["seeds"] == [6, 7, 8]
    assert ari.shape == (4, 4) and np.allclose(np.diag(ari), 1) and np.allclose(ari, ari.T)
    assert len(stab["jaccard"]) == 4 and all(0 < j <= 1 for j in stab["jaccard"])


def test_k_choice_table(tmp_path: Path) -> None:
    import pandas as pd

    metrics = [{"k": k, "inertia": 100 / k, "silhouette": s, "geo_silhouette": 0.1, "calinski_harabasz": 5.0,
                "ari": 0.5, "nmi": 0.6, "n_tiles": 50} for k, s in ((5, 0.4), (3, 0.6), (4, 0.5))]
    best = an.write_k_choice(metrics, "geo", tmp_path / "k.csv", tmp_path / "k.png")
    table = pd.read_csv(tmp_path / "k.csv")
    assert best == 3 and list(table["k"]) == [3, 4, 5]
    assert list(table["silhouette_best"]) == [True, False, False]
    assert "n_tiles" not in table.columns and (tmp_path / "k.png").stat().st_size > 1000


def test_kinds_step(taxonomy) -> None:
    import pandas as pd

    from landtaxa.storage import write_json

    w = taxonomy["work"]
    labels, tile_ids = taxonomy["labels"], taxonomy["tile_ids"]
    kind = np.stack([labels, labels, np.where(labels == 3, 0, labels)], axis=1)  # cluster 3 becomes kind 0
    dates = ["2021-01-01", "2021-05-01", "2021-09-01"]
    pd.DataFrame({"tile_id": np.repeat(tile_ids, 3), "date": np.tile(dates, len(tile_ids)),
                  "kind": kind.reshape(-1)}).to_parquet(w / "labels.parquet")
    write_json(w / "stab.json", {"jaccard": [1.0, 0.9, 0.5, 0.25]})
    an.kinds_step(grid=str(w / "grid.json"), series=str(w / "series.npz"), clusters=str(w / "k4.npz"),
                  stability=str(w / "stab.json"), kinds=str(w / "labels.parquet"), model="geo",
                  csv=str(w / "kinds.csv"), json=str(w / "kinds.json"))
    table = pd.read_csv(w / "kinds.csv")
    assert table["tiles"].tolist() == np.bincount(labels, minlength=4).tolist()
    assert table["km2"].sum() == pytest.approx(len(tile_ids) * 0.0064)  # 80 m tiles
    assert table["stability_jaccard"].tolist() == [1.0, 0.9, 0.5, 0.25]
    assert (table["mean_valid_dates"] == 3).all()
    assert "-> c0 on 2021-09-01 (4 tiles)" in table.loc[3, "transitions"]
    assert read_json(w / "kinds.json")["model"] == "geo"


# --------------------------------------------------------------------------- a series on disk


@pytest.fixture()
def store(tmp_path):
    """Overlapping blobs as a series on disk, read in blocks of 40 tiles."""
    from landtaxa.clustering.series import Series

    x, labels = blobs([300, 200, 150, 100], spread=1.0, seed=4, t=3, d=4)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=50, height=15, tile_size=1,
                bands=[1], dtype="uint16")
    save_series(tmp_path / "s.npz", x, np.arange(len(x)), ["2021-01-01", "2021-05-01", "2021-09-01"], grid)
    return x, labels, Series(tmp_path / "s.npz", block_bytes=40 * 3 * 4 * 4)


def test_distances_from_a_store_equal_those_from_the_array(store) -> None:
    x, labels, s = store
    assert s.n_blocks() > 10
    cen = centroids_of(x, labels, 4)
    for a, b in zip(an.representatives(s, labels, cen, 5), an.representatives(x, labels, cen, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    pts = an.interpolate(cen, 0, 2, [0.0, 0.3, 0.6, 1.0])
    for a, b in zip(an.closest(s, pts), an.closest(x, pts), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_representatives_and_interpolation_read_the_series_once(store, monkeypatch) -> None:
    """The representatives step finds both the tiles closest to each centroid and those closest to the points
    between two centroids in one pass over the series (from disk once, not twice), with the same answers."""
    x, labels, s = store
    cen = centroids_of(x, labels, 4)
    pts = an.interpolate(cen, 1, 3, [0.0, 0.5, 1.0])
    passes = []
    blocks = type(s).blocks
    monkeypatch.setattr(type(s), "blocks", lambda self, order=None: passes.append(1) or blocks(self, order))
    reps, idx, dist = an.representatives_and_closest(s, labels, cen, 5, pts)
    assert len(passes) == 1
    for a, b in zip(reps, an.representatives(x, labels, cen, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    alone = an.closest(x, pts)
    np.testing.assert_array_equal(idx, alone[0])
    np.testing.assert_allclose(dist, alone[1], rtol=1e-5)
    brute = np.sqrt(((x.reshape(len(x), 1, -1) - pts.reshape(1, 3, -1)) ** 2).sum(axis=2))
    np.testing.assert_array_equal(idx, brute.argmin(axis=0))


@pytest.mark.parametrize("pair", [(1, 3), (2, 0)])
def test_the_choice_from_distances_equals_the_pass_over_the_series(store, pair) -> None:
    """Representatives and the interpolation's closest series from the (N, K) squared distances to the
    centroids alone give the tiles that the pass over the series gives (and brute force), at the same distance."""
    x, labels, s = store
    cen = centroids_of(x, labels, 4)
    flat = x.reshape(len(x), -1).astype(np.float64)
    sq = ((flat[:, None] - cen.reshape(4, -1)[None].astype(np.float64)) ** 2).sum(axis=2).astype(np.float32)
    for a, b in zip(an.representatives_from_distances(labels, sq, 5), an.representatives(s, labels, cen, 5),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    weights = [0.0, 0.2, 0.5, 0.9, 1.0]
    idx, dist = an.closest_on_segment(sq, cen, pair[0], pair[1], weights)
    pts = an.interpolate(cen, pair[0], pair[1], weights)
    brute = np.sqrt(((flat[:, None] - pts.reshape(len(pts), -1)[None]) ** 2).sum(axis=2))
    np.testing.assert_array_equal(idx, brute.argmin(axis=0))
    np.testing.assert_allclose(dist, brute.min(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(idx, an.closest(s, pts)[0])


def test_a_wrong_interpolation_pair_is_refused_before_the_series_is_read() -> None:
    with pytest.raises(ValueError, match=r"interpolate must name two different clusters of 0..3, got \[1, 1\]"):
        an.interpolation_weights(4, [1, 1], [0.5])
    with pytest.raises(ValueError, match="got \\[0, 4\\]"):
        an.interpolation_weights(4, [0, 4], [0.5])
    assert an.interpolation_weights(4, [0, 3], [0.25, 0.5]) == [0.0, 0.25, 0.5, 1.0]


def test_series_pca_of_a_large_store_fits_on_a_sample(store, monkeypatch) -> None:
    """Beyond MEMORY_BYTES the components come from a sample, every tile projected block by block: the
    colours follow those of the exact PCA."""
    x, _, s = store
    exact = an.series_pca_rgb(x, seed=0)
    np.testing.assert_allclose(an.series_pca_rgb(s, seed=0), exact, atol=1e-5)  # small: read whole, as before
    monkeypatch.setattr(an, "MEMORY_BYTES", 200 * 12 * 4)  # a sample of 200 of the 750 series
    sampled = an.series_pca_rgb(s, seed=0)
    assert sampled.shape == (750, 3) and sampled.min() >= 0 and sampled.max() <= 1
    for c in range(3):
        assert abs(np.corrcoef(sampled[:, c], exact[:, c])[0, 1]) > 0.95, c
