"""Tests of time-series clustering (landtaxa.clustering.clusters): exact K-means against tslearn, the other
methods (minibatch, dtw, softdtw), the registry of methods and the shared distance helper."""

from __future__ import annotations

import logging
import tracemalloc
import warnings

import numpy as np
import pytest
from series_data import blobs, match
from sklearn.metrics import adjusted_rand_score

from landtaxa.cli import main
from landtaxa.clustering.clusters import CHUNK, METHODS, Clustering, assign_chunked, cluster_series, sq_distance_blocks
from landtaxa.clustering.series import save_series
from landtaxa.inputs.grid import Grid
from landtaxa.params import ClusterParams, schema_property

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tslearn warns about optional h5py
    from tslearn.clustering import TimeSeriesKMeans
    from tslearn.metrics import dtw, soft_dtw

T, D = 5, 3


def kmeans_series(x: np.ndarray, k: int, init: np.ndarray | None = None, tol: float | None = None,
                  **settings) -> Clustering:
    """``cluster_series`` with the schema's defaults but for ``settings`` (seed, n_init, method...)."""
    return cluster_series(x, k, ClusterParams.from_json("{}", settings), init=init, tol=tol)


@pytest.mark.parametrize(("sizes", "spread", "seed"), [([120, 80, 60, 40], 1.2, 0), ([50, 50, 50], 2.0, 1)])
def test_same_as_tslearn(sizes: list[int], spread: float, seed: int) -> None:
    x, _ = blobs(sizes, spread, seed)
    k, n = len(sizes), len(x)
    rng = np.random.default_rng(seed + 10)
    init = x[rng.choice(n, k, replace=False)].copy()  # a plain random start: several iterations
    ours = kmeans_series(x, k, seed=0, init=init, max_iter=300)
    ref = TimeSeriesKMeans(
        n_clusters=k, metric="euclidean", init=init.astype(np.float64), n_init=1, max_iter=300,
        random_state=0,
    ).fit(x.astype(np.float64))
    assert ours.n_iter > 1 and ref.n_iter_ > 1  # a real run, not a one-step fixed point
    assert adjusted_rand_score(ref.labels_, ours.labels) == 1.0
    mapping = match(ours.labels, ref.labels_, k)
    assert ours.centroids.shape == (k, T, D) and ours.centroids.dtype == np.float32
    np.testing.assert_allclose(ours.centroids, ref.cluster_centers_[mapping], atol=1e-4)
    # tslearn reports the mean squared distance; landtaxa the K-means sum
    sse = float(((x.astype(np.float64) - ref.cluster_centers_[ref.labels_]) ** 2).sum())
    assert ours.inertia == pytest.approx(ref.inertia_ * n, rel=1e-5)
    assert ours.inertia == pytest.approx(sse, rel=1e-5)


def test_labels_by_decreasing_size_and_consistent_centroids() -> None:
    x, truth = blobs([15, 70, 40, 100], 0.3, 2)
    res = kmeans_series(x, 4, seed=3)
    sizes = np.bincount(res.labels, minlength=4)
    assert sizes.tolist() == [100, 70, 40, 15]
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert res.labels.min() == 0 and res.labels.max() == 3
    for label in range(4):
        np.testing.assert_allclose(res.centroids[label], x[res.labels == label].mean(axis=0), atol=1e-4)
    sse = sum(((x[res.labels == j] - res.centroids[j]) ** 2).sum() for j in range(4))
    assert res.inertia == pytest.approx(float(sse), rel=1e-4)


def test_relabelling_with_given_init_keeps_pairs() -> None:
    """The renumbering moves centroids with their labels even when init order is by increasing size."""
    x, _ = blobs([10, 30, 60], 0.2, 4)
    res0 = kmeans_series(x, 3, seed=0)
    init = res0.centroids[::-1].copy()  # smallest cluster first
    res = kmeans_series(x, 3, seed=0, init=init)
    np.testing.assert_array_equal(res.labels, res0.labels)
    np.testing.assert_allclose(res.centroids, res0.centroids, atol=1e-5)
    assert np.bincount(res.labels).tolist() == [60, 30, 10]


def test_invalid_k() -> None:
    x, _ = blobs([5, 5], 0.5, 5)
    with pytest.raises(ValueError, match="at least 2, got 1"):
        kmeans_series(x, 1, seed=0)
    with pytest.raises(ValueError, match="at least 2, got 0"):
        kmeans_series(x, 0, seed=0)
    with pytest.raises(ValueError, match=r"n_clusters=11 is larger than the number of valid tiles \(10\)"):
        kmeans_series(x, 11, seed=0)
    res = kmeans_series(x, 10, seed=0)  # K == N is allowed: every series its own cluster
    assert sorted(res.labels.tolist()) == list(range(10))
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


def test_same_seed_same_result() -> None:
    x, _ = blobs([40, 40, 40, 40, 40], 2.5, 6)  # overlapping: the result depends on the seeding
    a = kmeans_series(x, 5, seed=7, n_init=2)
    b = kmeans_series(x, 5, seed=7, n_init=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    # a restart can only help: more restarts never give a worse objective with the same seed stream
    best = kmeans_series(x, 5, seed=7, n_init=10)
    assert best.inertia <= a.inertia * (1 + 1e-6)


def test_accepts_float64_input() -> None:
    x, truth = blobs([30, 20], 0.2, 8)
    res = kmeans_series(x.astype(np.float64), 2, seed=0)
    assert res.centroids.dtype == np.float32
    assert adjusted_rand_score(truth, res.labels) == 1.0


def _traced_peak(call):
    """``call()``'s result and the peak of the Python-allocated memory (numpy's included) while it ran."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_kmeans_makes_no_copy_and_leaves_the_input_unchanged() -> None:
    """Lloyd iterations stream over the caller's float32 array: the peak extra memory is a small
    fraction of the series (scikit-learn's KMeans and tslearn copy it, tslearn in float64)."""
    x, truth = blobs([20_000, 20_000, 20_000], 0.5, 5, t=8, d=16)  # 60,000 x 128 float32: 30.7 MB
    before = x.copy()
    kmeans_series(x[:3000], 3, seed=0, n_init=1)  # warm-up imports
    res, peak = _traced_peak(lambda: kmeans_series(x, 3, seed=0, n_init=1))
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert peak < 0.25 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB series"
    np.testing.assert_array_equal(x, before)


def test_empty_cluster_is_refilled() -> None:
    """A start with a centre far from every series leaves it empty: it is moved, K clusters remain."""
    x, truth = blobs([50, 50, 50], 0.2, 9)
    init = np.stack([x[0], x[60], np.full_like(x[0], 1e3)])  # the third centre attracts nothing
    res = kmeans_series(x, 3, seed=0, init=init)
    assert sorted(np.bincount(res.labels, minlength=3).tolist()) == [50, 50, 50]
    assert adjusted_rand_score(truth, res.labels) == 1.0


def test_tol_stops_earlier_than_strict_convergence() -> None:
    x, _ = blobs([40, 40, 40, 40, 40], 2.5, 6)
    rng = np.random.default_rng(1)
    init = x[rng.choice(len(x), 5, replace=False)].copy()
    strict = kmeans_series(x, 5, seed=0, init=init, tol=0.0)
    loose = kmeans_series(x, 5, seed=0, init=init, tol=10.0)
    assert strict.n_iter > 3 and loose.n_iter < strict.n_iter
    assert strict.inertia <= loose.inertia


def _sse(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> float:
    return float(((x.astype(np.float64) - centroids.astype(np.float64)[labels]) ** 2).sum())


def test_minibatch_recovers_clusters_with_exact_inertia() -> None:
    sizes = [4001, 3000, 1500, 506]  # N = 9007: two full chunks of CHUNK rows and a partial one
    x, truth = blobs(sizes, 0.3, 0)
    assert len(x) % CHUNK != 0 and len(x) > 2 * CHUNK
    res = kmeans_series(x, 4, seed=1, n_init=3, method="minibatch", batch_size=512)
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert np.bincount(res.labels).tolist() == sizes  # renumbered by decreasing size
    assert res.centroids.shape == (4, 5, 3) and res.centroids.dtype == np.float32
    assert res.inertia == pytest.approx(_sse(x, res.labels, res.centroids), rel=1e-5)
    # each series carries the label of its nearest centroid
    dist = ((x.reshape(len(x), 1, -1) - res.centroids.reshape(1, 4, -1)) ** 2).sum(axis=2)
    np.testing.assert_array_equal(res.labels, dist.argmin(axis=1))
    # the centres are close to the cluster means (MiniBatchKMeans is approximate, not exact)
    for label in range(4):
        np.testing.assert_allclose(res.centroids[label], x[res.labels == label].mean(axis=0), atol=0.1)


def test_minibatch_same_seed_same_result_and_given_init() -> None:
    x, truth = blobs([300, 200, 100], 0.5, 2)
    a = kmeans_series(x, 3, seed=4, method="minibatch", batch_size=64)
    b = kmeans_series(x, 3, seed=4, method="minibatch", batch_size=64)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    c = kmeans_series(x, 3, seed=0, method="minibatch", batch_size=64, init=a.centroids[::-1].copy())
    np.testing.assert_array_equal(c.labels, a.labels)
    assert adjusted_rand_score(truth, c.labels) == 1.0


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 1003, 5000])
def test_assign_chunked_any_chunk_size(chunk: int) -> None:
    rng = np.random.default_rng(3)
    flat = rng.normal(0, 1, (1003, 12)).astype(np.float32)
    centers = rng.normal(0, 1, (6, 12)).astype(np.float32)
    labels, inertia = assign_chunked(flat, centers, chunk=chunk)
    dist = ((flat.astype(np.float64)[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, dist.argmin(axis=1))
    assert inertia == pytest.approx(float(dist.min(axis=1).sum()), rel=1e-6)


def test_inertia_exact_far_from_the_origin() -> None:
    """Embeddings need not be centred: a large common offset must not spoil the inertia (no norm cancellation)."""
    rng = np.random.default_rng(4)
    flat = (1000.0 + rng.normal(0, 0.01, (500, 64))).astype(np.float32)
    centers = np.stack([flat[:250].mean(axis=0), flat[250:].mean(axis=0)])
    labels, inertia = assign_chunked(flat, centers)
    exact = ((flat.astype(np.float64) - centers.astype(np.float64)[labels]) ** 2).sum()
    assert inertia == pytest.approx(float(exact), rel=1e-5)


def test_minibatch_makes_no_copy_of_the_series() -> None:
    """Peak extra memory stays far below a float64 copy (2 x nbytes), even below a float32 one."""
    x, _ = blobs([20_000, 20_000, 20_000], 0.5, 5, t=8, d=16)  # 60,000 x 128 float32: 30.7 MB
    kmeans_series(x[:3000], 3, seed=0, n_init=1, method="minibatch", batch_size=1024)  # warm-up imports
    res, peak = _traced_peak(lambda: kmeans_series(x, 3, seed=0, n_init=1, method="minibatch", batch_size=1024))
    assert np.bincount(res.labels).tolist() == [20_000] * 3
    assert peak < 0.4 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB series"


@pytest.mark.parametrize("method", ["dtw", "softdtw"])
def test_dtw_methods_agree_with_tslearn(method: str) -> None:
    x, truth = blobs([18, 14, 10], 0.3, 6, t=6, d=2)
    k, n = 3, len(x)
    gamma = 0.5
    ours = kmeans_series(x, k, seed=2, n_init=2, max_iter=10, method=method, gamma=gamma)
    ref = TimeSeriesKMeans(
        n_clusters=k, metric=method, metric_params={"gamma": gamma} if method == "softdtw" else None,
        n_init=2, max_iter=10, random_state=2,
    ).fit(x)
    mapping = match(ours.labels, ref.labels_, k)
    assert adjusted_rand_score(truth, ours.labels) == 1.0
    assert np.bincount(ours.labels).tolist() == [18, 14, 10]
    assert ours.centroids.shape == (k, 6, 2) and ours.centroids.dtype == np.float32
    np.testing.assert_allclose(ours.centroids, ref.cluster_centers_[mapping], atol=1e-5)
    centres = ref.cluster_centers_
    if method == "dtw":  # the sum of squared DTW distances to the own centroid
        expected = sum(dtw(x[i], centres[ref.labels_[i]]) ** 2 for i in range(n))
    else:  # the sum of soft-DTW values to the own centroid
        expected = sum(soft_dtw(x[i], centres[ref.labels_[i]], gamma=gamma) for i in range(n))
    assert ours.inertia == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["dtw", "softdtw"])
def test_dtw_methods_refuse_large_n(method: str) -> None:
    x, _ = blobs([16, 15], 0.3, 7)
    with pytest.raises(ValueError, match=rf"'{method}'.*limited to 30 tiles.*N=31"):
        kmeans_series(x, 2, seed=0, method=method, max_dtw_tiles=30)


def test_unknown_method_lists_the_valid_ones() -> None:
    x, _ = blobs([5, 5], 0.3, 8)
    with pytest.raises(ValueError, match="unknown clustering method 'hdbscan'; valid methods: kmeans, minibatch, "
                                         "dtw, softdtw"):
        kmeans_series(x, 2, seed=0, method="hdbscan")


def test_kmeans_method_is_the_default() -> None:
    x, _ = blobs([40, 30, 20], 1.5, 9)
    assert schema_property("cluster.method")["default"] == "kmeans"
    a = kmeans_series(x, 3, seed=5, n_init=2)
    b = kmeans_series(x, 3, seed=5, n_init=2, method="kmeans", batch_size=7, gamma=3.0, max_dtw_tiles=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia


def test_schema_enum_is_the_registry() -> None:
    """Adding a method is one registry entry and its name in the schema's enum."""
    assert schema_property("cluster.method")["enum"] == list(METHODS)


def _halves(series, k, params, init, tol) -> Clustering:
    """A clustering method (as a plugin registers one): the first and the second half of the series."""
    labels = (np.arange(len(series)) >= len(series) // 2).astype(np.int64)
    cen = np.stack([series[labels == c].mean(0) for c in range(k)])
    return Clustering(labels, cen.astype(np.float32), 0.0, 1)


def test_a_registered_method_is_used(monkeypatch) -> None:
    x, truth = blobs([30, 20], 0.2, 8)
    monkeypatch.setitem(METHODS, "halves", _halves)
    res = kmeans_series(x, 2, method="halves")
    assert res.labels.tolist() == [0] * 25 + [1] * 25


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_sq_distance_blocks(chunk: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3, 1, (17, 6)).astype(np.float32)
    c = rng.normal(3, 1, (4, 6)).astype(np.float32)
    got = np.concatenate([d for _, d in sq_distance_blocks(x, c, chunk)])
    starts = [s for s, _ in sq_distance_blocks(x, c, chunk)]
    assert starts == list(range(0, 17, chunk))
    np.testing.assert_allclose(got, ((x[:, None] - c[None]) ** 2).sum(-1), rtol=1e-4, atol=1e-4)
    assert (got >= 0).all()


def test_more_clusters_than_valid_tiles_stops_before_fitting(tmp_path, caplog) -> None:
    """Valid tiles are known only once the series exists: the clusters step refuses K before fitting."""
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=40, tile_size=8,
                bands=[1], dtype="uint16", scale_min=[0], scale_max=[1])
    grid.save(tmp_path / "grid.json")
    series = tmp_path / "series" / "geo.npz"
    save_series(series, np.zeros((3, 2, 4), np.float32), np.arange(3), ["2020-01-01", "2020-02-01"], grid)
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    try:
        rc = main(["clusters", "--grid", str(tmp_path / "grid.json"), "--series", str(series), "--k", "5",
                   "--model", "geo", "--out", str(tmp_path / "k5.npz"), "--metrics", str(tmp_path / "k5.json")])
    finally:
        logger.removeHandler(caplog.handler)
    assert rc == 1
    assert f"{series}: n_clusters asks for K=5 clusters but the series holds only 3 valid tiles" in caplog.text
    assert not (tmp_path / "k5.npz").exists() and not (tmp_path / "k5.json").exists()


# --------------------------------------------------------------------------- a series on disk, read in blocks


def _store(tmp_path, x: np.ndarray, block_bytes: int = 20_000):
    """``x`` written as a series (one grid row per 100 tiles) and opened with small blocks."""
    from landtaxa.clustering.series import Series

    n = len(x)
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=100, height=-(-n // 100),
                tile_size=1, bands=[1], dtype="uint16")
    dates = [f"2020-01-{d + 1:02d}" for d in range(x.shape[1])]
    save_series(tmp_path / "s.npz", x, np.arange(n), dates, grid)
    return Series(tmp_path / "s.npz", block_bytes=block_bytes)


def test_kmeans_on_a_store_equals_kmeans_in_memory(tmp_path) -> None:
    x, truth = blobs([700, 500, 300, 150], 1.5, 11)
    store = _store(tmp_path, x)
    assert store.n_blocks() >= 5
    a = kmeans_series(x, 4, seed=3, n_init=2)
    b = kmeans_series(store, 4, seed=3, n_init=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-5, atol=1e-5)
    assert b.inertia == pytest.approx(a.inertia, rel=1e-6)
    assert b.inertia == pytest.approx(_sse(x, b.labels, b.centroids), rel=1e-5)


def test_kmeans_reads_a_store_without_holding_it(tmp_path) -> None:
    x, truth = blobs([20_000, 20_000, 20_000], 0.5, 5, t=8, d=16)  # 60,000 x 128 float32: 30.7 MB
    store = _store(tmp_path, x, block_bytes=500_000)
    kmeans_series(store, 3, seed=0, n_init=1)  # warm-up imports
    res, peak = _traced_peak(lambda: kmeans_series(store, 3, seed=0, n_init=1))
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert peak < 0.25 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB series"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeding_on_a_sample_gives_the_same_inertia_within_1_percent(monkeypatch, seed: int) -> None:
    """Beyond SEED_ROWS series, k-means++ seeds from a sample of that many and the restarts run there; after
    Lloyd's iterations on every series the inertia is at most 1% above that of restarts on all of them
    (here: 8,000 overlapping series, a sample of 400)."""
    import landtaxa.clustering.clusters as cl

    x, _ = blobs([2500, 2000, 1500, 1000, 600, 400], 2.0, 20 + seed, t=4, d=3)
    monkeypatch.setattr(cl, "SEED_ROWS", 10_000)  # up to SEED_ROWS series: seeded from all of them, as before
    rng = np.random.RandomState(seed)
    every = cl.seeding_sample(cl.as_series(x), 6, rng)
    assert np.shares_memory(every, x) and rng.randint(1 << 30) == np.random.RandomState(seed).randint(1 << 30)
    full = kmeans_series(x, 6, seed=seed, n_init=3)
    monkeypatch.setattr(cl, "SEED_ROWS", 400)
    assert cl.seeding_sample(cl.as_series(x), 6, np.random.RandomState(seed)).shape == (400, 12)
    sampled = kmeans_series(x, 6, seed=seed, n_init=3)
    assert sampled.inertia <= 1.01 * full.inertia  # (with seed 2 it finds a better optimum: 1.4% lower)


def test_the_run_on_every_series_stops_when_few_move(monkeypatch) -> None:
    """Beyond SEED_ROWS, the best restart's run on all series stops once a pass moves at most ``stop_moved`` of
    them: fewer passes, the same inertia within 0.01%; up to SEED_ROWS the setting changes nothing."""
    import landtaxa.clustering.clusters as cl

    x, _ = blobs([3000, 2500, 2000, 1500], 3.0, 7, t=4, d=3)  # strongly overlapping: a long tail of passes
    monkeypatch.setattr(cl, "SEED_ROWS", 10_000)
    same = [kmeans_series(x, 4, seed=1, n_init=2, stop_moved=v) for v in (0.0, 0.01)]
    np.testing.assert_array_equal(same[0].labels, same[1].labels)
    monkeypatch.setattr(cl, "SEED_ROWS", 500)
    exact = kmeans_series(x, 4, seed=1, n_init=2, stop_moved=0.0)
    early = kmeans_series(x, 4, seed=1, n_init=2, stop_moved=0.001)
    assert exact.n_iter > early.n_iter + 3, (exact.n_iter, early.n_iter)
    assert early.inertia == pytest.approx(exact.inertia, rel=1e-4)
    assert adjusted_rand_score(exact.labels, early.labels) > 0.95


def test_minibatch_streams_a_store_larger_than_memory_bytes(tmp_path, monkeypatch) -> None:
    import landtaxa.clustering.clusters as cl

    sizes = [3000, 2000, 1000, 500]
    x, truth = blobs(sizes, 0.3, 0)
    store = _store(tmp_path, x)
    monkeypatch.setattr(cl, "MEMORY_BYTES", 1000)  # the store is "too large": streamed passes
    res = kmeans_series(store, 4, seed=1, n_init=2, method="minibatch", batch_size=256)
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert np.bincount(res.labels).tolist() == sizes
    assert res.inertia == pytest.approx(_sse(x, res.labels, res.centroids), rel=1e-5)
    dist = ((x.reshape(len(x), 1, -1) - res.centroids.reshape(1, 4, -1)) ** 2).sum(axis=2)
    np.testing.assert_array_equal(res.labels, dist.argmin(axis=1))
    for label in range(4):
        np.testing.assert_allclose(res.centroids[label], x[res.labels == label].mean(axis=0), atol=0.1)
    again = kmeans_series(store, 4, seed=1, n_init=2, method="minibatch", batch_size=256)
    np.testing.assert_array_equal(again.labels, res.labels)


def test_polish_samples_are_nested_runs_of_neighbours() -> None:
    from landtaxa.clustering.clusters import POLISH_GROUP, SEED_ROWS, polish_samples

    assert polish_samples(4 * SEED_ROWS, 1 << 20, np.random.RandomState(0)) == []  # none up to 16,384 series
    samples = polish_samples(300_001, 65_536, np.random.RandomState(0))
    assert [len(s) for s in samples] == [4 * SEED_ROWS, 16 * SEED_ROWS]  # at most ``largest``, smallest first
    assert len(polish_samples(300_001, 16_384, np.random.RandomState(0))) == 1
    for rows in samples:
        assert np.all(np.diff(rows) > 0) and rows[-1] < 300_001
        starts = rows[::POLISH_GROUP]
        assert np.all(starts % POLISH_GROUP == 0)  # whole runs of neighbouring series
        np.testing.assert_array_equal(rows[:POLISH_GROUP], starts[0] + np.arange(POLISH_GROUP))
    assert np.isin(samples[0], samples[1]).all()  # nested: the larger one holds the smaller
    again = polish_samples(300_001, 65_536, np.random.RandomState(0))
    assert all(np.array_equal(a, b) for a, b in zip(samples, again, strict=True))


def test_beyond_sample_rows_every_series_is_passed_over_at_most_full_passes_times(monkeypatch) -> None:
    """Beyond ``sample_rows`` series, the best restart converges on the samples and then passes over every series
    at most ``full_passes`` times, keeping the last pass's assignment (labels nearest to the returned centres):
    here the inertia is within 0.1% of the run to convergence (0.0044% for 250,000 series after a sample of
    16,384: README). Up to ``sample_rows`` series the setting changes nothing."""
    import landtaxa.clustering.clusters as cl

    x, truth = blobs([3000, 2500, 2000, 1500], 3.0, 7, t=4, d=3)  # strongly overlapping: a long tail of passes
    monkeypatch.setattr(cl, "SEED_ROWS", 500)  # samples of 2,000 and 8,000 series below the 9,000
    calls = []
    lloyd = cl.lloyd
    monkeypatch.setattr(cl, "lloyd", lambda flat, *a, **kw: calls.append(cl.as_series(flat).n) or lloyd(flat, *a, **kw))
    converged = kmeans_series(x, 4, seed=1, n_init=2, sample_rows=4096, full_passes=0)
    assert converged.n_iter > 4
    calls.clear()
    capped = kmeans_series(x, 4, seed=1, n_init=2, sample_rows=4096, full_passes=2)
    assert calls == [500, 500, 2048, 9000]  # restarts on the seeding sample, 2,000 (in runs of 64), every series
    assert capped.n_iter == 2
    assert capped.inertia == pytest.approx(converged.inertia, rel=1e-3)
    assert adjusted_rand_score(converged.labels, capped.labels) > 0.9  # border series of overlapping clusters
    flat = x.reshape(len(x), -1)
    cen = capped.centroids.reshape(4, -1)
    dist = ((flat[:, None, :] - cen[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(capped.labels, dist.argmin(axis=1))
    assert capped.inertia == pytest.approx(float(dist.min(axis=1).sum()), rel=1e-5)
    within = [kmeans_series(x, 4, seed=1, n_init=2, sample_rows=16_384, full_passes=v) for v in (0, 1)]
    np.testing.assert_array_equal(within[0].labels, within[1].labels)


def test_the_cap_on_passes_holds_when_a_cluster_empties() -> None:
    """A pass that leaves a cluster empty moves a row into it and goes on; the cap still ends the run there."""
    from landtaxa.clustering.clusters import lloyd

    x, _ = blobs([400, 300, 200], 0.5, 3, t=2, d=2)
    flat = x.reshape(len(x), -1)
    init = np.concatenate([flat[[0, 450, 800]], np.full((1, flat.shape[1]), 1e3, np.float32)])  # one centre far away
    for passes in (1, 2):
        labels, centers, inertia, n_iter = lloyd(flat, init, passes=passes)
        assert n_iter == 2  # the first pass left the far cluster empty: one more pass, then the cap
        assert np.bincount(labels, minlength=4).min() > 0
        dist = ((flat[:, None] - centers[None]) ** 2).sum(axis=2)
        np.testing.assert_array_equal(labels, dist.argmin(axis=1))


def _brute_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return ((flat[:, None, :] - centroids.reshape(len(centroids), -1)[None].astype(np.float64)) ** 2).sum(axis=2)


@pytest.mark.parametrize("settings", [
    {"n_init": 3},  # restarts on every series: the best run's distances
    {"n_init": 1, "max_iter": 2},  # stopped by max_iter: the final assignment pass
    {"n_init": 1, "stop_moved": 0.05},  # stopped when few moved: the kept pass
    {"method": "minibatch", "n_init": 2, "batch_size": 64},
    {"method": "dtw", "n_init": 1, "max_iter": 3},  # a method that keeps none: one more pass (Euclidean)
])
def test_the_distances_are_every_series_to_every_returned_centroid(settings: dict) -> None:
    """The clustering hands over every series' squared distance to every centroid (in the final label order),
    from the pass that made the labels: the representatives step chooses its tiles from them."""
    x, _ = blobs([150, 100, 80, 60], 1.5, 12, t=3, d=4)
    res = kmeans_series(x, 4, seed=2, **settings)
    assert res.distances.shape == (len(x), 4) and res.distances.dtype == np.float32
    brute = _brute_distances(x, res.centroids)
    np.testing.assert_allclose(res.distances, brute, rtol=1e-4, atol=1e-3)
    if settings.get("method") != "dtw":
        np.testing.assert_array_equal(res.labels, res.distances.argmin(axis=1))


def test_the_distances_beyond_sample_rows_and_from_a_store(tmp_path, monkeypatch) -> None:
    """Beyond ``sample_rows`` the last of the capped passes over every series (read from disk, cached blocks
    first) writes the distances to the centres it assigned to."""
    import landtaxa.clustering.clusters as cl

    x, _ = blobs([1500, 1200, 900, 600], 2.5, 7, t=4, d=3)
    monkeypatch.setattr(cl, "SEED_ROWS", 300)
    store = _store(tmp_path, x, block_bytes=30_000)
    assert store.n_blocks() > 5
    res = kmeans_series(store, 4, seed=1, n_init=2, sample_rows=1200, full_passes=2)
    assert res.n_iter == 2
    np.testing.assert_allclose(res.distances, _brute_distances(x, res.centroids), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(res.labels, res.distances.argmin(axis=1))


def test_a_method_without_distances_gets_them_from_one_more_pass(monkeypatch) -> None:
    x, _ = blobs([30, 20], 0.2, 8)
    monkeypatch.setitem(METHODS, "halves", _halves)
    res = kmeans_series(x, 2, method="halves")
    np.testing.assert_allclose(res.distances, _brute_distances(x, res.centroids), rtol=1e-4, atol=1e-4)


def test_a_kmeans_clustering_job_never_loads_scikit_learn(tmp_path) -> None:
    """A clustering job (K-means, its seeding and every metric, truth included) runs without scikit-learn or scipy:
    their import (scipy.stats, pandas) took about 2 s of each of the demo's 19 clustering jobs."""
    import json
    import subprocess
    import sys

    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=80, height=80, tile_size=8,
                bands=[1], dtype="uint16", scale_min=[0], scale_max=[1])
    grid.save(tmp_path / "grid.json")
    x, truth = blobs([40, 30, 30], 0.5, 4)
    save_series(tmp_path / "geo.npz", x, np.arange(100), [f"2020-01-{d + 1:02d}" for d in range(T)], grid)
    np.savez(tmp_path / "truth.npz", classes=truth)
    args = ["clusters", "--grid", tmp_path / "grid.json", "--series", tmp_path / "geo.npz", "--k", "3", "--model",
            "geo", "--truth", tmp_path / "truth.npz", "--out", tmp_path / "k3.npz", "--metrics", tmp_path / "k3.json"]
    code = ("import sys; from landtaxa.cli import main\n"
            f"rc = main({[str(a) for a in args]!r})\n"
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0 []"
    metrics = json.loads((tmp_path / "k3.json").read_text())
    assert metrics["ari"] == 1.0 and metrics["silhouette"] > 0.5


@pytest.mark.parametrize("settings", [{}, {"stop_moved": 0.05}])
def test_the_inertia_summed_once_equals_the_inertia_summed_at_every_pass(monkeypatch, settings: dict) -> None:
    """Lloyd sums the inertia over the returned pass only when the series fits in memory, during every pass
    otherwise (one read each): the same additions in the same order, so the same float."""
    import landtaxa.clustering.clusters as clusters

    x, _ = blobs([300, 200, 250, 150], 1.5, 6)
    once = kmeans_series(x, 4, seed=2, n_init=3, **settings)
    monkeypatch.setattr(clusters, "MEMORY_BYTES", 0)  # every series "larger than memory"
    every = kmeans_series(x, 4, seed=2, n_init=3, **settings)
    assert once.n_iter > 2 and once.inertia == every.inertia
    np.testing.assert_array_equal(once.labels, every.labels)
