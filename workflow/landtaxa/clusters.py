"""Time-series K-means on the (N, T, D) series, with four methods (``cluster.method``).

``kmeans`` (default)
    Exact Lloyd K-means in float32, run by landtaxa over the series flattened to T*D vectors.
    With the Euclidean metric, tslearn's ``TimeSeriesKMeans`` is exactly this K-means, so both
    give the same partition from the same initial centres. landtaxa works on the caller's array
    as it is (no float64 copy, no centred copy): each iteration streams over it in blocks of
    ``LLOYD_CHUNK`` rows, computing the nearest centre and the per-cluster sums in one pass, so
    the extra memory is a few blocks whatever N, and a memory-mapped series works too.
    Every iteration passes over all N series: the choice up to a few hundred thousand tiles.
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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import MiniBatchKMeans, kmeans_plusplus

from landtaxa.params import ClusterParams

CHUNK = 1024  # rows per block in the chunked nearest-centroid pass
LLOYD_CHUNK = 1024  # rows per block in a Lloyd iteration


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) int, 0..K-1 by decreasing cluster size
    centroids: np.ndarray  # (K, T, D) float32
    inertia: float  # sum over series of the squared distance to the own centroid, in the method's metric
    n_iter: int  # iterations of the kept run (epochs for minibatch)


# A clustering method: (series (N, T, D), K, settings, initial centres (K, T, D) or None, tol or None).
ClusterMethod = Callable[[np.ndarray, int, ClusterParams, "np.ndarray | None", "float | None"], Clustering]
METHODS: dict[str, ClusterMethod] = {}


def register_method(name: str, fit: ClusterMethod) -> ClusterMethod:
    """Make ``name`` a value of ``cluster.method`` (a later registration replaces an earlier one)."""
    METHODS[name] = fit
    return fit


def cluster_series(
    series: np.ndarray, k: int, params: ClusterParams, init: np.ndarray | None = None, tol: float | None = None
) -> Clustering:
    """Cluster (N, T, D) series into ``k`` clusters with ``params.method`` (see the module docstring).

    ``params.n_init`` restarts from k-means++ seeding (one run from ``init``, (K, T, D), when given);
    ``params.max_iter`` is the iteration limit (epochs over the data for ``minibatch``); ``tol`` the
    convergence threshold of the underlying estimator (None: 0.0 for kmeans and minibatch,
    tslearn's 1e-6 on the mean inertia for dtw and softdtw; for minibatch, tol > 0 costs
    scikit-learn one float32 temporary of the series). A float32 C-contiguous ``series`` is never
    copied by kmeans and minibatch (other dtypes are converted to float32 once); it is never modified.
    """
    if params.method not in METHODS:
        raise ValueError(f"unknown clustering method {params.method!r}; valid methods: {', '.join(METHODS)}")
    n = len(series)
    if k < 2:
        raise ValueError(f"n_clusters must be at least 2, got {k}")
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of valid tiles ({n})")
    return METHODS[params.method](series, k, params, init, tol)


def _flat32(series: np.ndarray) -> np.ndarray:
    n = len(series)
    return np.ascontiguousarray(series.reshape(n, -1), dtype=np.float32)


def _fit_kmeans(series: np.ndarray, k: int, p: ClusterParams, init: np.ndarray | None, tol: float | None) -> Clustering:
    flat = _flat32(series)
    rng = np.random.RandomState(p.seed)
    best = None
    for _ in range(p.n_init if init is None else 1):
        centers = kmeans_plusplus(flat, k, random_state=rng)[0] if init is None else np.reshape(init, (k, -1))
        run = lloyd(flat, centers, max_iter=p.max_iter, tol=tol or 0.0)
        if best is None or run[2] < best[2]:
            best = run
    labels, centers, inertia, n_iter = best
    return _renumbered(labels, centers, inertia, n_iter, series.shape[1:])


def _fit_minibatch(series: np.ndarray, k: int, p: ClusterParams, init: np.ndarray | None,
                   tol: float | None) -> Clustering:
    if p.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {p.batch_size}")
    flat = _flat32(series)
    mbk = MiniBatchKMeans(
        n_clusters=k,
        init="k-means++" if init is None else np.asarray(init, np.float32).reshape(k, -1),
        n_init=p.n_init if init is None else 1,
        max_iter=p.max_iter,
        batch_size=p.batch_size,
        tol=tol or 0.0,
        compute_labels=False,  # labelled below, with the exact inertia
        random_state=p.seed,
    ).fit(flat)
    centers = mbk.cluster_centers_.astype(np.float32)
    labels, inertia = assign_chunked(flat, centers)
    return _renumbered(labels, centers, inertia, int(mbk.n_iter_), series.shape[1:])


def _fit_dtw(series: np.ndarray, k: int, p: ClusterParams, init: np.ndarray | None, tol: float | None) -> Clustering:
    if len(series) > p.max_dtw_tiles:
        raise ValueError(
            f"method {p.method!r} is limited to {p.max_dtw_tiles} tiles (cluster.max_dtw_tiles) and this run "
            f"has N={len(series)}: each iteration aligns every series with every centre at O(T^2) per pair; "
            "use 'kmeans' or 'minibatch', or raise max_dtw_tiles"
        )
    return _tslearn(series, k, p.seed, p.n_init, p.max_iter, 1e-6 if tol is None else tol, init, p.method, p.gamma)


register_method("kmeans", _fit_kmeans)
register_method("minibatch", _fit_minibatch)
register_method("dtw", _fit_dtw)
register_method("softdtw", _fit_dtw)


def sq_distance_blocks(x: np.ndarray, centers: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """Squared Euclidean distances of the rows of (N, F) ``x`` to (M, F) ``centers``, block by block.

    Yields (first row, (rows, M) distances) for ``chunk`` rows at a time, computed in float32 from
    the rows as they are (a memory map works; no copy of ``x``). The one distance helper of the
    clustering, the analysis (closest series) and the evolution (nearest centroid slice).
    """
    centers = np.asarray(centers, np.float32)
    c_sq = np.einsum("kf,kf->k", centers, centers)
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start:start + chunk], np.float32)
        d = c_sq[None] - 2 * (block @ centers.T) + np.einsum("if,if->i", block, block)[:, None]
        yield start, np.maximum(d, 0.0, out=d)


def lloyd(
    flat: np.ndarray, init: np.ndarray, max_iter: int = 300, tol: float = 0.0, chunk: int = LLOYD_CHUNK
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd's K-means on (N, F) ``flat`` from (K, F) ``init``: labels, centres, inertia, iterations.

    Each iteration is one pass over ``flat`` in blocks of ``chunk`` rows, finding the nearest
    centre of every row (squared Euclidean, in float32 like the rows). The per-cluster sums (in
    float64) are kept up to date from the rows whose label changed only, so after the first
    iterations a pass costs little more than reading the data once; the new centres are the
    cluster means. It stops when no label changes, or when the centres move by at most ``tol``
    times the mean per-feature variance of the data (squared Euclidean norm summed over the
    clusters, as scikit-learn's ``tol``), or after ``max_iter`` iterations. A cluster left empty
    takes the row farthest from its own centre (one per empty cluster), so K clusters always
    remain. The returned labels and inertia belong to the returned centres.
    """
    n, f = flat.shape
    k = len(init)
    centers = np.array(init, np.float32)
    labels = np.full(n, -1, np.int64)
    sums = np.zeros((k, f), np.float64)
    threshold = tol * _mean_variance(flat, chunk) if tol > 0 else 0.0
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        c_sq = np.einsum("kf,kf->k", centers, centers)
        changed = 0
        for s0 in range(0, n, chunk):
            x = flat[s0:s0 + chunk]
            lab = np.argmin(c_sq - 2 * (x @ centers.T), axis=1)
            old = labels[s0:s0 + chunk]
            moved = np.flatnonzero(lab != old)
            if len(moved) == 0:
                continue
            changed += len(moved)
            # +row to its new cluster's sum, -row from its old one's (none on the first pass)
            weights = np.zeros((k, len(moved)), np.float32)
            cols = np.arange(len(moved))
            weights[lab[moved], cols] = 1.0
            had = old[moved] >= 0
            weights[old[moved][had], cols[had]] = -1.0
            sums += weights @ x[moved]
            labels[s0:s0 + chunk] = lab
        if changed == 0:  # the centres are already the means of this very assignment
            return labels, centers, squared_distances_sum(flat, centers, labels), n_iter
        counts = np.bincount(labels, minlength=k)
        new = np.empty_like(centers)
        filled = counts > 0
        new[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        if not filled.all():
            _relocate_empty(flat, centers, labels, new, np.flatnonzero(~filled), chunk)
        shift = float(((new.astype(np.float64) - centers) ** 2).sum())
        centers = new
        if shift <= threshold:
            break
    # stopped by tol or max_iter: the final assignment to the final centres
    labels, inertia = assign_chunked(flat, centers)
    return labels, centers, inertia, n_iter


def _mean_variance(flat: np.ndarray, chunk: int) -> float:
    """Mean over the features of the variance of ``flat``'s columns, in one float64 pass."""
    s = np.zeros(flat.shape[1], np.float64)
    s2 = np.zeros(flat.shape[1], np.float64)
    for s0 in range(0, len(flat), chunk):
        x = flat[s0:s0 + chunk].astype(np.float64)
        s += x.sum(axis=0)
        s2 += (x * x).sum(axis=0)
    mean = s / len(flat)
    return float(np.mean(s2 / len(flat) - mean * mean))


def _relocate_empty(
    flat: np.ndarray, centers: np.ndarray, labels: np.ndarray, new: np.ndarray, empty: np.ndarray, chunk: int
) -> None:
    """Move each empty cluster's centre (in ``new``) onto one of the rows farthest from their own centres."""
    far = np.empty(len(flat), np.float32)
    for s0 in range(0, len(flat), chunk):
        x = flat[s0:s0 + chunk]
        diff = x - centers[labels[s0:s0 + chunk]]
        far[s0:s0 + chunk] = np.einsum("if,if->i", diff, diff)
    picks = np.argsort(-far, kind="stable")[: len(empty)]
    new[empty] = flat[picks]


def assign_chunked(flat: np.ndarray, centers: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, float]:
    """Nearest centre of each row of (N, F) ``flat`` and the summed squared distance, ``chunk`` rows at a time.

    Extra memory is a few small blocks, never a copy of ``flat``; the inertia is computed from the
    differences themselves (:func:`squared_distances_sum`), in float64.
    """
    labels = np.empty(len(flat), np.int64)
    for start, d in sq_distance_blocks(flat, centers, chunk):
        labels[start:start + len(d)] = np.argmin(d, axis=1)
    return labels, squared_distances_sum(flat, centers, labels)


def squared_distances_sum(flat: np.ndarray, centers: np.ndarray, labels: np.ndarray, chunk: int = 64) -> float:
    """Sum over the rows of ``flat`` of the squared distance to their centre ``centers[labels]``.

    From the differences themselves (not from norms, which cancel badly for data far from the
    origin), in blocks of ``chunk`` rows small enough to stay in the CPU caches; float64 total.
    """
    centers = np.asarray(centers, flat.dtype)
    total = 0.0
    for start in range(0, len(flat), chunk):
        diff = flat[start:start + chunk] - centers[labels[start:start + chunk]]
        total += float(np.einsum("if,if->i", diff, diff).sum(dtype=np.float64))
    return total


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


def clusters_step(*, grid: str, series: str, k: int, model: str, truth: str | None = None, out: str,
                  metrics: str, params: ClusterParams) -> None:
    """One clustering of a model's series at ``k``, with its metrics (and ARI/NMI when a truth is given)."""
    import time

    from landtaxa.grid import Grid
    from landtaxa.metrics import taxonomy_metrics
    from landtaxa.storage import get_logger, load_npz, save_npz, write_json

    log = get_logger()
    s = load_npz(series)
    if k > len(s["series"]):  # valid tiles are known only now; stop before fitting
        raise ValueError(
            f"{series}: n_clusters asks for K={k} clusters but the series holds only "
            f"{len(s['series'])} valid tiles; lower n_clusters (config key) to at most {len(s['series'])}"
        )
    t0 = time.perf_counter()
    result = cluster_series(s["series"], k, params)
    log.info("K-means (%s), K=%d: inertia %.4g after %d iterations, %.1f s", params.method, k, result.inertia,
             result.n_iter, time.perf_counter() - t0)
    m = taxonomy_metrics(Grid.load(grid), s["series"], s["tile_ids"], result.labels, result.inertia,
                         truth=load_npz(truth)["classes"] if truth else None, seed=params.seed)
    m["model"] = model
    m["dates"] = s["dates"].tolist()
    save_npz(out, labels=result.labels, centroids=result.centroids, tile_ids=s["tile_ids"], dates=s["dates"])
    write_json(metrics, m)
    log.info("metrics: %s", {key: v for key, v in m.items() if key not in ("dates", "cluster_sizes")})
