"""Mosaic all granules of one date onto the common grid.

Granules are read through a WarpedVRT that targets the grid, so a granule in another CRS
or on another pixel lattice is reprojected on the fly and one already on the grid's
lattice is copied. Overlaps are resolved by the first-valid rule: granules are taken in
inventory order and a pixel is filled by the first granule that holds valid data there.
The work streams over strips of tile rows, so memory is bounded by the strip, not the
region. Besides the aligned GeoTIFF (source data type, with an internal valid-data
mask), the step writes each tile's valid fraction, which later steps use to skip or fill
tiles with too little data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landtaxa.grid import Grid
from landtaxa.storage import atomic_path, get_logger, save_npz

log = get_logger()


def strip_windows(grid: Grid, block_rows: int) -> list[tuple[int, Window]]:
    """Windows of ``block_rows`` tile rows each, with the index of their first tile row."""
    out = []
    for r0 in range(0, grid.n_rows, block_rows):
        nr = min(block_rows, grid.n_rows - r0)
        out.append((r0, Window(0, r0 * grid.tile_size, grid.width, nr * grid.tile_size)))
    return out


def tile_fractions(mask: np.ndarray, tile_size: int) -> np.ndarray:
    """Fraction of valid pixels per tile of a (rows*ts, cols*ts) boolean mask."""
    h, w = mask.shape
    blocks = mask.reshape(h // tile_size, tile_size, w // tile_size, tile_size)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def align_date(
    grid: Grid,
    paths: Sequence[str | os.PathLike],
    out_tif: str | os.PathLike,
    out_valid: str | os.PathLike,
    block_rows: int = 8,
    resampling: str = "nearest",
) -> np.ndarray:
    """Mosaic ``paths`` (one date, inventory order) onto ``grid``; return tile valid fractions."""
    resampling_enum = Resampling[resampling]
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": grid.n_bands,
        "dtype": grid.dtype,
        "crs": grid.crs,
        "transform": grid.affine,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2 if np.issubdtype(np.dtype(grid.dtype), np.integer) else 3,
        "BIGTIFF": "IF_SAFER",
    }
    sources = [rasterio.open(p) for p in paths]
    vrts = []
    try:
        for path, src in zip(paths, sources, strict=True):
            if src.crs is None:
                raise ValueError(f"{path}: raster has no CRS")
            if max(grid.bands) > src.count:
                raise ValueError(f"{path}: has {src.count} bands, the grid uses band {max(grid.bands)}")
            vrts.append(
                WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=grid.affine,
                    width=grid.width,
                    height=grid.height,
                    resampling=resampling_enum,
                    add_alpha=True,
                )
            )
        fractions = np.zeros((grid.n_rows, grid.n_cols), np.float32)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), atomic_path(out_tif) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                for r0, win in strip_windows(grid, block_rows):
                    data = np.zeros((grid.n_bands, win.height, win.width), grid.dtype)
                    filled = np.zeros((win.height, win.width), bool)
                    for vrt in vrts:
                        if filled.all():
                            break
                        alpha = vrt.read(vrt.count, window=win) > 0
                        take = alpha & ~filled
                        if not take.any():
                            continue
                        block = vrt.read(grid.bands, window=win)
                        if vrt.src_dataset.nodata is not None:
                            nod = vrt.src_dataset.nodata
                            take &= ~np.any(block == nod, axis=0) if not np.isnan(nod) else ~np.any(np.isnan(block), axis=0)
                        if np.issubdtype(block.dtype, np.floating):
                            take &= np.isfinite(block).all(axis=0)
                        data[:, take] = block[:, take]
                        filled |= take
                    dst.write(data, window=win)
                    dst.write_mask((filled * 255).astype(np.uint8), window=win)
                    fractions[r0 : r0 + win.height // grid.tile_size] = tile_fractions(filled, grid.tile_size)
                    log.info("aligned tile rows %d-%d of %d", r0, r0 + win.height // grid.tile_size - 1, grid.n_rows)
    finally:
        for v in vrts:
            v.close()
        for s in sources:
            s.close()
    save_npz(out_valid, fraction=fractions)
    return fractions


def read_block(
    src: rasterio.DatasetReader, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Read all bands of an aligned raster and its valid mask over ``window``."""
    data = src.read(window=window)
    mask = src.read_masks(1, window=window) > 0
    return data, mask
