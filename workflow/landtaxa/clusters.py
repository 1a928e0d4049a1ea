"""Time-series K-means on the (N, T, D) series.

With the Euclidean metric, tslearn's ``TimeSeriesKMeans`` is K-means on the series
flattened to T*D vectors; landtaxa runs that directly in float32 (scikit-learn's Lloyd
iterations), which gives the same partition from the same initial centres without the
float64 copy. Clusters are renumbered by decreasing size, so label 0 is the largest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) int, 0..K-1 by decreasing cluster size
    centroids: np.ndarray  # (K, T, D) float32
    inertia: float
    n_iter: int


def kmeans_series(
    series: np.ndarray,
    k: int,
    seed: int,
    n_init: int = 5,
    max_iter: int = 300,
    tol: float = 0.0,
    init: np.ndarray | None = None,
) -> Clustering:
    """Cluster (N, T, D) series with Euclidean K-means (k-means++ seeding, ``n_init`` restarts)."""
    n, t, d = series.shape
    if k < 2:
        raise ValueError(f"n_clusters must be at least 2, got {k}")
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of valid tiles ({n})")
    flat = np.ascontiguousarray(series.reshape(n, t * d), dtype=np.float32)
    km = KMeans(
        n_clusters=k,
        init="k-means++" if init is None else np.asarray(init, np.float32).reshape(k, t * d),
        n_init=n_init if init is None else 1,
        max_iter=max_iter,
        tol=tol,
        algorithm="lloyd",
        random_state=seed,
    )
    labels = km.fit_predict(flat)
    centers = km.cluster_centers_.astype(np.float32)
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    remap = np.empty(k, np.int64)
    remap[order] = np.arange(k)
    return Clustering(
        labels=remap[labels],
        centroids=centers[order].reshape(k, t, d),
        inertia=float(km.inertia_),
        n_iter=int(km.n_iter_),
    )
