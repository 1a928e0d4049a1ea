"""Reading a taxonomy: representatives, interpolation, semantic graph, projections, stability, K.

Everything here works on the (N, T, D) series and one clustering (labels, K x T x D centroids)
with Euclidean distances between whole series (flattened to T*D), the metric the K-means uses.
The series is an array or a series on disk (:class:`landtaxa.clustering.series.Series`), read block by
block (distances to centroids, PCA colours) or sampled (projections; the PCA's fit when the
series is larger than :data:`landtaxa.clustering.series.MEMORY_BYTES`): no step holds it whole. The
representatives step reads no series at all: it chooses its tiles from the clustering's
distances of every tile to every centroid (:func:`representatives_from_distances`,
:func:`closest_on_segment`).
The ``write_*`` functions write one product each (atomically) and the ``*_step`` functions are
the workflow's steps; the figures themselves are drawn by :mod:`landtaxa.products.figures`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np

from landtaxa.clustering.clusters import cluster_series, flat_blocks, sq_distance_blocks
from landtaxa.clustering.metrics import adjusted_rand
from landtaxa.clustering.series import MEMORY_BYTES, ArraySeries, as_series, sample_rows
from landtaxa.inputs.grid import tile_areas_km2
from landtaxa.params import AnalysisParams, ClusterParams, RepresentativesParams, StabilityParams
from landtaxa.products import figures
from landtaxa.products.evolution import transitions
from landtaxa.products.figures import plot_k_choice
from landtaxa.products.rasters import write_rgb_map
from landtaxa.products.tables import write_kinds_table
from landtaxa.products.taxonomy import Taxonomy
from landtaxa.storage import atomic_path, get_logger, load_npz, read_json, write_json

log = get_logger()


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a.reshape(len(a), int(np.prod(a.shape[1:], dtype=np.int64)))


def centroid_distances(centroids: np.ndarray) -> np.ndarray:
    """(K, K) Euclidean distances between whole centroid series (float64)."""
    c = _flat(centroids).astype(np.float64)
    sq = (c * c).sum(1)
    return np.sqrt(np.maximum(sq[:, None] - 2 * c @ c.T + sq[None], 0.0))


def representatives(series, labels: np.ndarray, centroids: np.ndarray, n: int) -> list[np.ndarray]:
    """For each cluster, the indexes (into ``series``) of its ``n`` members closest to its centroid."""
    return representatives_and_closest(series, labels, centroids, n, centroids[:0])[0]


def interpolate(centroids: np.ndarray, a: int, b: int, weights: list[float]) -> np.ndarray:
    """(W, T, D) points (1 - w) * centroid a + w * centroid b for each weight w."""
    w = np.asarray(weights, np.float64)[:, None, None]
    return ((1 - w) * centroids[a][None] + w * centroids[b][None]).astype(np.float32)


def closest(series, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the series closest to each point (M, T, D), and its Euclidean distance."""
    _, idx, dist = representatives_and_closest(series, np.zeros(0, np.int64), points[:0], 0, points)
    return idx, dist


def representatives_and_closest(series, labels: np.ndarray, centroids: np.ndarray, n: int,
                                points: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """:func:`representatives` and :func:`closest` to ``points`` in one pass over the series (the workflow's step
    takes both from the clustering's distances instead: :func:`representatives_from_distances`)."""
    cen, pts = _flat(centroids), _flat(points)
    k = len(cen)
    own = np.empty(len(labels), np.float32)  # each series' squared distance to its own centroid
    best = np.full(len(pts), np.inf)
    idx = np.zeros(len(pts), np.int64)
    cols = np.arange(len(pts))
    both = np.concatenate([cen, pts])
    for positions, flat in flat_blocks(series):
        for start, d in sq_distance_blocks(flat, both):
            rows = positions[start:start + len(d)]
            if k:
                own[rows] = d[np.arange(len(d)), labels[rows]]
            if len(pts):
                near = np.argmin(d[:, k:], axis=0)
                dist = d[near, k + cols]
                closer = dist < best
                best[closer] = dist[closer]
                idx[closer] = rows[near[closer]]
    reps = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        reps.append(members[np.argsort(own[members], kind="stable")[:n]])
    return reps, idx, np.sqrt(best)


def representatives_from_distances(labels: np.ndarray, distances: np.ndarray, n: int) -> list[np.ndarray]:
    """:func:`representatives` from (N, K) squared distances of the series to the centroids (the clustering's own,
    :attr:`landtaxa.clustering.clusters.Clustering.distances`), without the series."""
    own = distances[np.arange(len(labels)), labels]
    reps = []
    for c in range(distances.shape[1]):
        members = np.flatnonzero(labels == c)
        reps.append(members[np.argsort(own[members], kind="stable")[:n]])
    return reps


def closest_on_segment(distances: np.ndarray, centroids: np.ndarray, a: int, b: int,
                       weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`closest` to the points of :func:`interpolate` from (N, K) squared distances to the centroids alone.

    For p = (1 - w) c_a + w c_b, |x - p|^2 = (1 - w) |x - c_a|^2 + w |x - c_b|^2 - w (1 - w) |c_a - c_b|^2:
    each point's closest series needs only every series' distances to the two centroids.
    """
    da, db = distances[:, a].astype(np.float64), distances[:, b].astype(np.float64)
    gap = float(centroid_distances(centroids[[a, b]])[0, 1]) ** 2
    idx = np.zeros(len(weights), np.int64)
    dist = np.zeros(len(weights))
    for i, w in enumerate(weights):
        mix = (1 - w) * da + w * db
        idx[i] = np.argmin(mix)
        dist[i] = np.sqrt(max(mix[idx[i]] - w * (1 - w) * gap, 0.0))
    return idx, dist


def minimum_spanning_tree(centroids: np.ndarray) -> list[tuple[int, int, float]]:
    """Edges (i, j, distance), i < j, of the minimum spanning tree over centroid distances (Prim)."""
    dist = centroid_distances(centroids)
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


def stability(series, labels: np.ndarray, k: int, seeds: list[int], params: ClusterParams) -> dict:
    """Agreement of the clustering with re-runs from other seeds.

    Returns ``ari`` ((R+1) x (R+1) pairwise ARI, the given clustering first), ``seeds`` and
    ``jaccard`` (K,): for each cluster, the mean over re-runs of its best Jaccard overlap with
    a cluster of the re-run (1 = found again every time; below about 0.5 = not reproducible).
    """
    runs = [labels] + [cluster_series(series, k, dataclasses.replace(params, seed=s)).labels for s in seeds]
    r = len(runs)
    ari = np.eye(r)
    for i in range(r):
        for j in range(i + 1, r):
            ari[i, j] = ari[j, i] = adjusted_rand(runs[i], runs[j])
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


def series_pca_rgb(series, seed: int = 0) -> np.ndarray:
    """(N, 3) colours in [0, 1]: the first three principal components of each whole series.

    A series on disk larger than :data:`landtaxa.clustering.series.MEMORY_BYTES` is not read whole: the
    components are fitted on a sample of as many series as fit (drawn with ``seed``) and every
    series is projected on them block by block.
    """
    from sklearn.decomposition import PCA

    src = as_series(series)
    n, f = src.n, src.n_features
    n_comp = min(3, n, f)
    if isinstance(src, ArraySeries) or src.nbytes <= MEMORY_BYTES:
        comps = PCA(n_components=n_comp, random_state=seed).fit_transform(src.load().reshape(n, -1))
    else:
        rows = sample_rows(src, max(n_comp, MEMORY_BYTES // (4 * f)), np.random.RandomState(seed))
        pca = PCA(n_components=n_comp, random_state=seed).fit(src.take(rows).reshape(len(rows), -1))
        comps = np.empty((n, n_comp))
        for positions, flat in flat_blocks(src):
            comps[positions] = pca.transform(flat)
    lo, hi = np.percentile(comps, [1, 99], axis=0)
    rgb = np.full((n, 3), 0.5)
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
    dist = np.sqrt(centroid_distances(centroids))
    np.fill_diagonal(dist, 0.0)
    return MDS(n_components=2, metric="precomputed", n_init=4, init="random", random_state=seed,
               max_iter=500).fit_transform(dist)


# --------------------------------------------------------------------------- products


def _csv(frame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_series_pca(grid, tile_ids: np.ndarray, series, seed: int, title: str, out_tif: str,
                     out_png: str) -> None:
    """Every tile coloured by a 3-component PCA of its whole series: RGBA COG and picture."""

    rgb = series_pca_rgb(series, seed=seed)
    write_rgb_map(grid, tile_ids, rgb, out_tif)
    rgba = np.zeros((grid.n_tiles, 4))
    rgba[tile_ids, :3], rgba[tile_ids, 3] = rgb, 1.0
    figures.plot_rgb_map(rgba.reshape(grid.n_rows, grid.n_cols, 4), title, out_png)


def write_graph(centroids: np.ndarray, sizes: np.ndarray, colours: np.ndarray, seed: int, title: str,
                out_dir: str) -> list[tuple[int, int, float]]:
    """The semantic graph (MST over centroid distances): graph.png, graph.graphml, graph_edges.csv."""
    import pandas as pd

    edges = minimum_spanning_tree(centroids)
    write_graphml(f"{out_dir}/graph.graphml", sizes, colours, edges)
    _csv(pd.DataFrame(edges, columns=["source", "target", "distance"]), f"{out_dir}/graph_edges.csv")
    figures.plot_graph(centroid_layout(centroids, seed), sizes, colours, edges, title, f"{out_dir}/graph.png")
    return edges


def write_representatives(grid, aligned: Sequence[str], tile_ids: np.ndarray, reps: list[np.ndarray],
                          dates: Sequence[str], rgb_bands: Sequence[int] | None, colours: np.ndarray, title: str,
                          out_dir: str) -> None:
    """The tiles closest to each centroid (``reps``: :func:`representatives`), date by date: representatives.png
    and .csv."""
    import pandas as pd

    flat = np.concatenate(reps)
    images = figures.tile_images(grid, aligned, tile_ids[flat], rgb_bands)
    figures.plot_representatives(images, reps, tile_ids, colours, dates, title, f"{out_dir}/representatives.png")
    _csv(pd.DataFrame({"cluster": np.repeat(np.arange(len(reps)), [len(r) for r in reps]),
                       "rank": np.concatenate([np.arange(len(r)) for r in reps]), "tile_id": tile_ids[flat]}),
         f"{out_dir}/representatives.csv")


def interpolation_weights(k: int, pair: Sequence[int], weights: Sequence[float]) -> list[float]:
    """0, ``weights``, 1: the points from centroid ``pair[0]`` to ``pair[1]`` (refused unless two of 0..k-1)."""
    if len(pair) != 2 or max(pair) >= k or min(pair) < 0 or pair[0] == pair[1]:
        raise ValueError(f"analysis.interpolate must name two different clusters of 0..{k - 1}, got {list(pair)}")
    return [0.0, *weights, 1.0]


def write_interpolation(grid, aligned: Sequence[str], tile_ids: np.ndarray, labels: np.ndarray,
                        pair: Sequence[int], weights: Sequence[float], idx: np.ndarray, dist: np.ndarray,
                        dates: Sequence[str], rgb_bands: Sequence[int] | None, title: str, out_dir: str) -> None:
    """The real sequences (``idx``, at ``dist``: :func:`closest`) closest to (1 - w) a + w b for each of
    :func:`interpolation_weights`: interpolation.png and .csv."""
    import pandas as pd

    images = figures.tile_images(grid, aligned, tile_ids[idx], rgb_bands)
    figures.plot_interpolation(images, weights, tile_ids[idx], labels[idx], dist, dates,
                               f"from cluster {pair[0]} (w=0) to cluster {pair[1]} (w=1): {title}",
                               f"{out_dir}/interpolation.png")
    _csv(pd.DataFrame({"w": weights, "tile_id": tile_ids[idx], "cluster": labels[idx], "distance": dist}),
         f"{out_dir}/interpolation.csv")


def write_stability(series, labels: np.ndarray, k: int, params: StabilityParams, colours: np.ndarray,
                    title: str, out_json: str, out_png: str) -> dict:
    """Agreement with K-means re-runs from seeds seed+1..seed+restarts: stability.json and .png."""

    seeds = [params.seed + 1 + i for i in range(params.restarts)]
    st = stability(series, labels, k, seeds, params)
    figures.plot_stability(st["ari"], st["jaccard"], colours, seeds, f"stability over {len(seeds)} re-runs: {title}",
                           out_png)
    off = st["ari"][np.triu_indices(len(st["ari"]), 1)]
    out = {"seeds": seeds, "ari": st["ari"].tolist(), "mean_ari": float(off.mean()) if len(off) else 1.0,
           "min_ari": float(off.min()) if len(off) else 1.0, "jaccard": st["jaccard"].tolist()}
    write_json(out_json, out)
    return out


K_CHOICE_KEYS = ("k", "inertia", "silhouette", "geo_silhouette", "calinski_harabasz", "ari", "nmi")


def write_k_choice(metrics: Sequence[dict], model: str, out_csv: str, out_png: str) -> int:
    """The metrics against K (table and figure); returns the K the silhouette prefers."""
    import pandas as pd

    table = sorted(({key: m[key] for key in K_CHOICE_KEYS if key in m} for m in metrics), key=lambda r: r["k"])
    best = best_k(table)
    for row in table:
        row["silhouette_best"] = row["k"] == best
    _csv(pd.DataFrame(table), out_csv)
    plot_k_choice(table, best, f"choice of K, {model} model", out_png)
    return best


# --------------------------------------------------------------------------- steps


def analysis_step(*, grid: str, series: str, clusters: str, model: str, out_dir: str, params: AnalysisParams) -> None:
    """What needs only the series and one clustering: series PCA map, semantic graph, projections."""
    import time

    t0 = time.perf_counter()
    t = Taxonomy.load(grid=grid, series=series, clusters=clusters)
    x, name = t.series, t.title(model)
    os.makedirs(out_dir, exist_ok=True)
    write_series_pca(t.grid, t.tile_ids, x, params.seed, f"PCA colours of every tile's series: {name}",
                     f"{out_dir}/series_pca.tif", f"{out_dir}/series_pca.png")
    write_graph(t.centroids, np.bincount(t.labels, minlength=t.k), t.colours, params.seed,
                f"semantic graph (MST of centroid distances): {name}", out_dir)
    log.info("series PCA and graph done (%.1f s)", time.perf_counter() - t0)
    sub = subsample(x.n, params.projection_tiles, params.seed)
    figures.plot_projections(projections(x.take(sub), params.seed), t.labels[sub], t.colours,
                             f"{len(sub)} of {x.n} series: {name}", f"{out_dir}/projections.png")
    log.info("projections of %d series done (%.1f s)", len(sub), time.perf_counter() - t0)


def representatives_step(*, grid: str, series: str, clusters: str, distances: str, aligned: list[str], model: str,
                         out_dir: str, params: RepresentativesParams) -> None:
    """What shows the tiles themselves (read from the aligned dates): representatives and interpolation.

    The tiles are chosen from the clustering's distances of every tile to every centroid (``distances``,
    written by the clustering's last pass): the series itself is not read again.
    """

    t = Taxonomy.load(grid=grid, series=series, clusters=clusters)
    g, tile_ids, labels, cen, dates = t.grid, t.tile_ids, t.labels, t.centroids, t.dates
    dist_all = load_npz(distances)["distances"]
    if dist_all.shape != (len(labels), len(cen)):
        raise ValueError(f"{distances}: distances of {dist_all.shape[0]} tiles to {dist_all.shape[1]} centroids, but "
                         f"{clusters} holds {len(labels)} tiles and {len(cen)} centroids; rerun the clustering")
    if len(aligned) != len(dates):
        raise ValueError(f"{len(aligned)} aligned images for the series' {len(dates)} dates")
    rgb_bands = params.rgb_bands
    if rgb_bands and g.n_bands < 3:
        log.info("%d band(s): tiles shown as the first band on a colour ramp", g.n_bands)
        rgb_bands = None
    if rgb_bands and max(rgb_bands) > g.n_bands:
        raise ValueError(f"analysis.rgb_bands {rgb_bands} asks for band {max(rgb_bands)} of {g.n_bands}")
    name = t.title(model)
    os.makedirs(out_dir, exist_ok=True)
    pair = params.interpolate or [0, 1]
    weights = interpolation_weights(len(cen), pair, params.weights)
    reps = representatives_from_distances(labels, dist_all, params.representatives)
    idx, dist = closest_on_segment(dist_all, cen, pair[0], pair[1], weights)
    write_representatives(g, aligned, tile_ids, reps, dates, rgb_bands, t.colours, f"representatives: {name}",
                          out_dir)
    write_interpolation(g, aligned, tile_ids, labels, pair, weights, idx, dist, dates, rgb_bands, name, out_dir)
    log.info("representatives and interpolation: tiles read on %d dates", len(dates))


def stability_step(*, series: str, clusters: str, model: str, out: str, png: str, params: StabilityParams) -> None:
    """How much of the clustering comes back from other K-means seeds (ARI, per-cluster Jaccard)."""

    t = Taxonomy.load(series=series, clusters=clusters)
    st = write_stability(t.series, t.labels, t.k, params, t.colours, t.title(model), out, png)
    log.info("stability over %d re-runs: mean ARI %.3f", params.restarts, st["mean_ari"])


def kchoice_step(*, inputs: list[str], model: str, png: str, csv: str) -> None:
    """The metrics against K of one model (its clusterings' metrics files)."""
    best = write_k_choice([read_json(p) for p in inputs], model, csv, png)
    log.info("choice of K (%s): the silhouette prefers K=%d", model, best)


def kinds_step(*, grid: str, series: str, clusters: str, stability: str, kinds: str, model: str, csv: str,
               json: str) -> None:
    """One row per kind of land: tiles, km2, share, mean valid dates, stability and its usual changes."""

    t = Taxonomy.load(grid=grid, series=series, clusters=clusters, kinds=kinds)
    table = write_kinds_table(
        csv, json, t.labels, t.k, tile_areas_km2(t.grid, t.tile_ids), t.series.valid.sum(axis=1),
        np.asarray(read_json(stability)["jaccard"]), transitions(t.kind, t.k), t.dates, class_labels=t.names,
        colours=t.colours, meta={"model": model, "k": t.k})
    log.info("kinds of %s, K=%d: %s km2 in all", model, t.k, f"{table['km2'].sum():.1f}")
