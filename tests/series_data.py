"""Synthetic (N, T, D) series with known clusters, and partition matching, for clustering tests."""

from __future__ import annotations

import numpy as np


def blobs(sizes: list[int], spread: float, seed: int, t: int = 5, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, D) float32 series around len(sizes) random mean series, and the true labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 2, (len(sizes), t, d))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = means[truth] + spread * rng.normal(0, 1, (len(truth), t, d))
    perm = rng.permutation(len(truth))
    return x[perm].astype(np.float32), truth[perm]


def match(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """For each label of ``a``, the label of ``b`` its members carry (asserting the partitions are equal)."""
    mapping = np.full(k, -1)
    for label in range(k):
        values = np.unique(b[a == label])
        assert len(values) == 1
        mapping[label] = values[0]
    assert sorted(mapping) == list(range(k))
    return mapping


def centroids_of(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(K, ...) mean of the series of each label 0..k-1."""
    return np.stack([x[labels == c].mean(0) for c in range(k)])
