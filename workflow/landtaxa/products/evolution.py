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

from landtaxa.clustering.clusters import sq_distance_blocks
from landtaxa.clustering.series import Series, as_series
from landtaxa.inputs.grid import Grid, tile_areas_km2
from landtaxa.params import EvolutionParams
from landtaxa.products import figures
from landtaxa.products.page import FIGURE_PX
from landtaxa.products.rasters import NODATA, label_image, pca_colours, write_change_map, write_cluster_map
from landtaxa.products.styles import class_labels, write_kinds_stack, write_map_styles
from landtaxa.storage import atomic_path, get_logger, load_npz, write_json

log = get_logger()
LABEL = np.int16  # a cluster or kind per tile and date: the maps hold them in a byte (255 = no tile)


def closer_counts(x_t: np.ndarray, c_t: np.ndarray, labels: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(K, K) counts on one date: [a, b] = members of cluster a closer to b's centroid slice than to a's.

    ``x_t`` (n, D) tiles on that date (any part of the tiles: counts of parts add up), ``c_t`` (K, D),
    ``labels`` (n,) their whole-series clusters.
    """
    k = len(c_t)
    out = np.zeros((k, k), np.int64)
    for s0 in range(0, len(x_t), chunk):
        x, lab = x_t[s0:s0 + chunk], labels[s0:s0 + chunk]
        dist = np.linalg.norm(x[:, None, :] - c_t[None], axis=2)  # (rows, K)
        nearer = dist < dist[np.arange(len(x)), lab][:, None]
        for a in np.unique(lab):
            out[a] += nearer[lab == a].sum(axis=0)
    return out


def groups_of(closer: np.ndarray, sizes: np.ndarray, merge_overlap: float) -> np.ndarray:
    """The kind (smallest label of its group) of each of the K clusters on one date, from its
    :func:`closer_counts` and the clusters' sizes. Groups are the connected components of
    "cannot be told apart": at least ``merge_overlap`` of the two clusters' members nearer the other's slice."""
    k = len(sizes)
    parent = np.arange(k)

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a in range(k):
        for b in range(a + 1, k):
            members = sizes[a] + sizes[b]
            if members == 0:
                continue
            if (closer[a, b] + closer[b, a]) / members >= merge_overlap:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(k)])


def date_groups(x_t: np.ndarray, c_t: np.ndarray, labels: np.ndarray, merge_overlap: float) -> np.ndarray:
    """For one date: the kind (smallest label of its group) of each of the K clusters.

    ``x_t`` (N, D) the tiles on that date, ``c_t`` (K, D) the centroid slices, ``labels`` (N,)
    the whole-series clusters. Groups are the connected components of "cannot be told apart".
    """
    k = len(c_t)
    return groups_of(closer_counts(x_t, c_t, labels), np.bincount(labels, minlength=k), merge_overlap)


def per_date_labels(
    series, centroids: np.ndarray, labels: np.ndarray, merge_overlap: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) nearest-slice cluster and (N, T) kind of every tile on every date (module docstring), as int16.

    ``series`` is an (N, T, D) array or a series on disk, read once, block by block.
    """
    src = as_series(series)
    n, t = src.n, src.shape[1]
    k = len(centroids)
    cen = np.asarray(centroids, np.float32)
    nearest = np.empty((n, t), LABEL)
    closer = np.zeros((t, k, k), np.int64)
    for positions, block in src.blocks():
        lab = labels[positions]
        for d in range(t):
            x = np.ascontiguousarray(block[:, d])
            for start, dist in sq_distance_blocks(x, cen[:, d]):
                nearest[positions[start:start + len(dist)], d] = np.argmin(dist, axis=1)
            closer[d] += closer_counts(x, cen[:, d], lab)
    sizes = np.bincount(labels, minlength=k)
    kind = np.empty((n, t), LABEL)
    for d in range(t):
        group = groups_of(closer[d], sizes, merge_overlap)
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
    (:func:`landtaxa.products.styles.class_labels`); the same on every map of one clustering."""

    return class_labels(labels, k, tile_areas_km2(grid, tile_ids), kind, [str(d) for d in dates])


def read_kinds(labels_path: str, tile_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The (N, T) kind (int16) of ``tile_ids`` on every date, and the dates, from the evolution's Parquet table.

    Read row group by row group (the table is written in groups of 65,536 tiles), each group's rows
    put straight into the (N, T) result: besides that array, the memory is one group, whatever the
    region (reading the whole table as columns took about 120 bytes per tile and date).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = np.asarray(tile_ids, np.int64)
    order = np.argsort(wanted, kind="stable")
    sorted_ids = wanted[order]
    table = pq.ParquetFile(labels_path)
    names: set[str] = set()
    for g in range(table.num_row_groups):  # the dates first (one small column per group)
        names.update(str(d) for d in pc.unique(table.read_row_group(g, columns=["date"])["date"]).to_pylist())
    dates = sorted(names)
    position = {d: i for i, d in enumerate(dates)}
    kinds = np.full((len(wanted), len(dates)), -1, LABEL)
    for g in range(table.num_row_groups):
        group = table.read_row_group(g, columns=["tile_id", "date", "kind"])
        encoded = pc.dictionary_encode(group["date"].combine_chunks())
        date_pos = np.array([position[str(d)] for d in encoded.dictionary.to_pylist()], np.int64)
        ids = group["tile_id"].to_numpy()
        at = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
        hit = (sorted_ids[at] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
        kinds[order[at[hit]], date_pos[encoded.indices.to_numpy()[hit]]] = group["kind"].to_numpy()[hit]
    if (kinds < 0).any():
        raise KeyError(f"{labels_path}: tiles missing from the table")
    return kinds, dates


def _by_tiles(fn, kind: np.ndarray, rows: int = 1 << 16) -> np.ndarray:
    """``fn`` of (N, T) ``kind``, applied to blocks of tiles (it works tile by tile): bounded temporaries."""
    return np.concatenate([fn(kind[s:s + rows]) for s in range(0, max(len(kind), 1), rows)])


def write_labels_table(path: str, grid, tile_ids: np.ndarray, labels: np.ndarray, nearest: np.ndarray,
                       kind: np.ndarray, dates: Sequence[str], rows_per_group: int = 1 << 16) -> None:
    """The Parquet table of every tile on every date (tile_id, row, col, date, cluster, nearest, kind),
    written in row groups of ``rows_per_group`` tiles: a group's rows, never the whole table, are in memory."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_t = len(dates)
    rows, cols = grid.tile_rowcol(tile_ids)

    def frame(s: slice) -> pd.DataFrame:
        ids = tile_ids[s]
        return pd.DataFrame({
            "tile_id": np.repeat(ids, n_t), "row": np.repeat(rows[s], n_t), "col": np.repeat(cols[s], n_t),
            "date": np.tile(np.asarray(dates), len(ids)), "cluster": np.repeat(labels[s], n_t),
            "nearest": nearest[s].reshape(-1).astype(np.int64), "kind": kind[s].reshape(-1).astype(np.int64)})

    first = pa.Table.from_pandas(frame(slice(0, 0)), preserve_index=False)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, first.schema) as writer:
        for s0 in range(0, max(len(tile_ids), 1), rows_per_group):
            writer.write_table(pa.Table.from_pandas(frame(slice(s0, s0 + rows_per_group)), schema=first.schema,
                                                    preserve_index=False))


def write_evolution(grid, tile_ids: np.ndarray, series, labels: np.ndarray, centroids: np.ndarray,
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

    dates = [str(d) for d in dates]
    k, n_t = len(centroids), len(dates)
    colours = pca_colours(centroids)
    cluster, kind = per_date_labels(series, centroids, labels, merge_overlap)
    # the figure's maps, every few tiles where the region is larger than the figure draws it
    step = max(1, -(-max(grid.n_rows, grid.n_cols) // FIGURE_PX))
    maps = np.stack([label_image(grid, tile_ids, kind[:, t])[::step, ::step] for t in range(n_t)])
    names = class_names(grid, tile_ids, labels, k, kind, dates)
    for t, date in enumerate(dates):
        write_cluster_map(grid, tile_ids, kind[:, t], colours, f"{out_dir}/{date}.tif")
        write_map_styles(f"{out_dir}/{date}.tif", colours, names)
    write_kinds_stack(grid, tile_ids, kind, colours, dates, names, f"{out_dir}/kinds.tif")
    write_labels_table(labels_path, grid, tile_ids, labels, cluster, kind, dates)
    trans = transitions(kind, k)
    long = [{"date_from": dates[t], "date_to": dates[t + 1], "kind_from": a, "kind_to": b, "tiles": int(trans[t, a, b])}
            for t in range(n_t - 1) for a in range(k) for b in range(k)]
    columns = ["date_from", "date_to", "kind_from", "kind_to", "tiles"]
    with atomic_path(f"{out_dir}/transitions.csv") as tmp:
        pd.DataFrame(long, columns=columns).to_csv(tmp, index=False)
    changed, lasting = changes(kind), _by_tiles(lasting_changes, kind)
    change = np.full((n_t, grid.n_tiles), NODATA, np.uint8)
    change[0, tile_ids] = _by_tiles(first_lasting_change, kind)
    change[1:, tile_ids] = changed.T
    names = [f"date index (0 = {dates[0]}) on which a lasting change is first seen; 0 = none"]
    names += [f"changed kind {dates[t]} -> {dates[t + 1]}" for t in range(n_t - 1)]
    change = change.reshape(n_t, grid.n_rows, grid.n_cols)
    write_change_map(grid, change, names, f"{out_dir}/change.tif")
    name = f"{model} model, K={k}"
    counts = [(int((change[t] == 1).sum()), int((change[0] == t).sum())) for t in range(n_t)]
    figures.plot_evolution(maps, change[:, ::step, ::step], colours, dates, f"kind of every tile on each date: {name}"
                           + (f" (every {step}th tile shown)" if step > 1 else ""), f"{out_dir}/evolution.png", counts)
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

    s, c = Series(series), load_npz(clusters)
    if not np.array_equal(c["tile_ids"], s.tile_ids):
        raise ValueError(f"{clusters} and {series} hold different tiles")
    summary = write_evolution(Grid.load(grid), c["tile_ids"], s, c["labels"], c["centroids"], s.dates,
                              model, params.merge_overlap, out_dir, labels)
    log.info("evolution: tiles changing kind per date pair %s (lasting: %s); %d of %d tiles change at least once",
             summary["changed_tiles"], summary["lasting_changes"], summary["tiles_ever_changed"], summary["n_tiles"])
