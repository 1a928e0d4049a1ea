"""Tiles of one aligned date, read window by window and prepared for an encoder, and the stores they fill.

The aligned raster is read in square windows of whole tiles (:func:`landtaxa.inputs.grid.windows`:
the pixels held are a window's, whatever the region's width; the store's chunks begun hold one
window's height of tile rows, 2 KB per tile at D = 512), cut into tiles, scaled to [0, 1] and
handed to the encoder in batches gathered across windows; tiles whose valid fraction is below
``min_valid`` are not encoded. A background thread reads and prepares the next windows while the
current batch is encoded (GDAL and numpy release the interpreter lock). Missing pixels inside a valid
tile are set to the tile's per-band mean of valid pixels, so nodata does not read as black ground
(the baselines, which skip missing pixels, get them as NaN).

The baselines' features, per-band statistics of a tile's valid pixels, are computed here in numpy:
a baseline's embedding job loads no deep-learning library (torch takes seconds to import, which on a
region of small dates is most of such a job). :mod:`landtaxa.learning.embed` runs the encoders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import rasterio

from landtaxa.inputs.align import read_block
from landtaxa.inputs.grid import Grid, to_tiles, window_tile_ids, windows
from landtaxa.learning.cube import embedding_store
from landtaxa.params import EmbedParams
from landtaxa.storage import get_logger, load_npz, prefetch

log = get_logger()

# a baseline encoder -> whether its features hold the stds (the registry builds its torch module from this too)
BAND_STATS = {"spectral": True, "means": False}


def fill_invalid(tiles: np.ndarray, masks: np.ndarray, fill: bool = True) -> np.ndarray:
    """Replace invalid pixels of each tile by its per-band mean over valid pixels (NaN with ``fill`` False)."""
    if not fill:
        return np.where(masks[:, None], tiles, np.nan).astype(np.float32)
    m = masks[:, None].astype(np.float32)
    count = m.sum(axis=(2, 3), keepdims=True)
    mean = np.where(m > 0, tiles, 0).sum(axis=(2, 3), keepdims=True) / np.maximum(count, 1)  # NaN-safe
    return np.where(m > 0, tiles, mean).astype(np.float32)


def band_stats(tiles: np.ndarray, stds: bool = True) -> np.ndarray:
    """Per-band mean and standard deviation of each tile's valid pixels (NaN = missing), (n, C, ts, ts) ->
    (n, 2C) float32; with ``stds`` False the means alone, (n, C). A tile without a valid pixel gives zeros."""
    x = np.asarray(tiles, dtype=np.float32).reshape(*tiles.shape[:2], -1)
    ok = ~np.isnan(x)
    n = np.maximum(ok.sum(-1), 1).astype(np.float32)
    mean = np.where(ok, x, 0).sum(-1, dtype=np.float32) / n
    if not stds:
        return mean
    var = (np.where(ok, x - mean[..., None], 0) ** 2).sum(-1, dtype=np.float32) / n
    return np.concatenate([mean, np.sqrt(var)], axis=1).astype(np.float32)


def prepared_windows(
    grid: Grid, aligned: str | os.PathLike, valid: np.ndarray, window_px: int, fill: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Tile ids and prepared (scaled, gap-filled) tiles of each window holding valid tiles."""
    with rasterio.open(aligned) as src:
        for r0, c0, win in windows(grid, window_px):
            ids = window_tile_ids(grid, r0, c0, win)
            keep = valid[ids]
            if not keep.any():
                continue
            data, mask = read_block(src, win)
            tiles = to_tiles(grid.scale(data), grid.tile_size)[keep]
            masks = to_tiles(mask[None], grid.tile_size)[keep, 0]
            yield ids[keep], fill_invalid(tiles, masks, fill)


def batches(parts: Iterator[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The windows' (ids, tiles) gathered into runs of at least ``size`` tiles (the last one shorter), so small
    windows still fill a batch; a window is never split."""
    ids: list[np.ndarray] = []
    tiles: list[np.ndarray] = []
    for i, t in parts:
        ids.append(i)
        tiles.append(t)
        if sum(map(len, ids)) >= size:
            yield np.concatenate(ids), np.concatenate(tiles)
            ids, tiles = [], []
    if ids:
        yield np.concatenate(ids), np.concatenate(tiles)


def embed_windows(
    encode: Callable[[np.ndarray], np.ndarray],
    z_dim: int,
    grid: Grid,
    aligned: str | os.PathLike,
    fractions: np.ndarray,
    out_path: str | os.PathLike,
    min_valid: float,
    batch_size: int,
    window_px: int = 1024,
    dtype: str = "float32",
    date: str | None = None,
    fill: bool = True,
) -> tuple[int, float]:
    """Every tile of ``aligned`` with a valid fraction of at least ``min_valid``, through ``encode`` ((n, C, ts,
    ts) float32 -> (n, z_dim)), into the Zarr store ``out_path`` (:mod:`landtaxa.learning.cube`), a batch at a
    time: the job holds a few windows and chunks, not the whole date. Returns the tiles encoded and the seconds."""
    with rasterio.open(aligned) as src:
        if (src.width, src.height) != (grid.width, grid.height):
            raise ValueError(f"{aligned}: size {src.width}x{src.height} does not match the grid")
    valid = fractions.reshape(-1) >= min_valid
    todo = int(valid.sum())
    done, t0 = 0, time.perf_counter()
    attrs = {"date": date} if date else {}
    with embedding_store(out_path, grid, z_dim, valid, dtype, attrs, fraction=fractions) as store:
        for ids, tiles in prefetch(batches(prepared_windows(grid, aligned, valid, window_px, fill), batch_size), 2):
            store.put(ids, encode(tiles))
            done += len(tiles)
            log.info("embedded %d/%d tiles (%.0f tiles/s)", done, todo, done / max(time.perf_counter() - t0, 1e-9))
    return done, time.perf_counter() - t0


def baseline_step(*, grid: str, encoder: str, aligned: str, valid: str, out: str, date: str | None = None,
                  params: EmbedParams) -> None:
    """Every valid tile of one aligned date described by a baseline (``encoder``: spectral, the per-band means
    and standard deviations of its valid pixels; means, the means alone), into a Zarr store (``out``)."""
    if encoder not in BAND_STATS:
        raise SystemExit(f"landtaxa baseline: {encoder!r} is not a baseline; baselines: {', '.join(BAND_STATS)}")
    g = Grid.load(grid)
    stds = BAND_STATS[encoder]
    tiles, seconds = embed_windows(lambda t: band_stats(t, stds), (2 if stds else 1) * g.n_bands, g, aligned,
                                   load_npz(valid)["fraction"], out, min_valid=params.min_valid,
                                   batch_size=params.batch_size or 1024, window_px=params.window_px,
                                   dtype=params.dtype, date=date, fill=False)
    log.info("%s: %d tiles in %.1f s", encoder, tiles, seconds)
