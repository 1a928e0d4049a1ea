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

from collections.abc import Sequence

import numpy as np

from landtaxa.clusters import sq_distance_blocks
from landtaxa.params import EvolutionParams
from landtaxa.storage import atomic_path, get_logger, write_json

log = get_logger()


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
        for start, dist in sq_distance_blocks(x, c):
            nearest[start:start + len(dist), d] = np.argmin(dist, axis=1)
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


def first_lasting_change(kind: np.ndarray) -> np.ndarray:
    """(N,) index of the date from which each tile's lasting change holds (0 = none, and with one date)."""
    lasting = lasting_changes(kind)
    if lasting.shape[1] == 0:
        return np.zeros(len(kind), np.int64)
    return np.where(lasting.any(1), lasting.argmax(1) + 1, 0)


def class_names(grid, tile_ids: np.ndarray, labels: np.ndarray, k: int, kind: np.ndarray,
                dates: Sequence[str]) -> list[str]:
    """The name of every cluster, from the data: tiles, km2, share and the dates its tiles change kind
    (:func:`landtaxa.styles.class_labels`); the same on every map of one clustering."""
    from landtaxa.grid import tile_areas_km2
    from landtaxa.styles import class_labels

    return class_labels(labels, k, tile_areas_km2(grid, tile_ids), kind, [str(d) for d in dates])


def read_kinds(labels_path: str, tile_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The (N, T) kind of ``tile_ids`` on every date, and the dates, from the evolution's Parquet table."""
    import pandas as pd

    table = pd.read_parquet(labels_path, columns=["tile_id", "date", "kind"])
    dates = sorted(table["date"].unique())
    kind = table.pivot(index="tile_id", columns="date", values="kind")
    return kind.loc[tile_ids, dates].to_numpy(), [str(d) for d in dates]


def write_evolution(grid, tile_ids: np.ndarray, series: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                    dates: Sequence[str], model: str, merge_overlap: float, out_dir: str, labels_path: str) -> dict:
    """Every product of the evolution of one clustering, written under ``out_dir``; returns the summary.

    ``<date>.tif`` (the kind of every tile on that date), ``kinds.tif`` (the same, one band per date,
    for QGIS's temporal controller), each with the class names (``.tif.aux.xml``) and a QGIS style
    (``.qml``); ``labels_path`` (Parquet: tile_id, row, col, date, cluster, nearest, kind),
    ``transitions.csv``/``.png`` (tiles of kind a on one date and b on the next), ``change.tif``
    (band 1: the date index of the first lasting change, 0 = none; then one 0/1 band per pair of
    consecutive dates: none with a single date), ``evolution.png`` and ``summary.json``.
    """
    import pandas as pd

    from landtaxa import figures
    from landtaxa.maps import NODATA, label_image, pca_colours, write_change_map, write_cluster_map
    from landtaxa.styles import write_kinds_stack, write_map_styles

    dates = [str(d) for d in dates]
    k, n_t = len(centroids), len(dates)
    colours = pca_colours(centroids)
    cluster, kind = per_date_labels(series, centroids, labels, merge_overlap)
    maps = np.stack([label_image(grid, tile_ids, kind[:, t]) for t in range(n_t)])
    names = class_names(grid, tile_ids, labels, k, kind, dates)
    for t, date in enumerate(dates):
        write_cluster_map(grid, tile_ids, kind[:, t], colours, f"{out_dir}/{date}.tif")
        write_map_styles(f"{out_dir}/{date}.tif", colours, names)
    write_kinds_stack(grid, tile_ids, kind, colours, dates, names, f"{out_dir}/kinds.tif")
    rows, cols = grid.tile_rowcol(tile_ids)
    table = pd.DataFrame({
        "tile_id": np.repeat(tile_ids, n_t), "row": np.repeat(rows, n_t), "col": np.repeat(cols, n_t),
        "date": np.tile(np.asarray(dates), len(tile_ids)), "cluster": np.repeat(labels, n_t),
        "nearest": cluster.reshape(-1), "kind": kind.reshape(-1)})
    with atomic_path(labels_path) as tmp:
        table.to_parquet(tmp, index=False)
    trans = transitions(kind, k)
    long = [{"date_from": dates[t], "date_to": dates[t + 1], "kind_from": a, "kind_to": b, "tiles": int(trans[t, a, b])}
            for t in range(n_t - 1) for a in range(k) for b in range(k)]
    columns = ["date_from", "date_to", "kind_from", "kind_to", "tiles"]
    with atomic_path(f"{out_dir}/transitions.csv") as tmp:
        pd.DataFrame(long, columns=columns).to_csv(tmp, index=False)
    changed, lasting = changes(kind), lasting_changes(kind)
    change = np.full((n_t, grid.n_tiles), NODATA, np.uint8)
    change[0, tile_ids] = first_lasting_change(kind)
    change[1:, tile_ids] = changed.T
    names = [f"date index (0 = {dates[0]}) on which a lasting change is first seen; 0 = none"]
    names += [f"changed kind {dates[t]} -> {dates[t + 1]}" for t in range(n_t - 1)]
    change = change.reshape(n_t, grid.n_rows, grid.n_cols)
    write_change_map(grid, change, names, f"{out_dir}/change.tif")
    name = f"{model} model, K={k}"
    figures.plot_evolution(maps, change, colours, dates, f"kind of every tile on each date: {name}",
                           f"{out_dir}/evolution.png")
    figures.plot_transitions(trans, colours, dates, f"date-to-date transitions: {name}", f"{out_dir}/transitions.png")
    summary = {"dates": dates, "merge_overlap": merge_overlap,
               "changed_tiles": changed.sum(0).tolist(), "lasting_changes": lasting.sum(0).tolist(),
               "tiles_ever_changed": int(changed.any(1).sum()), "n_tiles": int(len(tile_ids))}
    if n_t == 1:
        summary["note"] = "one date: no transitions and no changes (the change map holds band 1 only)"
    write_json(f"{out_dir}/summary.json", summary)
    return summary


def evolution_step(*, grid: str, series: str, clusters: str, model: str, labels: str, out_dir: str,
                   params: EvolutionParams) -> None:
    """The kind of every tile on every date, the transitions between dates and the change map."""
    from landtaxa.grid import Grid
    from landtaxa.storage import load_npz

    s, c = load_npz(series), load_npz(clusters)
    if not np.array_equal(c["tile_ids"], s["tile_ids"]):
        raise ValueError(f"{clusters} and {series} hold different tiles")
    summary = write_evolution(Grid.load(grid), c["tile_ids"], s["series"], c["labels"], c["centroids"], s["dates"],
                              model, params.merge_overlap, out_dir, labels)
    log.info("evolution: tiles changing kind per date pair %s (lasting: %s); %d of %d tiles change at least once",
             summary["changed_tiles"], summary["lasting_changes"], summary["tiles_ever_changed"], summary["n_tiles"])
