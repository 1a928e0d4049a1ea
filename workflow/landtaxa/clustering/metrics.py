"""Quality of a taxonomy: in embedding space, in geographic space, against a truth.

- ``inertia``: K-means objective (sum of squared distances to the centroids);
- ``silhouette``: silhouette of the clusters with Euclidean distance between series (on a
  sample of 10,000 series beyond that, as scikit-learn's ``sample_size``: only those are read);
- ``geo_silhouette`` and ``calinski_harabasz``: the same clusters in geographic space
  (tile row/column), high when clusters form compact, connected regions;
- ``ari`` and ``nmi``: agreement with a reference class raster taken to tiles by
  majority vote, over the tiles that have a reference class.

The scores are computed here with numpy, with scikit-learn's definitions (its ``silhouette_samples``,
``calinski_harabasz_score``, ``adjusted_rand_score`` and ``normalized_mutual_info_score`` with the
arithmetic mean; ``tests/test_metrics.py`` checks them against it): importing scikit-learn loads
scipy.stats and pandas, about 2 s, which was half of a clustering job on the demo.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from landtaxa.clustering.series import as_series
from landtaxa.inputs.datasets import open_georeferenced
from landtaxa.inputs.grid import Grid, tile_areas_km2, window_tile_ids, windows
from landtaxa.params import MetricsParams, TruthParams
from landtaxa.storage import atomic_path, get_logger, load_npz, read_json, save_npz, write_json

WORKING_MB = 64  # the pairwise distances of the silhouettes are worked out this many MB of them at a time


def truth_tiles(grid: Grid, truth_path: str | os.PathLike, window_px: int = 1024) -> np.ndarray:
    """Majority reference class of every grid tile; -1 where a tile has no reference pixel.

    The truth is read onto the grid window by window (:func:`landtaxa.inputs.grid.windows`): the job holds one."""
    out = np.full(grid.n_tiles, -1, np.int64)
    ts = grid.tile_size
    with open_georeferenced(truth_path, "truth raster") as src:
        nodata = src.nodata
        with WarpedVRT(
            src, crs=grid.crs, transform=grid.affine, width=grid.width, height=grid.height,
            resampling=Resampling.nearest, add_alpha=True,
        ) as vrt:
            for r0, c0, win in windows(grid, window_px):
                cls = vrt.read(1, window=win).astype(np.int64)
                ok = vrt.read(vrt.count, window=win) > 0
                if nodata is not None:
                    ok &= cls != nodata
                nr, nc = win.height // ts, win.width // ts
                blocks = cls.reshape(nr, ts, nc, ts).transpose(0, 2, 1, 3).reshape(-1, ts * ts)
                okb = ok.reshape(nr, ts, nc, ts).transpose(0, 2, 1, 3).reshape(-1, ts * ts)
                ids = window_tile_ids(grid, r0, c0, win)
                for i in np.flatnonzero(okb.any(axis=1)):
                    out[ids[i]] = np.bincount(blocks[i][okb[i]]).argmax()
    if (out >= 0).sum() == 0:
        raise ValueError(f"{truth_path}: the truth raster does not overlap the region")
    return out


def _encoded(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as 0..k-1 (in sorted order of the values) and k."""
    values, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.reshape(-1), len(values)


def silhouette_samples(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette of every row of (n, F) float64 ``x`` with Euclidean distances: (b - a) / max(a, b), ``a`` its
    mean distance to the rest of its cluster, ``b`` the smallest mean distance to another cluster; 0 for a row
    alone in its cluster. Distances as ``sqrt(|a|^2 + |b|^2 - 2 a.b)``, :data:`WORKING_MB` of them at a time."""
    codes, k = _encoded(labels)
    n = len(x)
    if not 2 <= k <= n - 1:
        raise ValueError(f"the silhouette needs 2 to n - 1 = {n - 1} clusters, got {k}")
    norms = np.einsum("ij,ij->i", x, x)
    counts = np.bincount(codes, minlength=k)
    onehot = np.zeros((n, k), np.float64)
    onehot[np.arange(n), codes] = 1.0
    sums = np.empty((n, k), np.float64)  # per row, its summed distance to each cluster
    step = max(1, (WORKING_MB << 20) // (8 * n))
    for s0 in range(0, n, step):
        rows = slice(s0, min(n, s0 + step))
        d = -2 * (x[rows] @ x.T)
        d += norms[rows, None]
        d += norms[None, :]
        np.maximum(d, 0, out=d)
        np.sqrt(d, out=d)
        d[np.arange(rows.stop - s0), np.arange(s0, rows.stop)] = 0.0  # a row's distance to itself
        sums[rows] = d @ onehot
    own = counts[codes]
    a = sums[np.arange(n), codes] / np.maximum(own - 1, 1)
    sums /= counts
    sums[np.arange(n), codes] = np.inf
    b = sums.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (b - a) / np.maximum(a, b)
    out[own == 1] = 0.0
    return np.nan_to_num(out)


def silhouette(series, labels: np.ndarray, sample_size: int, seed: int) -> float:
    """scikit-learn's ``silhouette_score(flat, labels, sample_size=..., random_state=seed)``: the mean
    :func:`silhouette_samples` of the series its draw picks, reading only those (an array or a series on disk),
    in float64 (one copy of the sample, not of the series)."""
    src = as_series(series)
    rows = np.random.RandomState(seed).permutation(src.n)[:sample_size]  # silhouette_score's own draw
    x = np.empty((len(rows), src.n_features), np.float64)
    order = np.argsort(rows)  # read in pieces of neighbouring tiles: each chunk once, no float32 copy beside x
    for s0 in range(0, len(rows), 1024):
        part = order[s0:s0 + 1024]
        x[part] = src.take(rows[part]).reshape(len(part), -1)
    return float(np.mean(silhouette_samples(x, labels[rows])))


def calinski_harabasz(x: np.ndarray, labels: np.ndarray) -> float:
    """Between-cluster over within-cluster dispersion of (n, F) ``x``, each divided by its degrees of freedom
    (k - 1 and n - k); 1.0 when every cluster is a single point."""
    codes, k = _encoded(labels)
    n = len(x)
    if not 2 <= k <= n - 1:
        raise ValueError(f"the Calinski-Harabasz score needs 2 to n - 1 = {n - 1} clusters, got {k}")
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    between = within = 0.0
    for c in range(k):
        members = x[codes == c]
        centre = members.mean(axis=0)
        between += len(members) * float(((centre - mean) ** 2).sum())
        within += float(((members - centre) ** 2).sum())
    return 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1.0))


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ca, ka = _encoded(a)
    cb, kb = _encoded(b)
    return np.bincount(ca * kb + cb, minlength=ka * kb).reshape(ka, kb).astype(np.int64)


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same items (1 = the same partition, about 0 = chance),
    from the pairs of items they put together or apart."""
    table = _contingency(a, b)
    n = int(table.sum())
    together = int((table.astype(object) ** 2).sum()) - n  # ordered pairs together in both
    rows = int((table.sum(axis=1).astype(object) ** 2).sum()) - n
    cols = int((table.sum(axis=0).astype(object) ** 2).sum()) - n
    only_a, only_b = rows - together, cols - together
    apart = n * n - n - together - only_a - only_b
    if only_a == only_b == 0:
        return 1.0
    return float(2.0 * (together * apart - only_a * only_b)
                 / ((together + only_a) * (only_a + apart) + (together + only_b) * (only_b + apart)))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information of two labellings over the arithmetic mean of their entropies (1 = the same
    partition, 0 = independent)."""
    table = _contingency(a, b)
    if table.shape[0] == table.shape[1] == 1 or table.size == 0:
        return 1.0
    n = table.sum()
    i, j = np.nonzero(table)
    nij = table[i, j].astype(np.float64)
    outer = table.sum(axis=1)[i].astype(np.float64) * table.sum(axis=0)[j].astype(np.float64)
    mi = float(max((nij / n * (np.log(nij) + np.log(n) - np.log(outer))).sum(), 0.0))  # sum p_ij log p_ij/(p_i p_j)
    if mi == 0:
        return 0.0
    return mi / ((_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2)


def taxonomy_metrics(
    grid: Grid,
    series,
    tile_ids: np.ndarray,
    labels: np.ndarray,
    inertia: float,
    truth: np.ndarray | None = None,
    seed: int = 0,
    sample_size: int = 10000,
) -> dict:
    """All metrics of one clustering as a JSON-ready dict.

    ``series`` is an (N, T, D) array or a series on disk (:class:`landtaxa.clustering.series.Series`): the
    silhouette reads only its ``sample_size`` sampled series (exact up to that N); the inertia is
    the clustering's own; the geographic metrics need the tile ids only.
    """
    src = as_series(series)
    n, t = src.n, src.shape[1]
    k = int(labels.max()) + 1
    sample = min(sample_size, n)
    out: dict = {
        "k": k,
        "n_tiles": int(n),
        "n_dates": int(t),
        "inertia": float(inertia),
        "silhouette": silhouette(src, labels, sample, seed),
    }
    rows, cols = grid.tile_rowcol(tile_ids)
    coords = np.stack([rows, cols], axis=1).astype(np.float64)
    out["geo_silhouette"] = silhouette(coords, labels, sample, seed)
    out["calinski_harabasz"] = calinski_harabasz(coords, labels)
    if truth is not None:
        ref = truth[tile_ids]
        has = ref >= 0
        out["ari"] = adjusted_rand(ref[has], labels[has])
        out["nmi"] = normalized_mutual_info(ref[has], labels[has])
        out["n_truth_tiles"] = int(has.sum())
    out["cluster_sizes"] = np.bincount(labels, minlength=k).tolist()
    out["cluster_km2"] = np.bincount(labels, weights=tile_areas_km2(grid, tile_ids), minlength=k).round(4).tolist()
    return out


def truth_step(*, grid: str, truth: str, out: str, params: TruthParams) -> None:
    """The reference class of every tile (majority vote), for ARI and NMI."""

    classes = truth_tiles(Grid.load(grid), truth, params.window_px)
    save_npz(out, classes=classes)
    get_logger().info("truth: %d tiles with a reference class, %d classes",
                      int((classes >= 0).sum()), len(np.unique(classes[classes >= 0])))


BASELINES = ("spectral", "means")  # the models every other one is compared with (they need no training)
BASELINE = BASELINES[0]  # the name of the comparison: compared_with_spectral
COMPARED = ("ari", "nmi", "silhouette", "geo_silhouette")


def gather_metrics(per_model: dict[str, dict]) -> dict[str, dict]:
    """One object per model; each model other than the baselines says how it compares with them.

    ``compared_with_spectral`` holds, for ARI and NMI (when a truth is known) and the two
    silhouettes, the model's value minus the stronger baseline's on that score (the higher of
    ``spectral``, per-date band means and standard deviations, and ``means``, the band means
    alone), and ``compared_with`` names that baseline per score: above 0, the model does better
    than clustering plain per-band statistics of the same pixels.
    """
    out = {}
    bases = {b: per_model[b] for b in BASELINES if b in per_model}
    for model, m in per_model.items():
        m = {key: v for key, v in m.items() if key != "model"}
        if bases and model not in BASELINES:
            keys = [key for key in COMPARED if key in m and all(key in b for b in bases.values())]
            stronger = {key: max(bases, key=lambda b, key=key: bases[b][key]) for key in keys}
            m[f"compared_with_{BASELINE}"] = {key: m[key] - bases[stronger[key]][key] for key in keys}
            m["compared_with"] = stronger
        out[model] = m
    return out


def seed_agreement(a: dict, b: dict) -> float:
    """ARI between two clusterings (npz contents: tile_ids, labels) over the tiles both hold."""
    common, ia, ib = np.intersect1d(a["tile_ids"], b["tile_ids"], return_indices=True)
    return adjusted_rand(a["labels"][ia], b["labels"][ib]) if len(common) else float("nan")


def members_agreement(runs: list[dict]) -> float:
    """Mean :func:`seed_agreement` over every pair of the members' clusterings (NaN with one member)."""
    pairs = [seed_agreement(a, b) for a, b in itertools.combinations(runs, 2)]
    return float(np.mean(pairs)) if pairs else float("nan")


def choose_main(metrics: dict[str, dict], candidates: list[str], min_agreement: float) -> dict:
    """The model whose map the run recommends, and why: the first candidate (the consensus), unless it is the
    consensus and its members agree less than ``min_agreement`` (mean pairwise ARI): then the next one (the
    classic baseline). Unsupervised: no truth is read."""
    first = candidates[0]
    agree = metrics[first].get("seed_agreement")
    if first == "consensus" and len(candidates) > 1 and not (agree is not None and agree >= min_agreement):
        return {"model": candidates[1], "reason": f"the members of the consensus agree at ARI {agree:.3f}, below "
                f"members.min_agreement {min_agreement}: the main map is {candidates[1]}, which no seed changes"}
    if first == "consensus":
        return {"model": first, "reason": f"its {metrics[first].get('members')} members agree at ARI {agree:.3f} "
                f"(members.min_agreement {min_agreement})"}
    return {"model": first, "reason": "the method's last model (a single member: no consensus)"}


def comparison_table(metrics: dict[str, dict]) -> list[dict]:
    """One row per model: its scores, and in words how it compares with the baselines (for the report)."""
    rows = []
    main = metrics.get("main", {}).get("model")
    for model, m in metrics.items():
        if model == "main":
            continue
        row = {"model": model + (" (main)" if model == main else ""),
               **{key: round(m[key], 4) for key in (*COMPARED, "seed_agreement", "confidence") if key in m}}
        diff = m.get(f"compared_with_{BASELINE}")
        if model in BASELINES:
            row["against the baseline"] = "a baseline: per-band statistics of the pixels, no network"
        elif diff:
            key = "ari" if "ari" in diff else "silhouette"
            row["against the baseline"] = (f"{'better' if diff[key] > 0 else 'not better'} than "
                                           f"{m['compared_with'][key]} in "
                                           f"{key.upper() if key == 'ari' else key} ({diff[key]:+.3f})")
        rows.append(row)
    return rows


def metrics_step(*, inputs: list[str], models: list[str], out: str, table: str | None = None,
                 chain: list[str] | None = None, member_labels: list[str] | None = None,
                 candidates: list[str] | None = None, params: MetricsParams) -> None:
    """``results/metrics.json``: the metrics of every model at the main K, side by side, and ``main``, the model
    whose map the run recommends (:func:`choose_main`); ``table`` (CSV, for the report): each model's scores
    and how it compares with the baselines.

    With several members, each model of the ``chain`` states ``seed_agreement``, the mean ARI between its
    members' taxonomies (``member_labels``: their clusterings, as many per model, in the chain's order; 1 =
    the same map whatever the seed; how far one run can be trusted)."""

    out_metrics = gather_metrics({m: read_json(p) for m, p in zip(models, inputs, strict=True)})
    labels = member_labels or []
    if chain and labels:
        if len(labels) % len(chain):
            raise ValueError(f"{len(labels)} member clusterings for the {len(chain)} models {', '.join(chain)}")
        per = len(labels) // len(chain)
        for i, model in enumerate(chain):
            runs = [load_npz(p) for p in labels[i * per:(i + 1) * per]]
            out_metrics[model]["seed_agreement"] = members_agreement(runs)
    out_metrics["main"] = choose_main(out_metrics, candidates or [models[-1]], params.min_agreement)
    write_json(out, out_metrics)
    if table:
        import pandas as pd

        with atomic_path(table) as tmp:
            pd.DataFrame(comparison_table(out_metrics)).to_csv(tmp, index=False)
