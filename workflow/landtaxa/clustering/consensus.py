"""The members' taxonomies combined into one, and how far each tile of it can be trusted.

A run trains, refines and clusters the method several times from different seeds (its members,
``members`` in the config). With about a hundred tiles, a different seed, or only a different
order of float reductions (another CPU, another thread count), sends training down another path,
and one run's map is then one draw among many. The consensus is the partition that agrees best
with all of them: K-means on the members' labels written one-hot, (N, M x K). For two tiles the
squared distance between their one-hot rows is 2 x (M - the members that put them together), so
K-means there clusters the co-association of the members (how often two tiles share a cluster)
without ever forming its N x N matrix: it is linear in N and streams in blocks like every other
clustering (:func:`landtaxa.clustering.clusters.cluster_series` reads :class:`OneHotLabels` block by
block, built from the (N, M) labels on the fly).

Each member's clusters are then matched to the consensus's (Hungarian matching on their K x K
contingency table), and a tile's **confidence** is the share of members that put it in its
consensus cluster (1 = every member agrees). The members' **agreement** is the mean ARI between
every pair of them. The consensus's centroids, distances and metrics are computed in the series of
the model whose members it combines (member 0's, the run's own seed), so every later step (maps,
analysis, evolution) reads it like any other model.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

from landtaxa.clustering.clusters import assign_chunked, cluster_series, flat_blocks
from landtaxa.clustering.metrics import adjusted_rand, taxonomy_metrics
from landtaxa.clustering.series import BLOCK_BYTES, Series
from landtaxa.inputs.grid import Grid
from landtaxa.params import ClusterParams
from landtaxa.storage import get_logger, load_npz, save_npz, write_json

log = get_logger()


class OneHotLabels:
    """The members' labels (N, M) read as (N, M, K) one-hot float32 series, block by block (never whole)."""

    def __init__(self, labels: np.ndarray, k: int, block_rows: int | None = None) -> None:
        self.labels = np.asarray(labels, np.int64)
        if self.labels.ndim != 2:
            raise ValueError(f"member labels must be (tiles, members), got shape {self.labels.shape}")
        self.k = int(k)
        self.block_rows = block_rows or max(1, BLOCK_BYTES // (4 * self.n_features))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.labels), self.labels.shape[1], self.k)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_features(self) -> int:
        return self.labels.shape[1] * self.k

    @property
    def nbytes(self) -> int:
        return self.n * self.n_features * 4

    def take(self, positions: np.ndarray) -> np.ndarray:
        lab = self.labels[np.asarray(positions)]
        out = np.zeros((*lab.shape, self.k), np.float32)
        np.put_along_axis(out, lab[..., None], 1.0, axis=-1)
        return out

    def n_blocks(self) -> int:
        return -(-self.n // self.block_rows)

    def blocks(self, order: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b in range(self.n_blocks()) if order is None else order:
            positions = np.arange(b * self.block_rows, min(self.n, (b + 1) * self.block_rows))
            yield positions, self.take(positions)

    def subset(self, positions: np.ndarray) -> OneHotLabels:
        return OneHotLabels(self.labels[np.asarray(positions)], self.k, self.block_rows)

    def load(self) -> np.ndarray:
        return self.take(np.arange(self.n))


def matched(labels: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """``labels`` renamed to the ``reference`` clusters they overlap most (one-to-one, Hungarian matching)."""
    table = np.bincount(reference * k + labels, minlength=k * k).reshape(k, k)  # [reference, labels]
    ref, lab = linear_sum_assignment(table, maximize=True)
    rename = np.empty(k, np.int64)
    rename[lab] = ref
    return rename[labels]


def agreement(labels: np.ndarray) -> float:
    """Mean ARI between every pair of the (N, M) members' labels (NaN with one member)."""
    pairs = [adjusted_rand(labels[:, a], labels[:, b])
             for a, b in itertools.combinations(range(labels.shape[1]), 2)]
    return float(np.mean(pairs)) if pairs else float("nan")


@dataclasses.dataclass
class Consensus:
    labels: np.ndarray  # (N,) 0..K-1 by decreasing size
    confidence: np.ndarray  # (N,) float32: share of the members that put the tile in its consensus cluster
    agreement: float  # mean pairwise ARI of the members


def consensus(labels: np.ndarray, k: int, params: ClusterParams) -> Consensus:
    """The consensus of the (N, M) members' labels at ``k`` (K-means on their one-hot rows, ``params``' restarts
    and seed), each tile's confidence and the members' agreement (module docstring)."""
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"member labels must lie in 0..{k - 1}")
    result = cluster_series(OneHotLabels(labels, k), k, dataclasses.replace(params, method="kmeans"))
    votes = np.zeros(len(labels), np.float32)
    for m in range(labels.shape[1]):
        votes += matched(labels[:, m], result.labels, k) == result.labels
    return Consensus(result.labels, votes / labels.shape[1], agreement(labels))


def cluster_means(series, labels: np.ndarray, k: int) -> np.ndarray:
    """(K, T, D) float32: the mean series of each cluster, in one pass over ``series``' blocks."""
    sums = np.zeros((k, int(np.prod(series.shape[1:]))), np.float64)
    for positions, block in flat_blocks(series):
        lab = labels[positions]
        for c in np.unique(lab):
            sums[c] += block[lab == c].sum(axis=0, dtype=np.float64)
    counts = np.bincount(labels, minlength=k)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32).reshape(k, *series.shape[1:])


def consensus_step(*, grid: str, series: str, members: list[str], k: int, model: str, out: str, metrics: str,
                   distances: str, confidence: str, truth: str | None = None, params: ClusterParams) -> None:
    """The consensus of the members' clusterings (``members``: their ``k<K>.npz``) with its metrics, each tile's
    confidence (``confidence``, an .npz of ``tile_ids`` and ``confidence``), and the centroids and distances in
    ``series``, the series of the model whose members it combines."""
    s = Series(series)
    runs = [load_npz(p) for p in members]
    for path, run in zip(members, runs, strict=True):
        if not np.array_equal(run["tile_ids"], s.tile_ids):
            raise ValueError(f"{path}: its tiles are not those of {series}; every member must cluster the same tiles")
    result = consensus(np.stack([run["labels"] for run in runs], axis=1), k, params)
    centroids = cluster_means(s, result.labels, k)
    dist = np.empty((s.n, k), np.float32)
    labels, inertia = assign_chunked(s, centroids.reshape(k, -1), distances=dist)
    log.info("consensus of %d members at K=%d: members agree at ARI %.3f; mean confidence %.3f; %d tiles nearer "
             "another consensus centroid", len(members), k, result.agreement, float(result.confidence.mean()),
             int((labels != result.labels).sum()))
    inertia = float(dist[np.arange(s.n), result.labels].sum(dtype=np.float64))
    m = taxonomy_metrics(Grid.load(grid), s, s.tile_ids, result.labels, inertia,
                         truth=load_npz(truth)["classes"] if truth else None, seed=params.seed)
    m.update({"model": model, "dates": s.dates.tolist(), "members": len(members),
              "seed_agreement": result.agreement, "confidence": float(result.confidence.mean())})
    save_npz(out, labels=result.labels, centroids=centroids, tile_ids=s.tile_ids, dates=s.dates)
    save_npz(distances, distances=dist)
    save_npz(confidence, tile_ids=s.tile_ids, confidence=result.confidence)
    write_json(metrics, m)
