"""Time-series K-means on the (N, T, D) series, with four methods (``cluster.method``).

``kmeans`` (default)
    Exact Lloyd K-means in float32. With the Euclidean metric, tslearn's ``TimeSeriesKMeans``
    is K-means on the series flattened to T*D vectors; landtaxa runs that directly in float32
    (scikit-learn's Lloyd iterations), which gives the same partition from the same initial
    centres without the float64 copy. Every iteration passes over all N series: the choice
    up to a few hundred thousand tiles.
``minibatch``
    scikit-learn's ``MiniBatchKMeans`` on the same float32 flattened series (no float64 copy),
    updating the centres from random batches of ``batch_size`` series: for N beyond what full
    Lloyd iterations handle in time. The final labels come from one chunked nearest-centroid
    pass (``CHUNK`` rows at a time), so the extra memory stays bounded whatever N.
``dtw`` / ``softdtw``
    tslearn's ``TimeSeriesKMeans`` with the DTW metric (DBA barycentres) or soft-DTW (smoothing
    ``gamma``), which match series shifted or stretched in time. Each iteration aligns every
    series with every centre at O(T^2) per pair, in float64, with a large constant: for small N
    only, and refused above ``max_dtw_tiles`` series.

``inertia`` is the sum over series of the squared distance to its own centroid in the method's
metric: squared Euclidean for ``kmeans`` and ``minibatch`` (for ``minibatch`` computed exactly
on the final assignment, not the running estimate), squared DTW for ``dtw``, and the soft-DTW
value itself for ``softdtw`` (it already sums squared differences along the soft alignment, so
it plays the part of the squared distance; it can be negative). tslearn's own ``inertia_`` is a
mean, not a sum. Clusters are renumbered by decreasing size, so label 0 is the largest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

METHODS = ("kmeans", "minibatch", "dtw", "softdtw")
CHUNK = 4096  # rows per block in the chunked nearest-centroid pass


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) int, 0..K-1 by decreasing cluster size
    centroids: np.ndarray  # (K, T, D) float32
    inertia: float  # sum over series of the squared distance to the own centroid, in the method's metric
    n_iter: int  # iterations of the kept run (epochs for minibatch)


def kmeans_series(
    series: np.ndarray,
    k: int,
    seed: int,
    n_init: int = 5,
    max_iter: int = 300,
    tol: float | None = None,
    init: np.ndarray | None = None,
    *,
    method: str = "kmeans",
    batch_size: int = 4096,
    gamma: float = 1.0,
    max_dtw_tiles: int = 5000,
    overwrite_input: bool = False,
) -> Clustering:
    """Cluster (N, T, D) series into ``k`` clusters with ``method`` (see the module docstring).

    ``n_init`` restarts from k-means++ seeding (one run from ``init``, (K, T, D), when given);
    ``max_iter`` is the iteration limit (epochs over the data for ``minibatch``); ``tol`` the
    convergence threshold of the underlying estimator (None: 0.0 for kmeans and minibatch,
    tslearn's 1e-6 on the mean inertia for dtw and softdtw; for minibatch, tol > 0 costs
    scikit-learn one float32 temporary of the series). ``batch_size`` only matters for
    minibatch, ``gamma`` for softdtw and ``max_dtw_tiles`` for dtw and softdtw.
    ``overwrite_input`` lets kmeans work on a float32 ``series`` in place instead of on a copy
    (half the memory; the array is restored up to float rounding): for callers that own it.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; valid methods: {', '.join(METHODS)}")
    n, t, d = series.shape
    if k < 2:
        raise ValueError(f"n_clusters must be at least 2, got {k}")
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of valid tiles ({n})")
    if method in ("dtw", "softdtw"):
        if n > max_dtw_tiles:
            raise ValueError(
                f"method {method!r} is limited to {max_dtw_tiles} tiles (cluster.max_dtw_tiles) and this run "
                f"has N={n}: each iteration aligns every series with every centre at O(T^2) per pair; "
                "use 'kmeans' or 'minibatch', or raise max_dtw_tiles"
            )
        return _tslearn(series, k, seed, n_init, max_iter, 1e-6 if tol is None else tol, init, method, gamma)
    flat = np.ascontiguousarray(series.reshape(n, t * d), dtype=np.float32)
    init_flat = None if init is None else np.asarray(init, np.float32).reshape(k, t * d)
    if method == "minibatch":
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        mbk = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++" if init_flat is None else init_flat,
            n_init=n_init if init_flat is None else 1,
            max_iter=max_iter,
            batch_size=batch_size,
            tol=tol or 0.0,
            compute_labels=False,  # labelled below, with the exact inertia
            random_state=seed,
        ).fit(flat)
        centers = mbk.cluster_centers_.astype(np.float32)
        labels, inertia = assign_chunked(flat, centers)
        return _renumbered(labels, centers, inertia, int(mbk.n_iter_), (t, d))
    km = KMeans(
        n_clusters=k,
        init="k-means++" if init_flat is None else init_flat,
        n_init=n_init if init_flat is None else 1,
        max_iter=max_iter,
        tol=tol or 0.0,
        algorithm="lloyd",
        random_state=seed,
        # with overwrite_input, no second copy of the series: scikit-learn centres the
        # array in place during the fit and restores it (up to float rounding)
        copy_x=not overwrite_input,
    )
    labels = km.fit_predict(flat)
    return _renumbered(labels, km.cluster_centers_.astype(np.float32), float(km.inertia_), int(km.n_iter_), (t, d))


def assign_chunked(flat: np.ndarray, centers: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, float]:
    """Nearest centre of each row of (N, F) ``flat`` and the summed squared distance, ``chunk`` rows at a time.

    Distances are computed in the rows' dtype (float32 for the series); the inertia is accumulated
    in float64. Extra memory is a few (chunk, F) blocks, never a copy of ``flat``.
    """
    centers = np.asarray(centers, flat.dtype)
    c_sq = np.einsum("kf,kf->k", centers, centers)
    labels = np.empty(len(flat), np.int64)
    inertia = 0.0
    for start in range(0, len(flat), chunk):
        x = flat[start:start + chunk]
        lab = np.argmin(c_sq - 2 * (x @ centers.T), axis=1)
        labels[start:start + chunk] = lab
        diff = x - centers[lab]
        inertia += float(np.einsum("if,if->i", diff, diff).sum(dtype=np.float64))
    return labels, inertia


def _tslearn(
    series: np.ndarray, k: int, seed: int, n_init: int, max_iter: int, tol: float,
    init: np.ndarray | None, method: str, gamma: float,
) -> Clustering:
    """tslearn's TimeSeriesKMeans with ``metric=method``; the inertia recomputed on the final assignment."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tslearn warns about optional h5py
        from tslearn.clustering import TimeSeriesKMeans
        from tslearn.metrics import dtw, soft_dtw

    n, t, d = series.shape
    km = TimeSeriesKMeans(
        n_clusters=k,
        metric=method,
        metric_params={"gamma": gamma} if method == "softdtw" else None,
        init="k-means++" if init is None else np.asarray(init, np.float64).reshape(k, t, d),
        n_init=n_init if init is None else 1,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    ).fit(series)
    labels = np.asarray(km.labels_, np.int64)
    centers = np.asarray(km.cluster_centers_, np.float64)
    x = np.asarray(series, np.float64)
    if method == "dtw":
        inertia = sum(dtw(x[i], centers[labels[i]]) ** 2 for i in range(n))
    else:
        inertia = sum(soft_dtw(x[i], centers[labels[i]], gamma=gamma) for i in range(n))
    return _renumbered(labels, centers.astype(np.float32), float(inertia), int(km.n_iter_), (t, d))


def _renumbered(
    labels: np.ndarray, centers: np.ndarray, inertia: float, n_iter: int, shape: tuple[int, int]
) -> Clustering:
    """Relabel by decreasing cluster size (ties keep their order), centroids moved with their labels."""
    k = len(centers)
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    remap = np.empty(k, np.int64)
    remap[order] = np.arange(k)
    return Clustering(
        labels=remap[labels],
        centroids=np.asarray(centers, np.float32)[order].reshape(k, *shape),
        inertia=inertia,
        n_iter=n_iter,
    )
