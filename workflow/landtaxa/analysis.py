"""Reading a taxonomy: representatives, interpolation, semantic graph, projections, stability.

Everything here works on the (N, T, D) series and one clustering (labels, K x T x D centroids)
with Euclidean distances between whole series (flattened to T*D), the metric the K-means uses.
The figures drawing these live in :mod:`landtaxa.figures`.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

import numpy as np
from sklearn.metrics import adjusted_rand_score

from landtaxa.storage import atomic_path


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).reshape(len(a), -1)


def sq_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances between rows of ``x`` (N, F) and ``c`` (M, F)."""
    x, c = np.asarray(x, np.float64), np.asarray(c, np.float64)
    return np.maximum((x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None], 0.0)


def representatives(series: np.ndarray, labels: np.ndarray, centroids: np.ndarray, n: int) -> list[np.ndarray]:
    """For each cluster, the indexes (into ``series``) of its ``n`` members closest to its centroid."""
    flat, cen = _flat(series), _flat(centroids)
    out = []
    for k in range(len(cen)):
        members = np.flatnonzero(labels == k)
        d = sq_distances(flat[members], cen[k : k + 1])[:, 0]
        out.append(members[np.argsort(d, kind="stable")[:n]])
    return out


def interpolate(centroids: np.ndarray, a: int, b: int, weights: list[float]) -> np.ndarray:
    """(W, T, D) points (1 - w) * centroid a + w * centroid b for each weight w."""
    w = np.asarray(weights, np.float64)[:, None, None]
    return ((1 - w) * centroids[a][None] + w * centroids[b][None]).astype(np.float32)


def closest(series: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the series closest to each point (M, T, D), and its Euclidean distance."""
    d = sq_distances(_flat(series), _flat(points))
    idx = np.argmin(d, axis=0)
    return idx, np.sqrt(d[idx, np.arange(len(idx))])


def minimum_spanning_tree(centroids: np.ndarray) -> list[tuple[int, int, float]]:
    """Edges (i, j, distance), i < j, of the minimum spanning tree over centroid distances (Prim)."""
    dist = np.sqrt(sq_distances(_flat(centroids), _flat(centroids)))
    k = len(dist)
    in_tree = np.zeros(k, bool)
    in_tree[0] = True
    best = dist[0].copy()
    link = np.zeros(k, np.int64)
    edges = []
    for _ in range(k - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        i = int(link[j])
        edges.append((min(i, j), max(i, j), float(dist[i, j])))
        in_tree[j] = True
        closer = dist[j] < best
        best[closer], link[closer] = dist[j][closer], j
    return sorted(edges, key=lambda e: e[2])


def write_graphml(path: str | os.PathLike, sizes: np.ndarray, colours: np.ndarray,
                  edges: list[tuple[int, int, float]]) -> None:
    """The semantic graph as GraphML: nodes with size and colour (#rrggbb), edges with distance."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
        '  <key id="size" for="node" attr.name="size" attr.type="int"/>',
        '  <key id="colour" for="node" attr.name="colour" attr.type="string"/>',
        '  <key id="distance" for="edge" attr.name="distance" attr.type="double"/>',
        '  <graph id="semantic_graph" edgedefault="undirected">',
    ]
    for k, (size, col) in enumerate(zip(sizes, colours, strict=True)):
        hexcol = "#" + "".join(f"{int(round(255 * v)):02x}" for v in col)
        lines.append(f'    <node id="c{k}"><data key="size">{int(size)}</data>'
                     f'<data key="colour">{escape(hexcol)}</data></node>')
    for i, j, w in edges:
        lines.append(f'    <edge source="c{i}" target="c{j}"><data key="distance">{w:.6g}</data></edge>')
    lines += ["  </graph>", "</graphml>", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def subsample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indexes of at most ``size`` of ``n`` items, drawn with ``seed``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def projections(series: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """2-D t-SNE and metric MDS of the given series (subsample them first when N is large).

    Both start from the first 50 principal components of the flattened series, which keeps
    the cost independent of T*D and loses little of the Euclidean geometry.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import MDS, TSNE

    flat = _flat(series)
    n = len(flat)
    z = PCA(n_components=min(50, n, flat.shape[1]), random_state=seed).fit_transform(flat)
    tsne = TSNE(n_components=2, perplexity=min(30.0, max(2.0, (n - 1) / 3)), init="pca",
                random_state=seed).fit_transform(z)
    mds = MDS(n_components=2, n_init=1, max_iter=200, random_state=seed, metric_mds=True,
              init="classical_mds").fit_transform(z)
    return {"tsne": tsne.astype(np.float32), "mds": mds.astype(np.float32)}


def stability(series: np.ndarray, labels: np.ndarray, k: int, seeds: list[int], **kmeans_args) -> dict:
    """Agreement of the clustering with re-runs from other seeds.

    Returns ``ari`` ((R+1) x (R+1) pairwise ARI, the given clustering first), ``seeds`` and
    ``jaccard`` (K,): for each cluster, the mean over re-runs of its best Jaccard overlap with
    a cluster of the re-run (1 = found again every time; below about 0.5 = not reproducible).
    """
    from landtaxa.clusters import kmeans_series

    runs = [labels] + [kmeans_series(series, k, seed=s, **kmeans_args).labels for s in seeds]
    r = len(runs)
    ari = np.eye(r)
    for i in range(r):
        for j in range(i + 1, r):
            ari[i, j] = ari[j, i] = adjusted_rand_score(runs[i], runs[j])
    jac = np.zeros(k)
    for other in runs[1:]:
        for c in range(k):
            a = labels == c
            best = 0.0
            for c2 in np.unique(other[a]):
                b = other == c2
                best = max(best, (a & b).sum() / (a | b).sum())
            jac[c] += best / max(len(runs) - 1, 1)
    return {"seeds": list(seeds), "ari": ari, "jaccard": jac}


def series_pca_rgb(series: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 3) colours in [0, 1]: the first three principal components of each whole series."""
    from sklearn.decomposition import PCA

    flat = _flat(series)
    n_comp = min(3, *flat.shape)
    comps = PCA(n_components=n_comp, random_state=seed).fit_transform(flat)
    lo, hi = np.percentile(comps, [1, 99], axis=0)
    rgb = np.full((len(flat), 3), 0.5)
    rgb[:, :n_comp] = np.clip((comps - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    return rgb


def best_k(table: list[dict], key: str = "silhouette") -> int:
    """The K of the row with the highest ``key`` (the smallest K on ties)."""
    rows = sorted(table, key=lambda r: (-r[key], r["k"]))
    return int(rows[0]["k"])


def centroid_layout(centroids: np.ndarray, seed: int = 0) -> np.ndarray:
    """(K, 2) positions of the centroids for drawing the graph.

    Metric MDS of the square roots of the centroid distances: near clusters stay near, far ones
    far, and close pairs are spread enough to be read (plain distances crowd them together).
    """
    from sklearn.manifold import MDS

    k = len(centroids)
    if k < 3:
        return np.array([[0.0, 0.0], [1.0, 0.0]])[:k]
    dist = np.sqrt(np.sqrt(sq_distances(_flat(centroids), _flat(centroids))))
    np.fill_diagonal(dist, 0.0)
    return MDS(n_components=2, metric="precomputed", n_init=4, init="random", random_state=seed,
               max_iter=500).fit_transform(dist)
