"""Quality of a taxonomy: in embedding space, in geographic space, against a truth.

- ``inertia``: K-means objective (sum of squared distances to the centroids);
- ``silhouette``: silhouette of the clusters with Euclidean distance between series (on a
  sample of 10,000 series beyond that, as scikit-learn's ``sample_size``: only those are read);
- ``geo_silhouette`` and ``calinski_harabasz``: the same clusters in geographic space
  (tile row/column), high when clusters form compact, connected regions;
- ``ari`` and ``nmi``: agreement with a reference class raster taken to tiles by
  majority vote, over the tiles that have a reference class.
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

WORKING_MB = 64  # scikit-learn's working memory for the pairwise distances of the silhouettes (its default: 1 GB)


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


def silhouette(series, labels: np.ndarray, sample_size: int, seed: int) -> float:
    """scikit-learn's ``silhouette_score(flat, labels, sample_size=..., random_state=seed)``, reading only the
    sampled series (an array or a series on disk).

    The sample goes to scikit-learn in float64 (one copy of the sample, not of the series): its
    distances are then one matrix product per piece of :data:`WORKING_MB`, where float32 input is
    upcast in small batches and rounded back to float32, about 3x slower for long series; the values agree
    to about 1e-7.
    """
    from sklearn import config_context
    from sklearn.metrics import silhouette_samples

    src = as_series(series)
    rows = np.random.RandomState(seed).permutation(src.n)[:sample_size]  # silhouette_score's own draw
    x = np.empty((len(rows), src.n_features), np.float64)
    order = np.argsort(rows)  # read in pieces of neighbouring tiles: each chunk once, no float32 copy beside x
    for s0 in range(0, len(rows), 1024):
        part = order[s0:s0 + 1024]
        x[part] = src.take(rows[part]).reshape(len(part), -1)
    with config_context(working_memory=WORKING_MB):
        return float(np.mean(silhouette_samples(x, labels[rows])))


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
    # scikit-learn loads scipy.stats (about 1 s): imported where used, so the jobs that never call this start faster
    from sklearn import config_context
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        normalized_mutual_info_score,
        silhouette_score,
    )

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
    with config_context(working_memory=WORKING_MB):
        out["geo_silhouette"] = float(silhouette_score(coords, labels, sample_size=sample, random_state=seed))
    out["calinski_harabasz"] = float(calinski_harabasz_score(coords, labels))
    if truth is not None:
        ref = truth[tile_ids]
        has = ref >= 0
        out["ari"] = float(adjusted_rand_score(ref[has], labels[has]))
        out["nmi"] = float(normalized_mutual_info_score(ref[has], labels[has]))
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
    from sklearn.metrics import adjusted_rand_score

    common, ia, ib = np.intersect1d(a["tile_ids"], b["tile_ids"], return_indices=True)
    return float(adjusted_rand_score(a["labels"][ia], b["labels"][ib])) if len(common) else float("nan")


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
