"""Rasters with one pixel per tile: the cluster, coverage, RGB and change maps as COGs, and the colours.

The map products (:mod:`landtaxa.products.maps`), the evolution, the styles and the viewer all draw
on these; their pictures are in :mod:`landtaxa.products.figures`.

Cluster colours come from a 3-component PCA of the centroids (each component is one RGB
channel; all share one scale, the widest spanning [0, 1], so a component with negligible
variance is not blown up to the full range), so clusters that behave alike get alike colours.
"""

from __future__ import annotations

import os

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from landtaxa.inputs.grid import Grid
from landtaxa.storage import atomic_path

NODATA = 255


def principal_components(flat: np.ndarray, n_comp: int) -> np.ndarray:
    """The first ``n_comp`` principal components of the rows of ``flat`` (K, F), K small: one SVD of the centred
    rows, each axis signed so that its largest loading is positive (scikit-learn's PCA convention; the same
    values, without loading scikit-learn in every map, viewer and kinds job)."""
    u, s, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    signs = np.sign(vt[np.arange(n_comp), np.abs(vt[:n_comp]).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return u[:, :n_comp] * s[:n_comp] * signs


def pca_colours(centroids: np.ndarray) -> np.ndarray:
    """(K, ...) centroids -> (K, 3) RGB in [0, 1] from their first three principal components."""
    k = centroids.shape[0]
    flat = centroids.reshape(k, -1).astype(np.float64)
    n_comp = min(3, k, flat.shape[1])
    comps = principal_components(flat, n_comp)
    rgb = np.full((k, 3), 0.5)
    lo, hi = comps.min(axis=0), comps.max(axis=0)
    span = float((hi - lo).max())
    rgb[:, :n_comp] = 0.5 + (comps - (lo + hi) / 2) / (span if span > 0 else 1.0)
    return 0.15 + 0.8 * rgb  # keep away from pure black/white for readability


def label_image(grid: Grid, tile_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    img = np.full(grid.n_tiles, NODATA, np.uint8)
    img[tile_ids] = labels.astype(np.uint8)
    return img.reshape(grid.n_rows, grid.n_cols)


def write_cluster_map(
    grid: Grid,
    tile_ids: np.ndarray,
    labels: np.ndarray,
    colours: np.ndarray,
    out_tif: str | os.PathLike,
) -> np.ndarray:
    """Write the cluster map as a Cloud-Optimized GeoTIFF with a colour table; return it."""
    if labels.max() >= NODATA:
        raise ValueError(f"at most {NODATA} clusters fit a byte map, got {labels.max() + 1}")
    img = label_image(grid, tile_ids, labels)
    profile = {
        "driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": 1,
        "dtype": "uint8", "crs": grid.crs, "transform": grid.tile_transform, "nodata": NODATA,
    }
    cmap = {i: tuple(int(round(255 * v)) for v in c) + (255,) for i, c in enumerate(colours)}
    cmap[NODATA] = (0, 0, 0, 0)

    def fill(ds) -> None:
        ds.write(img, 1)
        ds.write_colormap(1, cmap)

    _write_cog(profile, fill, out_tif, overview_resampling="mode")
    return img


def _write_cog(profile: dict, fill, out_tif: str | os.PathLike, **options) -> None:
    """Build a raster in memory with ``fill(dataset)``, then copy it atomically as a deflated COG."""
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            fill(ds)
        with mem.open() as ds, atomic_path(out_tif) as tmp:
            rasterio.shutil.copy(ds, tmp, driver="COG", compress="deflate", **options)


def write_coverage_map(
    grid: Grid, fractions: list[np.ndarray], min_valid: float, out_tif: str | os.PathLike
) -> np.ndarray:
    """Per tile, the number of dates on which it is valid (uint16 GeoTIFF, 0 = never)."""
    counts = np.sum([f.reshape(grid.n_rows, grid.n_cols) >= min_valid for f in fractions], axis=0)
    profile = {
        "driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": 1, "dtype": "uint16",
        "crs": grid.crs, "transform": grid.tile_transform, "compress": "deflate",
    }
    with atomic_path(out_tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(counts.astype(np.uint16), 1)
        dst.set_band_description(1, f"dates with at least {min_valid:.0%} valid pixels, of {len(fractions)}")
    return counts


def write_confidence_map(grid: Grid, tile_ids: np.ndarray, confidence: np.ndarray, out_tif: str | os.PathLike) -> None:
    """Per tile, the share of the members that agree with the consensus, in percent (uint8 COG, 255 = no tile)."""
    img = np.full(grid.n_tiles, NODATA, np.uint8)
    img[tile_ids] = np.round(100 * np.asarray(confidence, np.float64))
    profile = {"driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": 1, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.tile_transform, "nodata": NODATA}

    def fill(ds) -> None:
        ds.write(img.reshape(grid.n_rows, grid.n_cols), 1)
        ds.set_band_description(1, "members that put the tile in its consensus cluster, %")

    _write_cog(profile, fill, out_tif, overview_resampling="average")


def write_rgb_map(grid: Grid, tile_ids: np.ndarray, rgb: np.ndarray, out_tif: str | os.PathLike) -> None:
    """A 3-band uint8 Cloud-Optimized GeoTIFF with one pixel per tile (alpha 0 where no tile)."""
    img = np.zeros((4, grid.n_tiles), np.uint8)
    img[:3, tile_ids] = np.round(255 * rgb.T)
    img[3, tile_ids] = 255
    profile = {"driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": 4, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.tile_transform, "photometric": "RGB"}

    def fill(ds) -> None:
        ds.write(img.reshape(4, grid.n_rows, grid.n_cols))
        ds.colorinterp = [rasterio.enums.ColorInterp[n] for n in ("red", "green", "blue", "alpha")]

    _write_cog(profile, fill, out_tif)


def write_change_map(grid: Grid, change: np.ndarray, names: list[str], out_tif: str | os.PathLike) -> None:
    """A uint8 GeoTIFF of (bands, rows, cols) ``change`` with a description per band (255 = no tile)."""
    profile = {"driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": len(change),
               "dtype": "uint8", "crs": grid.crs, "transform": grid.tile_transform, "nodata": NODATA}

    def fill(ds) -> None:
        ds.write(change)
        for b, name in enumerate(names, start=1):
            ds.set_band_description(b, name)

    _write_cog(profile, fill, out_tif, overview_resampling="nearest")
