"""Tests of Euclidean time-series K-means (landtaxa.clusters) against tslearn."""

from __future__ import annotations

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


def test_overwrite_input_same_partition_and_default_keeps_input() -> None:
    """In-place K-means (the workflow's clusters step) gives the partition of the copying one,
    and the default leaves the caller's array bit-for-bit unchanged."""
    rng = np.random.default_rng(3)
    x = (rng.normal(0, 1, (4, 3, 5))[rng.integers(0, 4, 300)] + rng.normal(0, 0.3, (300, 3, 5))).astype(np.float32)
    before = x.copy()
    a = kmeans_series(x, 4, seed=0)
    np.testing.assert_array_equal(x, before)
    b = kmeans_series(x, 4, seed=0, overwrite_input=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x, before, rtol=1e-5, atol=1e-6)
