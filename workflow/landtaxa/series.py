"""Time-series assembly: every tile becomes a (T, D) series of its per-date embeddings.

A tile-date whose tile was not valid enough is filled from the same tile's nearest valid
date (the earlier one on a tie). Tiles missing on more than ``max_missing`` of the dates
(or on all of them) are dropped from the series and appear as nodata on the maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from landtaxa.params import SeriesParams
from landtaxa.storage import get_logger, load_npz, save_npz

log = get_logger()


def nearest_valid_index(valid: np.ndarray) -> np.ndarray:
    """For an (N, T) validity matrix, the index of each entry's nearest valid date.

    Rows with no valid date get -1 everywhere.
    """
    n, t = valid.shape
    steps = np.arange(t)
    prev = np.maximum.accumulate(np.where(valid, steps, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(valid, steps, t)[:, ::-1], axis=1)[:, ::-1]
    use_next = (prev < 0) | ((nxt < t) & (nxt - steps < steps - prev))
    out = np.where(use_next, nxt, prev)
    out[~valid.any(axis=1)] = -1
    return out


def assemble_series(
    embedding_paths: Sequence[str | os.PathLike],
    dates: Sequence[str],
    out_path: str | os.PathLike,
    max_missing: float = 0.5,
) -> None:
    """Stack per-date embeddings into X (N, T, D) for the tiles kept; write an npz."""
    if len(embedding_paths) != len(dates):
        raise ValueError(f"{len(embedding_paths)} embedding files for {len(dates)} dates")
    parts = [load_npz(p) for p in embedding_paths]
    valid = np.stack([p["valid"] for p in parts], axis=1)  # (n_tiles, T)
    missing = 1.0 - valid.mean(axis=1)
    keep = valid.any(axis=1) & (missing <= max_missing)
    tile_ids = np.flatnonzero(keep)
    src = nearest_valid_index(valid[keep])
    n_t = len(dates)
    d = parts[0]["embeddings"].shape[1]
    x = np.empty((len(tile_ids), n_t, d), np.float32)
    for t, part in enumerate(parts):
        x[:, t] = part["embeddings"][tile_ids]
    rows = np.arange(len(tile_ids))[:, None]
    x = x[rows, src]
    log.info(
        "series: %d tiles x %d dates x %d dims; %d tiles dropped (missing > %.0f%% of dates); "
        "%d tile-dates filled from the nearest valid date",
        len(tile_ids), n_t, d, int((~keep & valid.any(axis=1)).sum()) + int((~valid.any(axis=1)).sum()),
        100 * max_missing, int((~valid[keep]).sum()),
    )
    save_npz(
        out_path,
        series=x,
        tile_ids=tile_ids.astype(np.int64),
        dates=np.asarray(dates, dtype="U10"),
        valid=valid[keep],
    )


def series_step(*, embeddings: list[str], dates: list[str], out: str, params: SeriesParams) -> None:
    """The N x T x D series of one model from its per-date embeddings (in date order)."""
    assemble_series(embeddings, dates, out, max_missing=params.max_missing)
