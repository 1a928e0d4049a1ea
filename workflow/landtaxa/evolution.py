"""Evolution of the taxonomy over time: the kind of every tile on every date.

The clusters describe whole series. To follow a tile date by date, each tile is assigned on
every date t to the cluster whose centroid is closest on that date's slice (``nearest``).
Two clusters can look the same on one date (a clear-cut and the forest it was cut from,
before the cut; evergreen and deciduous forest in summer): their centroid slices then nearly
coincide and the nearest one is a coin toss. So on each date, clusters whose slices cannot be
told apart are grouped: two clusters cannot be told apart on a date when, counting only their
own members and only those two centroid slices, at least ``merge_overlap`` of the members lie
closer to the other cluster's slice than to their own (0.5 = indistinguishable, 0 = fully
separate), a scale-free test that holds in any embedding dimension.

A tile's ``kind`` on the first date is the largest cluster (the smallest label: labels are
numbered by decreasing size) of its nearest slice's group; on each later date it keeps its
kind while that kind stays in the group of its nearest slice, and otherwise takes that group's
largest cluster. So a forest stays forest on the dates it looks like another kind, and a
clear-cut that the clustering puts in a cluster of its own is forest until the date its slice
parts from the forest's. A tile changes kind between consecutive dates when its kind differs;
the change is lasting when the tile never returns to a kind it held before (a clear-cut, not a
seasonal swing that comes back within the sequence).
"""

from __future__ import annotations

import numpy as np


def date_groups(x_t: np.ndarray, c_t: np.ndarray, labels: np.ndarray, merge_overlap: float) -> np.ndarray:
    """For one date: the kind (smallest label of its group) of each of the K clusters.

    ``x_t`` (N, D) the tiles on that date, ``c_t`` (K, D) the centroid slices, ``labels`` (N,)
    the whole-series clusters. Groups are the connected components of "cannot be told apart".
    """
    k = len(c_t)
    parent = np.arange(k)

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    d_own = np.linalg.norm(x_t - c_t[labels], axis=1)
    for a in range(k):
        for b in range(a + 1, k):
            members = (labels == a) | (labels == b)
            if not members.any():
                continue
            other = np.where(labels[members] == a, b, a)
            d_other = np.linalg.norm(x_t[members] - c_t[other], axis=1)
            if np.mean(d_other < d_own[members]) >= merge_overlap:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(k)])


def per_date_labels(
    series: np.ndarray, centroids: np.ndarray, labels: np.ndarray, merge_overlap: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) nearest-slice cluster and (N, T) kind of every tile on every date (module docstring)."""
    n, t, _ = series.shape
    nearest = np.empty((n, t), np.int64)
    kind = np.empty((n, t), np.int64)
    for d in range(t):
        x, c = series[:, d].astype(np.float32), centroids[:, d].astype(np.float32)
        dist = (c * c).sum(1)[None] - 2 * x @ c.T
        nearest[:, d] = np.argmin(dist, axis=1)
        group = date_groups(x, c, labels, merge_overlap)
        kind[:, d] = group[nearest[:, d]]
        if d > 0:
            stays = group[kind[:, d - 1]] == kind[:, d]
            kind[stays, d] = kind[stays, d - 1]
    return nearest, kind


def transitions(kind: np.ndarray, k: int) -> np.ndarray:
    """(T-1, K, K) counts: [t, a, b] = tiles of kind a on date t and kind b on date t+1."""
    n, t = kind.shape
    out = np.zeros((max(t - 1, 0), k, k), np.int64)
    for d in range(t - 1):
        np.add.at(out[d], (kind[:, d], kind[:, d + 1]), 1)
    return out


def changes(kind: np.ndarray) -> np.ndarray:
    """(N, T-1) bool: the tile's kind on date t+1 differs from its kind on date t."""
    return kind[:, 1:] != kind[:, :-1]


def lasting_changes(kind: np.ndarray) -> np.ndarray:
    """(N, T-1) bool: a change between dates t and t+1 after which the tile never again holds a
    kind it held up to t (a clear-cut; not a seasonal swing that comes back within the sequence)."""
    n, t = kind.shape
    k = int(kind.max()) + 1 if kind.size else 0
    held = np.zeros((n, t, k), bool)
    held[np.arange(n)[:, None], np.arange(t)[None], kind] = True
    before = np.logical_or.accumulate(held, axis=1)[:, :-1]
    after = np.logical_or.accumulate(held[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return ~(before & after).any(-1)
