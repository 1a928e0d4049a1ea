"""Tests of Euclidean time-series K-means (landtaxa.clusters) against tslearn."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from series_data import blobs, match
from sklearn.metrics import adjusted_rand_score

from landtaxa.clusters import kmeans_series

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tslearn warns about optional h5py
    from tslearn.clustering import TimeSeriesKMeans

T, D = 5, 3




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


def test_kmeans_makes_no_copy_and_leaves_the_input_unchanged() -> None:
    """Lloyd iterations stream over the caller's float32 array: the peak extra memory is a small
    fraction of the series (scikit-learn's KMeans and tslearn copy it, tslearn in float64)."""
    x, truth = blobs([20_000, 20_000, 20_000], 0.5, 5, t=8, d=16)  # 60,000 x 128 float32: 30.7 MB
    before = x.copy()
    kmeans_series(x[:3000], 3, seed=0, n_init=1)  # warm-up imports
    tracemalloc.start()
    try:
        res = kmeans_series(x, 3, seed=0, n_init=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
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
