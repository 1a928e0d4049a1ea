"""The taxonomy as tables: every tile as a GeoParquet polygon, and one row per kind of land.

``write_tiles_parquet`` writes one row per tile that has a cluster: its square as a polygon
in the grid's CRS (WKB), its row, column and id on the grid, its area, on how many dates it had
valid data, and its cluster under every model. The file follows GeoParquet 1.1 (``geo``
metadata with the CRS as PROJJSON), so geopandas, QGIS and GDAL's Parquet driver read it as
a polygon layer in the right CRS; tiles can then be joined, filtered and styled like any vector
layer. The polygons are built here as WKB with numpy (no shapely needed at run time): one
counter-clockwise ring of five corners per tile, taken through the grid's tile geotransform.

``write_kinds_table`` summarises one clustering (one model and K): per cluster its size in tiles
and km2, its share of the area, its mean number of valid dates, how reproducible it is over
K-means re-runs (per-cluster Jaccard from the analysis' stability step) and the changes of
kind its tiles make most often from one date to the next. The same rows go to a CSV (for a
spreadsheet) and a JSON file (for scripts), with the transitions as text in the first and as
records in the second.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.crs import CRS

from landtaxa.inputs.grid import Grid, tile_areas_km2
from landtaxa.products.styles import class_summary, colour_hex
from landtaxa.storage import atomic_path, get_logger, load_npz, write_json

GEOPARQUET_VERSION = "1.1.0"


# --- tiles as GeoParquet polygons -------------------------------------------------------------

def tile_polygons_wkb(grid: Grid, tile_ids: np.ndarray) -> tuple[pa.BinaryArray, list[float]]:
    """Each tile's square as a little-endian WKB Polygon (one counter-clockwise ring of 5 points),
    and the bounding box ``[xmin, ymin, xmax, ymax]`` of them all."""
    rows, cols = grid.tile_rowcol(np.asarray(tile_ids, np.int64))
    t = grid.tile_transform
    corners = [(0, 0), (1, 0), (1, 1), (0, 1)]
    xs = np.stack([t.a * (cols + dc) + t.b * (rows + dr) + t.c for dc, dr in corners], axis=1)
    ys = np.stack([t.d * (cols + dc) + t.e * (rows + dr) + t.f for dc, dr in corners], axis=1)
    signed = 0.5 * np.sum(xs * np.roll(ys, -1, axis=1) - np.roll(xs, -1, axis=1) * ys, axis=1)
    if len(signed) and signed[0] < 0:  # same sign for every tile: one affine transform
        xs, ys = xs[:, ::-1], ys[:, ::-1]
    ring = np.empty((len(xs), 5, 2), np.float64)
    ring[:, :4, 0], ring[:, :4, 1] = xs, ys
    ring[:, 4] = ring[:, 0]
    n = len(ring)
    header = np.zeros(n, dtype=[("order", "u1"), ("type", "<u4"), ("rings", "<u4"), ("points", "<u4")])
    header["order"], header["type"], header["rings"], header["points"] = 1, 3, 1, 5
    record = np.concatenate([header.view(np.uint8).reshape(n, -1), ring.astype("<f8").view(np.uint8).reshape(n, -1)],
                            axis=1)
    size = record.shape[1]
    offsets = np.arange(n + 1, dtype=np.int32) * size
    wkb = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(record.tobytes())])
    bbox = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())] if n else [0.0, 0.0, 0.0, 0.0]
    return wkb, bbox


def geo_metadata(crs: str | CRS, bbox: list[float], column: str = "geometry") -> dict:
    """GeoParquet ``geo`` metadata for one WKB polygon column with its CRS as PROJJSON."""
    projjson = CRS.from_user_input(crs).to_dict(projjson=True)
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": column,
        "columns": {column: {"encoding": "WKB", "geometry_types": ["Polygon"], "crs": projjson, "bbox": bbox,
                             "edges": "planar", "orientation": "counterclockwise"}},
    }


def write_tiles_parquet(grid: Grid, tile_ids: np.ndarray, valid_counts: np.ndarray,
                        clusters: Mapping[str, np.ndarray], out_path: str | os.PathLike) -> pa.Table:
    """Write the tiles as a GeoParquet polygon layer; return the table.

    Columns: ``tile_id``, ``row``, ``col``, ``area_km2``, ``valid_dates`` (``valid_counts``, the
    dates with enough valid pixels), one ``cluster_<model>`` per entry of ``clusters`` (labels
    over ``tile_ids``, e.g. ``{"geo": ..., "refined": ...}`` at each model's main K), and
    ``geometry`` (WKB polygons in the grid's CRS).
    """
    tile_ids = np.asarray(tile_ids, np.int64)
    n = len(tile_ids)
    if len(valid_counts) != n:
        raise ValueError(f"{len(valid_counts)} valid-date counts for {n} tiles")
    rows, cols = grid.tile_rowcol(tile_ids)
    columns: dict[str, pa.Array] = {
        "tile_id": pa.array(tile_ids, pa.int64()),
        "row": pa.array(rows.astype(np.int32)),
        "col": pa.array(cols.astype(np.int32)),
        "area_km2": pa.array(tile_areas_km2(grid, tile_ids)),
        "valid_dates": pa.array(np.asarray(valid_counts).astype(np.int32)),
    }
    for model, labels in clusters.items():
        if len(labels) != n:
            raise ValueError(f"model {model}: {len(labels)} cluster labels for {n} tiles")
        columns[f"cluster_{model}"] = pa.array(np.asarray(labels).astype(np.int32))
    wkb, bbox = tile_polygons_wkb(grid, tile_ids)
    columns["geometry"] = wkb
    table = pa.table(columns)
    table = table.replace_schema_metadata({b"geo": json.dumps(geo_metadata(grid.crs, bbox)).encode()})
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    return table


# --- one row per kind of land ----------------------------------------------------------------

KINDS_COLUMNS = {
    "cluster": "cluster number (numbered by decreasing size); the value of the maps",
    "label": "the class name on the maps (GDAL category name, QGIS legend)",
    "tiles": "tiles in the cluster",
    "km2": "area of those tiles in km2",
    "share": "share of the mapped area",
    "mean_valid_dates": "mean number of dates with enough valid pixels, over the cluster's tiles",
    "stability_jaccard": "mean best Jaccard overlap with a cluster of K-means re-runs from other seeds "
                         "(1 = always found again; below about 0.5 = not reproducible)",
    "colour": "the map colour",
    "transitions": "most frequent moves out of this kind between consecutive dates: tiles (of any cluster) "
                   "holding this kind on date_from and kind 'to' on 'date'",
}


def top_transitions(transitions: np.ndarray, dates: Sequence[str], cluster: int, top: int = 3
                    ) -> list[dict]:
    """The ``top`` largest moves out of kind ``cluster``: tiles of that kind on one date that hold
    another kind on the next, from the (T-1, K, K) ``transitions`` counts; largest first, ties
    by date."""
    moves = [(int(transitions[t, cluster, b]), t, b) for t in range(len(transitions))
             for b in range(transitions.shape[2]) if b != cluster and transitions[t, cluster, b] > 0]
    moves.sort(key=lambda m: (-m[0], m[1], m[2]))
    return [{"to": b, "date_from": str(dates[t]), "date": str(dates[t + 1]), "tiles": n} for n, t, b in moves[:top]]


def transition_text(moves: list[dict], prefix: str = "c") -> str:
    """Transitions as one line: ``"-> c2 on 2023-07-25 (41 tiles); ..."`` (empty when none)."""
    return "; ".join(f"-> {prefix}{m['to']} on {m['date']} ({m['tiles']} tiles)" for m in moves)


def kinds_table(labels: np.ndarray, k: int, areas_km2: np.ndarray | float, valid_counts: np.ndarray,
                jaccard: np.ndarray | None, transitions: np.ndarray | None, dates: Sequence[str],
                class_labels: Sequence[str] | None = None, colours: np.ndarray | None = None,
                top: int = 3) -> list[dict]:
    """One record per cluster (see :func:`write_kinds_table`)."""
    labels = np.asarray(labels)
    if len(valid_counts) != len(labels):
        raise ValueError(f"{len(valid_counts)} valid-date counts for {len(labels)} tiles")
    if transitions is not None and transitions.shape != (max(len(dates) - 1, 0), k, k):
        raise ValueError(f"transitions have shape {transitions.shape}, expected ({len(dates) - 1}, {k}, {k})")
    summary = class_summary(labels, k, areas_km2)

    def sig(value: float) -> float:  # 6 significant digits: no float noise in the CSV or the JSON
        return float(f"{value:.6g}")

    valid_sum = np.bincount(labels, weights=np.asarray(valid_counts, np.float64), minlength=k)[:k]
    hexes = colour_hex(colours) if colours is not None else None
    records = []
    for c in range(k):
        tiles = int(summary["tiles"][c])
        rec = {
            "cluster": c,
            "label": class_labels[c] if class_labels is not None else f"c{c}",
            "tiles": tiles,
            "km2": sig(summary["km2"][c]),
            "share": sig(summary["share"][c]),
            "mean_valid_dates": sig(valid_sum[c] / tiles) if tiles else float("nan"),
            "stability_jaccard": sig(jaccard[c]) if jaccard is not None else None,
        }
        if hexes is not None:
            rec["colour"] = hexes[c]
        rec["transitions"] = top_transitions(transitions, dates, c, top) if transitions is not None else []
        records.append(rec)
    return records


def write_kinds_table(out_csv: str | os.PathLike, out_json: str | os.PathLike, labels: np.ndarray, k: int,
                      areas_km2: np.ndarray | float, valid_counts: np.ndarray, jaccard: np.ndarray | None,
                      transitions: np.ndarray | None, dates: Sequence[str],
                      class_labels: Sequence[str] | None = None, colours: np.ndarray | None = None,
                      top: int = 3, meta: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Write the kinds table of one clustering as CSV and JSON (same rows); return it as a DataFrame.

    Per cluster: ``cluster``, ``label`` (the class name of the maps), ``tiles``, ``km2``, ``share``
    of the mapped area, ``mean_valid_dates`` (of its tiles, from ``valid_counts`` over the tiles
    of ``labels``), ``stability_jaccard`` (``jaccard`` (K,), mean best Jaccard over K-means
    re-runs), ``colour`` (with ``colours``) and its ``top`` most frequent ``transitions`` out of its
    kind between consecutive dates (``transitions`` (T-1, K, K) tile counts). The CSV has the
    transitions as text, ``"-> c2 on 2023-07-25 (41 tiles)"``; the JSON as records, under
    ``kinds``, beside ``dates``, a description of every column (``columns``) and anything in
    ``meta`` (model ...). A cluster's transitions are those of its kind: tiles of any cluster
    that hold that kind on a date (:mod:`landtaxa.products.evolution`).
    """
    records = kinds_table(labels, k, areas_km2, valid_counts, jaccard, transitions, dates, class_labels,
                          colours, top)
    frame = pd.DataFrame([{**r, "transitions": transition_text(r["transitions"])} for r in records])
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    clean = [{key: (None if isinstance(v, float) and np.isnan(v) else v) for key, v in r.items()} for r in records]
    write_json(out_json, {**(meta or {}), "k": k, "dates": [str(d) for d in dates], "columns": KINDS_COLUMNS,
                          "kinds": clean})
    return frame


def tiles_step(*, grid: str, coverage: str, clusters: list[str], models: list[str], out: str) -> None:
    """``results/tiles.parquet``: every clustered tile as a polygon with its valid dates and its cluster
    under every model (main K); a tile one model left out has cluster -1 there."""
    import rasterio

    g = Grid.load(grid)
    runs = [load_npz(p) for p in clusters]
    tile_ids = np.unique(np.concatenate([r["tile_ids"] for r in runs]))
    by_model = {}
    for model, r in zip(models, runs, strict=True):
        labels = np.full(len(tile_ids), -1, np.int64)
        labels[np.searchsorted(tile_ids, r["tile_ids"])] = r["labels"]
        by_model[model] = labels
    with rasterio.open(coverage) as src:
        valid = src.read(1).reshape(-1)[tile_ids]
    write_tiles_parquet(g, tile_ids, valid, by_model, out)
    get_logger().info("tiles: %d tiles, models %s", len(tile_ids), ", ".join(models))
