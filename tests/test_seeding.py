"""Tests of k-means++ seeding (landtaxa.clustering.seeding): the distances it works out once per sample, the
draws of scikit-learn's seeding, and what k-means++ promises on separated groups."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from series_data import blobs
from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus

from landtaxa.clustering.seeding import SampleDistances, kmeans_plusplus


def flat(n: int, f: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32) * 3 + 10


@pytest.mark.parametrize(("n", "f"), [(60, 200), (300, 12)])  # fewer series than features: the Gram matrix
def test_distances_are_the_float64_distances_rounded_to_float32(n: int, f: int) -> None:
    x = flat(n, f, 0)
    dist = SampleDistances(x)
    assert (dist.gram is not None) == (n <= f)
    rows = np.array([3, 0, n - 1, 3])
    x64 = x.astype(np.float64)
    exact = ((x64[rows, None, :] - x64[None, :, :]) ** 2).sum(-1)
    got = dist(rows)
    assert got.dtype == np.float32 and got.shape == (4, n)
    # |a|^2 + |b|^2 - 2ab in float64 loses a few digits to cancellation next to the direct sum, no more
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-6 * exact.max())
    assert (got >= 0).all() and np.array_equal(got[0], got[3])


def test_both_ways_of_working_out_the_distances_give_the_same_centres() -> None:
    x = flat(80, 80, 1)  # n == F: the Gram matrix; the copy of the sample forced below
    gram = SampleDistances(x)
    copy = SampleDistances(np.ascontiguousarray(x))
    copy.gram, copy.x64 = None, x.astype(np.float64)
    a = [kmeans_plusplus(x, 6, rng, gram) for rng in [np.random.RandomState(4)] for _ in range(5)]
    b = [kmeans_plusplus(x, 6, rng, copy) for rng in [np.random.RandomState(4)] for _ in range(5)]
    for ca, cb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.skipif(tuple(int(v) for v in sklearn.__version__.split(".")[:2]) < (1, 9),
                    reason="the draws are those of scikit-learn 1.9's kmeans_plusplus (float32 running sum)")
@pytest.mark.parametrize(("n", "f", "k"), [(150, 400, 7), (400, 24, 9), (50, 8, 2)])
def test_same_centres_as_scikit_learns_seeding(n: int, f: int, k: int) -> None:
    x = flat(n, f, k)
    ours, theirs = np.random.RandomState(k), np.random.RandomState(k)
    dist = SampleDistances(x)
    for _ in range(10):  # restarts sharing the generator, as cluster_series draws them
        np.testing.assert_array_equal(kmeans_plusplus(x, k, ours, dist),
                                      sklearn_kmeans_plusplus(x, k, random_state=theirs)[0])


def test_one_centre_per_separated_group() -> None:
    x, truth = blobs([40, 25, 60, 10, 30], 0.05, 3)
    x = x.reshape(len(x), -1)
    rng = np.random.RandomState(0)
    for _ in range(10):
        centres = kmeans_plusplus(x, 5, rng)
        assert centres.dtype == np.float32 and centres.shape == (5, x.shape[1])
        rows = [int(np.flatnonzero((x == c).all(axis=1))[0]) for c in centres]  # every centre is a series
        assert sorted(truth[rows]) == [0, 1, 2, 3, 4]


def test_k_beyond_the_series_is_refused() -> None:
    with pytest.raises(ValueError, match="k=6"):
        kmeans_plusplus(flat(5, 3, 0), 6, np.random.RandomState(0))
