"""Time-series K-means on the (N, T, D) series, with four methods (``cluster.method``).

``kmeans`` (default)
    Exact Lloyd K-means in float32, run by landtaxa over the series flattened to T*D vectors.
    With the Euclidean metric, tslearn's ``TimeSeriesKMeans`` is exactly this K-means, so both
    give the same partition from the same initial centres. landtaxa works on the caller's array
    as it is (no float64 copy, no centred copy): each iteration streams over it in blocks of
    ``LLOYD_CHUNK`` rows, computing the nearest centre, the per-cluster sums and the inertia in
    one pass, so the extra memory is a few blocks whatever N. A series on disk
    (:class:`landtaxa.clustering.series.Series`) is read block by block, once per iteration, never whole.
    Every iteration passes over all N series.
``minibatch``
    Centres updated from batches of ``batch_size`` series: for N beyond what full Lloyd
    iterations handle in time. A series that fits :data:`landtaxa.clustering.series.MEMORY_BYTES` goes
    to scikit-learn's ``MiniBatchKMeans`` whole (float32, no float64 copy); a larger one is
    streamed: each pass visits the blocks in a random order and the rows of the blocks in a
    random order, batches are drawn from that stream, each centre moves to the running mean of
    the rows it took (scikit-learn's update, without its reassignment of rarely chosen centres),
    and the run stops like scikit-learn's, when the smoothed batch inertia has not improved for
    ``MAX_NO_IMPROVEMENT`` batches (or the centres move less than ``tol``). The final labels come
    from one nearest-centroid pass, so the extra memory stays bounded whatever N.
``dtw`` / ``softdtw``
    tslearn's ``TimeSeriesKMeans`` with the DTW metric (DBA barycentres) or soft-DTW (smoothing
    ``gamma``), which match series shifted or stretched in time. Each iteration aligns every
    series with every centre at O(T^2) per pair, in float64, with a large constant: for small N
    only, and refused above ``max_dtw_tiles`` series.

Seeding: k-means++ (:mod:`landtaxa.clustering.seeding`: scikit-learn's draws, its distances worked out once per
sample) on every series up to :data:`SEED_ROWS`
of them (so small regions are seeded exactly as before), else on a sample of that many (at most
:data:`SEED_BYTES` in float32), drawn once with the seed and shared by the ``n_init`` restarts;
then, beyond SEED_ROWS, the ``n_init`` restarts run Lloyd's iterations on that sample (in
memory, cheap) and only the best of them runs on all N series. The seeding's cost thus stops
growing with N and a clustering reads the series about as many times as one Lloyd run takes
iterations (not ``n_init`` times that), while the final inertia stays at most 1% above that of
restarts on every series (``tests/test_clusters.py``, overlapping clusters; sometimes below it).
Beyond ``cluster.sample_rows`` series (default 16,384), the best restart then converges on nested
samples of 16,384, 65,536, ... series up to ``sample_rows`` (none when that is below 16,384;
:func:`polish_samples`, drawn in runs of neighbouring tiles so each is a few contiguous reads per
chunk of the store), each run from the last one's centres until a pass moves at most
``cluster.stop_moved`` of the sample, and on all N it makes at most ``cluster.full_passes``
passes (default 2) and keeps the last pass's assignment. Run to convergence there instead, its
first passes move the bulk and then a tail of passes shuffles border series back and forth, a
tail whose length varies with the seed and the data (2 to 18 passes on 250,000 synthetic series),
each pass a read of the whole series, from disk once it outgrows the page cache. On 250,000
overlapping synthetic series (24 x 512) two passes after the 16,384 sample gave an inertia 0.0044%
above the run to convergence (ARI 0.980 between the two; seed 0: the same labels), in 26 s
instead of 157 s. Up to ``sample_rows`` series the run on all of them goes on until a pass moves
at most ``cluster.stop_moved`` of them (default 0.1%; 0 = until none moves), and up to
:data:`SEED_ROWS` nothing of this applies.

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

from landtaxa.clustering.metrics import taxonomy_metrics
from landtaxa.clustering.seeding import SampleDistances, kmeans_plusplus
from landtaxa.clustering.series import MEMORY_BYTES, SEED_BYTES, SEED_ROWS, ArraySeries, Series, as_series, sample_rows
from landtaxa.inputs.grid import Grid
from landtaxa.params import ClusterParams
from landtaxa.storage import get_logger, load_npz, save_npz, write_json

log = get_logger()

CHUNK = 1024  # rows per block in the chunked nearest-centroid pass
LLOYD_CHUNK = 1024  # rows per block in a Lloyd iteration
POLISH_GROUP = 64  # consecutive series drawn together into the samples of the polish (polish_samples)
MAX_NO_IMPROVEMENT = 10  # streamed minibatch: batches without a better smoothed inertia before it stops


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) int, 0..K-1 by decreasing cluster size
    centroids: np.ndarray  # (K, T, D) float32
    inertia: float  # sum over series of the squared distance to the own centroid, in the method's metric
    n_iter: int  # iterations of the kept run (epochs for minibatch)
    # (N, K) float32: every series' squared Euclidean distance to every centroid (whole series flattened, whatever
    # the method's metric), from the pass that made the labels: what the representatives are chosen by
    distances: np.ndarray | None = None


# A clustering method: (series (N, T, D), K, settings, initial centres (K, T, D) or None, tol or None).
ClusterMethod = Callable[[np.ndarray, int, ClusterParams, "np.ndarray | None", "float | None"], Clustering]
METHODS: dict[str, ClusterMethod] = {}


def register_method(name: str, fit: ClusterMethod) -> ClusterMethod:
    """Make ``name`` a value of ``cluster.method`` (a later registration replaces an earlier one)."""
    METHODS[name] = fit
    return fit


def cluster_series(
    series, k: int, params: ClusterParams, init: np.ndarray | None = None, tol: float | None = None
) -> Clustering:
    """Cluster (N, T, D) series into ``k`` clusters with ``params.method`` (see the module docstring).

    ``series`` is an array or a :class:`landtaxa.clustering.series.Series` on disk, which ``kmeans`` and
    ``minibatch`` read block by block (other methods get it whole, in memory).
    ``params.n_init`` restarts from k-means++ seeding (one run from ``init``, (K, T, D), when given; beyond
    :data:`SEED_ROWS` series, restarts on a sample and the best one on every series: module docstring);
    ``params.max_iter`` is the iteration limit (epochs over the data for ``minibatch``); ``tol`` the
    convergence threshold of the underlying estimator (None: 0.0 for kmeans and minibatch,
    tslearn's 1e-6 on the mean inertia for dtw and softdtw; for minibatch in memory, tol > 0 costs
    scikit-learn one float32 temporary of the series). A float32 C-contiguous ``series`` is never
    copied by kmeans and minibatch (other dtypes are converted to float32 once); it is never modified.
    """
    if params.method not in METHODS:
        raise ValueError(f"unknown clustering method {params.method!r}; valid methods: {', '.join(METHODS)}")
    src = as_series(series)
    n = src.n
    if k < 2:
        raise ValueError(f"n_clusters must be at least 2, got {k}")
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of valid tiles ({n})")
    result = METHODS[params.method](src if params.method in STREAMING else src.load(), k, params, init, tol)
    if result.distances is None:  # a method that does not keep them (a plugin's): one more pass
        result.distances = np.empty((n, k), np.float32)
        assign_chunked(src, result.centroids.reshape(k, -1), distances=result.distances)
    return result


def seeding_sample(src, k: int, rng: np.random.RandomState) -> np.ndarray:
    """(m, F) float32 series that k-means++ seeds from: all of them up to :data:`SEED_ROWS` (and
    :data:`SEED_BYTES`), else a sample of that many (at least ``k``), drawn with ``rng``."""
    size = max(k, min(SEED_ROWS, SEED_BYTES // (4 * src.n_features)))
    if src.n <= size:
        return src.load().reshape(src.n, -1)
    rows = sample_rows(src, size, rng)
    return src.take(rows).reshape(len(rows), -1)


def _fit_kmeans(series, k: int, p: ClusterParams, init: np.ndarray | None, tol: float | None) -> Clustering:
    src = as_series(series)
    rng = np.random.RandomState(p.seed)

    def on_all(centers: np.ndarray, **kw) -> tuple:
        """A run on every series: lloyd's result and the distances of its last pass (to the centres returned)."""
        dist = np.empty((src.n, k), np.float32)
        return (*lloyd(src, centers, max_iter=p.max_iter, tol=tol or 0.0, distances=dist, **kw), dist)

    if init is not None:
        runs = [on_all(np.reshape(init, (k, -1)))]
    else:
        sample = seeding_sample(src, k, rng)
        dist = SampleDistances(sample)  # shared by the restarts' seedings
        if len(sample) == src.n:  # every series: n_init restarts on them all
            runs = [on_all(kmeans_plusplus(sample, k, rng, dist)) for _ in range(p.n_init)]
        else:  # the restarts on the sample; the best of them climbs through larger samples to every series
            on_sample = [lloyd(sample, kmeans_plusplus(sample, k, rng, dist), max_iter=p.max_iter,
                               tol=tol or 0.0) for _ in range(p.n_init)]
            centers = min(on_sample, key=lambda run: run[2])[1]
            del sample, dist
            beyond = src.n > p.sample_rows
            for rows in polish_samples(src.n, p.sample_rows, rng) if beyond else []:
                run = lloyd(src.subset(rows), centers, max_iter=p.max_iter, tol=tol or 0.0, stop_moved=p.stop_moved)
                centers = run[1]
                log.info("K-means on a sample of %d series: %d passes", len(rows), run[3])
            passes = p.full_passes if beyond and p.full_passes else None
            runs = [on_all(centers, stop_moved=p.stop_moved, passes=passes)]
            log.info("K-means on all %d series: %d passes", src.n, runs[0][3])
    labels, centers, inertia, n_iter, dist = min(runs, key=lambda run: run[2])
    return _renumbered(labels, centers, inertia, n_iter, src.shape[1:], dist)


def polish_samples(n: int, largest: int, rng: np.random.RandomState) -> list[np.ndarray]:
    """Sorted positions of the nested samples that the best restart converges on before it runs on all ``n``
    series: 4 x, 16 x, ... :data:`SEED_ROWS` series, at most ``largest`` and fewer than ``n``, smallest first
    (none up to 4 x SEED_ROWS series). Each is drawn in groups of :data:`POLISH_GROUP` consecutive series
    (neighbouring tiles: a few contiguous reads per chunk of the store, not one per tile) and holds the
    smaller ones."""
    sizes = []
    m = 4 * SEED_ROWS
    while m <= largest and m < n:
        sizes.append(m)
        m *= 4
    if not sizes:
        return []
    groups = rng.permutation(-(-n // POLISH_GROUP))
    out = []
    for m in sizes:
        chosen = np.sort(groups[: -(-m // POLISH_GROUP)])
        rows = (chosen[:, None] * POLISH_GROUP + np.arange(POLISH_GROUP)).ravel()
        out.append(rows[rows < n])
    return out


def _fit_minibatch(series, k: int, p: ClusterParams, init: np.ndarray | None, tol: float | None) -> Clustering:
    if p.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {p.batch_size}")
    from sklearn.cluster import MiniBatchKMeans

    src = as_series(series)
    if isinstance(src, ArraySeries) or src.nbytes <= MEMORY_BYTES:
        flat = src.load().reshape(src.n, -1)
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
        centers, n_iter = mbk.cluster_centers_.astype(np.float32), int(mbk.n_iter_)
    else:
        centers, n_iter = _minibatch_streamed(src, k, p, init, tol or 0.0)
        flat = src
    dist = np.empty((src.n, k), np.float32)
    labels, inertia = assign_chunked(flat, centers, distances=dist)
    return _renumbered(labels, centers, inertia, n_iter, src.shape[1:], dist)


def _minibatch_streamed(src, k: int, p: ClusterParams, init: np.ndarray | None, tol: float) -> tuple[np.ndarray, int]:
    """Centres and passes of mini-batch K-means streamed over a series on disk (module docstring)."""
    rng = np.random.RandomState(p.seed)
    if init is None:
        sample = seeding_sample(src, k, rng)
        dist = SampleDistances(sample)
        best, best_inertia = None, np.inf
        for _ in range(p.n_init):  # the seeding with the lowest inertia on the sample, as scikit-learn's init
            cand = kmeans_plusplus(sample, k, rng, dist)
            inertia = assign_chunked(sample, cand)[1]
            if inertia < best_inertia:
                best, best_inertia = cand, inertia
        centers = np.array(best, np.float32)
        del sample, dist
    else:
        centers = np.array(np.reshape(init, (k, -1)), np.float32)
    counts = np.zeros(k, np.float64)
    threshold = tol * _mean_variance(src, LLOYD_CHUNK) if tol > 0 else 0.0
    alpha = min(1.0, 2.0 * p.batch_size / (src.n + 1))
    ewa, ewa_min, no_improvement = None, np.inf, 0

    def step(x: np.ndarray) -> bool:
        """One mini-batch update; True when the smoothed inertia has stopped improving."""
        nonlocal ewa, ewa_min, no_improvement
        c_sq = np.einsum("kf,kf->k", centers, centers)
        d = c_sq[None] - 2 * (x @ centers.T) + np.einsum("if,if->i", x, x)[:, None]
        lab = np.argmin(d, axis=1)
        batch_inertia = float(np.maximum(d[np.arange(len(x)), lab], 0).sum(dtype=np.float64)) / len(x)
        weights = np.zeros((k, len(x)), np.float32)
        weights[lab, np.arange(len(x))] = 1.0
        sums = weights @ x
        n_j = np.bincount(lab, minlength=k).astype(np.float64)
        counts[:] += n_j
        upd = n_j > 0
        centers[upd] += ((sums[upd] - n_j[upd, None] * centers[upd]) / counts[upd, None]).astype(np.float32)
        ewa = batch_inertia if ewa is None else ewa * (1 - alpha) + batch_inertia * alpha
        if ewa < ewa_min:
            ewa_min, no_improvement = ewa, 0
        else:
            no_improvement += 1
        return no_improvement >= MAX_NO_IMPROVEMENT

    epochs = 0
    while epochs < p.max_iter:
        epochs += 1
        before = centers.copy()
        pool: list[np.ndarray] = []
        pooled = 0
        stop = False
        for _, block in src.blocks(rng.permutation(src.n_blocks())):
            flat = block.reshape(len(block), -1)
            pool.append(flat[rng.permutation(len(flat))])
            pooled += len(flat)
            while pooled >= p.batch_size and not stop:
                rows = np.concatenate(pool)
                stop = step(rows[: p.batch_size])
                pool, pooled = [rows[p.batch_size:]], len(rows) - p.batch_size
            if stop:
                break
        if not stop and pooled:
            stop = step(np.concatenate(pool))
        shift = float(((centers.astype(np.float64) - before) ** 2).sum())
        if stop or shift <= threshold:
            break
    return centers, epochs


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
STREAMING = {"kmeans", "minibatch"}  # methods that read a series on disk block by block (others get it in memory)


def sq_distance_blocks(x: np.ndarray, centers: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """Squared Euclidean distances of the rows of (N, F) ``x`` to (M, F) ``centers``, block by block.

    Yields (first row, (rows, M) distances) for ``chunk`` rows at a time, computed in float32 from
    the rows as they are (a memory map works; no copy of ``x``). The one distance helper of the
    clustering, the analysis (closest series) and the evolution (nearest centroid slice).
    """
    centers = np.asarray(centers, np.float32)
    c_sq = np.einsum("kf,kf->k", centers, centers)
    for start in range(0, len(x), chunk):
        yield start, _sq_distances(np.asarray(x[start:start + chunk], np.float32), centers, c_sq)


def _sq_distances(x: np.ndarray, centers: np.ndarray, c_sq: np.ndarray) -> np.ndarray:
    """(rows, K) squared distances of float32 rows to float32 centres whose squared norms are ``c_sq``."""
    d = c_sq[None] - 2 * (x @ centers.T) + np.einsum("if,if->i", x, x)[:, None]
    return np.maximum(d, 0.0, out=d)


def flat_blocks(series, order: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, (m, F) float32 rows) of every block of ``series`` (an array or a series on disk)."""
    for positions, block in as_series(series).blocks(order):
        yield positions, block.reshape(len(block), -1)


def chunked_rows(series, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, (<= chunk, F) float32 rows) of ``series``, ``chunk`` rows at a time within each block.

    The one walk of the K-means passes: blocks as read from disk (or an array), cut into pieces small
    enough for a (chunk x K) distance matrix; views, never copies of the rows.
    """
    for positions, block in flat_blocks(series):
        for s0 in range(0, len(block), chunk):
            yield positions[s0:s0 + chunk], block[s0:s0 + chunk]


def lloyd(
    flat, init: np.ndarray, max_iter: int = 300, tol: float = 0.0, chunk: int = LLOYD_CHUNK,
    stop_moved: float = 0.0, passes: int | None = None, distances: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd's K-means on (N, F) ``flat`` from (K, F) ``init``: labels, centres, inertia, iterations.

    ``flat`` is an array, or a series on disk (:class:`landtaxa.clustering.series.Series`, read block by
    block once per iteration). Each iteration is one pass over it in blocks of ``chunk`` rows,
    finding the nearest centre of every row (squared Euclidean, in float32 like the rows). The
    per-cluster sums (in float64) are kept up to date from the rows whose label changed only, so
    after the first iterations a pass costs little more than reading the data once; the new
    centres are the cluster means. It stops when no label changes (the pass's inertia, summed
    from the differences themselves, is then the result's), or when the centres move by at most
    ``tol`` times the mean per-feature variance of the data (squared Euclidean norm summed over
    the clusters, as scikit-learn's ``tol``), or after ``max_iter`` iterations (then one more pass
    assigns the rows to the final centres), or, keeping that pass's assignment and the centres it
    was made to, when a pass after the first moved at most ``stop_moved`` times N rows to another
    cluster or after ``passes`` passes. A cluster left empty takes the row farthest from its own
    centre (one per empty cluster), so K clusters always remain. The returned labels and inertia
    belong to the returned centres, and so do ``distances`` ((N, K) float32, when given): each pass
    writes there the squared distance of every row to every centre it assigned to.
    """
    src = as_series(flat)
    n, f = src.n, src.n_features
    k = len(init)
    centers = np.array(init, np.float32).reshape(k, f)
    labels = np.full(n, -1, np.int64)
    sums = np.zeros((k, f), np.float64)
    threshold = tol * _mean_variance(src, chunk) if tol > 0 else 0.0
    # the inertia of a pass matters only for the pass returned: summed during every pass when the series is
    # larger than memory (one read each), else summed in the same order over the returned pass alone
    during = src.nbytes > MEMORY_BYTES
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        c_sq = np.einsum("kf,kf->k", centers, centers)
        changed = 0
        inertia = 0.0
        for rows, x in chunked_rows(src, chunk):
            part = c_sq - 2 * (x @ centers.T)
            lab = np.argmin(part, axis=1)
            if distances is not None:
                distances[rows] = np.maximum(part + np.einsum("if,if->i", x, x)[:, None], 0.0)
            if during:
                inertia = _sq_sum(x, centers, lab, inertia)
            old = labels[rows]
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
            labels[rows] = lab
        if changed == 0:  # the centres are already the means of this very assignment
            return labels, centers, inertia if during else _pass_inertia(src, centers, labels, chunk), n_iter
        counts = np.bincount(labels, minlength=k)
        new = np.empty_like(centers)
        filled = counts > 0
        new[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        if filled.all() and ((n_iter > 1 and changed <= stop_moved * n) or (passes and n_iter >= passes)):
            # few moved: this pass's assignment is kept, with the centres it was made to (one pass fewer)
            return labels, centers, inertia if during else _pass_inertia(src, centers, labels, chunk), n_iter
        if not filled.all():
            _relocate_empty(src, centers, labels, new, np.flatnonzero(~filled), chunk)
        shift = float(((new.astype(np.float64) - centers) ** 2).sum())
        centers = new
        if shift <= threshold:
            break
    # stopped by tol or max_iter: the final assignment to the final centres
    labels, inertia = assign_chunked(src, centers, distances=distances)
    return labels, centers, inertia, n_iter


def _pass_inertia(src, centers: np.ndarray, labels: np.ndarray, chunk: int) -> float:
    """The inertia a Lloyd pass over ``src`` in ``chunk`` rows sums: the same additions in the same order."""
    total = 0.0
    for rows, x in chunked_rows(src, chunk):
        total = _sq_sum(x, centers, labels[rows], total)
    return total


def _mean_variance(src, chunk: int) -> float:
    """Mean over the features of the variance of the series' columns, in one float64 pass."""
    src = as_series(src)
    s = np.zeros(src.n_features, np.float64)
    s2 = np.zeros(src.n_features, np.float64)
    for _, rows in chunked_rows(src, chunk):
        x = rows.astype(np.float64)
        s += x.sum(axis=0)
        s2 += (x * x).sum(axis=0)
    mean = s / src.n
    return float(np.mean(s2 / src.n - mean * mean))


def _relocate_empty(
    src, centers: np.ndarray, labels: np.ndarray, new: np.ndarray, empty: np.ndarray, chunk: int
) -> None:
    """Move each empty cluster's centre (in ``new``) onto one of the rows farthest from their own centres."""
    far = np.empty(src.n, np.float32)
    for rows, x in chunked_rows(src, chunk):
        diff = x - centers[labels[rows]]
        far[rows] = np.einsum("if,if->i", diff, diff)
    picks = np.argsort(-far, kind="stable")[: len(empty)]
    new[empty] = src.take(picks).reshape(len(picks), -1)


def assign_chunked(flat, centers: np.ndarray, chunk: int = CHUNK,
                   distances: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Nearest centre of each row of (N, F) ``flat`` and the summed squared distance, ``chunk`` rows at a time.

    ``flat`` is an array or a series on disk, read in one pass. Extra memory is a few small blocks,
    never a copy of ``flat``; the inertia is computed from the differences themselves
    (:func:`squared_distances_sum`), in float64. ``distances`` ((N, K) float32), when given, receives
    every row's squared distance to every centre.
    """
    src = as_series(flat)
    centers = np.asarray(centers, np.float32)
    c_sq = np.einsum("kf,kf->k", centers, centers)
    labels = np.empty(src.n, np.int64)
    total = 0.0
    for rows, x in chunked_rows(src, chunk):
        d = _sq_distances(x, centers, c_sq)
        lab = np.argmin(d, axis=1)
        labels[rows] = lab
        if distances is not None:
            distances[rows] = d
        total = _sq_sum(x, centers, lab, total)
    return labels, total


def _sq_sum(x: np.ndarray, centers: np.ndarray, labels: np.ndarray, total: float = 0.0, chunk: int = 64) -> float:
    """``total`` plus :func:`squared_distances_sum` of in-memory rows (added in the same order as one pass)."""
    centers = np.asarray(centers, x.dtype)
    for start in range(0, len(x), chunk):
        diff = x[start:start + chunk] - centers[labels[start:start + chunk]]
        total += float(np.einsum("if,if->i", diff, diff).sum(dtype=np.float64))
    return total


def squared_distances_sum(flat, centers: np.ndarray, labels: np.ndarray, chunk: int = 64) -> float:
    """Sum over the rows of ``flat`` of the squared distance to their centre ``centers[labels]``.

    From the differences themselves (not from norms, which cancel badly for data far from the
    origin), in blocks of ``chunk`` rows small enough to stay in the CPU caches; float64 total.
    ``flat`` is an array or a series on disk.
    """
    total = 0.0
    for positions, block in flat_blocks(flat):
        total = _sq_sum(block, centers, labels[positions], total, chunk)
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
    labels: np.ndarray, centers: np.ndarray, inertia: float, n_iter: int, shape: tuple[int, int],
    distances: np.ndarray | None = None,
) -> Clustering:
    """Relabel by decreasing cluster size (ties keep their order), centroids (and distances' columns) moved with
    their labels."""
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
        distances=None if distances is None else distances[:, order],
    )


def clusters_step(*, grid: str, series: str, k: int, model: str, truth: str | None = None, out: str,
                  metrics: str, distances: str | None = None, params: ClusterParams) -> None:
    """One clustering of a model's series at ``k``, with its metrics (and ARI/NMI when a truth is given).

    ``distances`` (an .npz) receives every tile's squared distance to every centroid, (N, K) float32 in the
    order of the clustering's tiles and labels: the representatives step chooses its tiles from them
    without reading the series again.
    """
    import time

    log = get_logger()
    s = Series(series)
    if k > s.n:  # valid tiles are known only now; stop before fitting
        raise ValueError(
            f"{series}: n_clusters asks for K={k} clusters but the series holds only "
            f"{s.n} valid tiles; lower n_clusters (config key) to at most {s.n}"
        )
    t0 = time.perf_counter()
    result = cluster_series(s, k, params)
    log.info("K-means (%s), K=%d: inertia %.4g after %d iterations, %.1f s", params.method, k, result.inertia,
             result.n_iter, time.perf_counter() - t0)
    m = taxonomy_metrics(Grid.load(grid), s, s.tile_ids, result.labels, result.inertia,
                         truth=load_npz(truth)["classes"] if truth else None, seed=params.seed)
    m["model"] = model
    m["dates"] = s.dates.tolist()
    save_npz(out, labels=result.labels, centroids=result.centroids, tile_ids=s.tile_ids, dates=s.dates)
    if distances:
        save_npz(distances, distances=result.distances)
    write_json(metrics, m)
    log.info("metrics: %s", {key: v for key, v in m.items() if key not in ("dates", "cluster_sizes")})
