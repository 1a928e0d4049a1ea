"""Mosaic all granules of one date onto the common grid.

Granules are read through a WarpedVRT that targets the grid, so a granule in another CRS
or on another pixel lattice is reprojected on the fly and one already on the grid's
lattice is copied. Overlaps are resolved by the first-valid rule: granules are taken in
inventory order and a pixel is filled by the first granule that holds valid data there.
A pixel is valid when it is inside the granule, is not nodata (the raster's own value,
or the one given in the config) in any band, and is not flagged by the image's mask: a
separate mask raster (e.g. a cloud mask) or a classification band of the image (e.g.
Sentinel-2's scene classification), whose values listed as invalid mark clouds, shadows
and the like. Mask rasters are taken onto the grid with nearest-neighbour resampling, and
pixels outside a mask's footprint count as invalid. The work goes window by window (square
windows of whole tiles and whole GeoTIFF blocks, :func:`landtaxa.inputs.grid.windows`), so memory is
bounded by the window, not by the region's width or height. Besides the aligned GeoTIFF (source
data type, with an internal valid-data mask, in blocks of whole tiles), the step writes each tile's valid
fraction, which later steps use to skip or fill tiles with too little data. A date with no
valid pixel at all (every pixel nodata or cloud) is refused with an error naming its files
(it would add a date on which every tile is missing), unless ``keep_empty`` is set: then it is
written as such, with a warning, and later steps fill every tile from its nearest valid date.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from landtaxa.inputs.datasets import open_georeferenced
from landtaxa.inputs.grid import Grid, io_block, tile_fractions, unreadable_pixels, windows
from landtaxa.inputs.vrt import remote_read_failure
from landtaxa.params import AlignParams
from landtaxa.storage import atomic_path, get_logger, save_npz

log = get_logger()


def align_date(
    grid: Grid,
    paths: Sequence[str | os.PathLike],
    out_tif: str | os.PathLike,
    out_valid: str | os.PathLike,
    window_px: int = 1024,
    resampling: str = "nearest",
    masks: Sequence[str | os.PathLike | None] | None = None,
    mask_band: int | None = None,
    invalid_values: Sequence[float] = (),
    nodata: float | None = None,
    keep_empty: bool = False,
    tiles: np.ndarray | None = None,
) -> np.ndarray:
    """Mosaic ``paths`` (one date, inventory order) onto ``grid``; return tile valid fractions.

    ``masks`` gives an optional mask raster per path; ``mask_band`` a band of each image
    holding classes; pixels whose mask value is in ``invalid_values`` are invalid.
    ``nodata`` overrides the images' own nodata value. ``keep_empty`` accepts a date without
    any valid pixel (a warning instead of an error). ``tiles`` (n_tiles,) bool, when given, are the
    tiles in use (the area of interest's): the others get a valid fraction of 0, so no later step
    uses them.
    """
    masks = list(masks) if masks is not None else [None] * len(paths)
    if len(masks) != len(paths):
        raise ValueError(f"{len(masks)} masks for {len(paths)} images")
    invalid = np.asarray(list(invalid_values), dtype=np.float64)
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
        "blockxsize": io_block(grid.tile_size),
        "blockysize": io_block(grid.tile_size),
        "compress": "deflate",
        "predictor": 2 if np.issubdtype(np.dtype(grid.dtype), np.integer) else 3,
        "BIGTIFF": "IF_SAFER",
    }
    sources: list[rasterio.DatasetReader] = []
    mask_sources: list[rasterio.DatasetReader | None] = []
    vrts = []
    mask_vrts: list[WarpedVRT | None] = []
    warp = {"crs": grid.crs, "transform": grid.affine, "width": grid.width, "height": grid.height}
    try:
        for p in paths:
            sources.append(_open(p))
        for p, m in zip(paths, masks, strict=True):
            mask_sources.append(_open(p, m) if m else None)
        for msrc in mask_sources:
            mask_vrts.append(
                None if msrc is None else WarpedVRT(msrc, resampling=Resampling.nearest, add_alpha=True, **warp)
            )
        for path, src in zip(paths, sources, strict=True):
            if max(grid.bands) > src.count:
                raise ValueError(f"{path}: has {src.count} bands, the grid uses band {max(grid.bands)}")
            if mask_band is not None and mask_band > src.count:
                raise ValueError(f"{path}: has {src.count} bands, the mask band is {mask_band}")
            src_nodata = nodata if nodata is not None else src.nodata
            vrts.append(WarpedVRT(src, resampling=resampling_enum, add_alpha=True, src_nodata=src_nodata, **warp))
        fractions = np.zeros((grid.n_rows, grid.n_cols), np.float32)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), atomic_path(out_tif) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                for r0, c0, win in windows(grid, window_px):
                    data = np.zeros((grid.n_bands, win.height, win.width), grid.dtype)
                    filled = np.zeros((win.height, win.width), bool)
                    for path, m, vrt, mvrt in zip(paths, masks, vrts, mask_vrts, strict=True):
                        if filled.all():
                            break
                        try:
                            take, block = _valid_block(vrt, mvrt, win, filled, grid.bands, nodata,
                                                       mask_band, invalid)
                        except rasterio.errors.RasterioIOError as err:
                            raise unreadable_pixels(path, err, f" or its mask {m}" if m else "", m) from err
                        if take is None:
                            continue
                        data[:, take] = block[:, take]
                        filled |= take
                    dst.write(data, window=win)
                    dst.write_mask((filled * 255).astype(np.uint8), window=win)
                    nr, nc = win.height // grid.tile_size, win.width // grid.tile_size
                    fractions[r0:r0 + nr, c0:c0 + nc] = tile_fractions(filled, grid.tile_size)
                    if c0 + nc == grid.n_cols:
                        log.info("aligned tile rows %d-%d of %d", r0, r0 + nr - 1, grid.n_rows)
                if tiles is not None:
                    fractions *= tiles.reshape(fractions.shape)
                if not fractions.any():
                    problem = f"{', '.join(map(str, paths))}: every pixel of this date is nodata or masked (clouds)"
                    if not keep_empty:
                        raise ValueError(
                            f"{problem}: nothing to align; leave the date out of the inventory, check the "
                            "config keys nodata and masks.invalid, or set empty_dates: keep to keep it as a "
                            "date filled from each tile's nearest valid date"
                        )
                    log.warning("%s; kept (empty_dates: keep): every tile is filled from its nearest valid date",
                                problem)
    finally:
        for v in [*vrts, *mask_vrts]:
            if v is not None:
                v.close()
        for s in [*sources, *mask_sources]:
            if s is not None:
                s.close()
    save_npz(out_valid, fraction=fractions)
    return fractions


def _open(path: str | os.PathLike, mask: str | os.PathLike | None = None) -> rasterio.DatasetReader:
    """Open an image (or, given ``mask``, the mask of image ``path``), georeferenced, signed when a signing hook is
    in use (:func:`landtaxa.inputs.datasets.open_georeferenced`); a remote one that cannot be fetched names its
    item and asset."""
    what = f"mask of image {path}" if mask else "image"
    return open_georeferenced(mask or path, what, lambda err: remote_read_failure(path, err, str(mask or "") or None))


def _valid_block(
    vrt: WarpedVRT, mvrt: WarpedVRT | None, win: Window, filled: np.ndarray, bands: list[int],
    nodata: float | None, mask_band: int | None, invalid: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pixels of one granule that fill still-empty places of a window, and its data there."""
    alpha = vrt.read(vrt.count, window=win) > 0
    take = alpha & ~filled
    if not take.any():
        return None, None
    block = vrt.read(bands, window=win)
    nod = nodata if nodata is not None else vrt.src_dataset.nodata
    if nod is not None:
        is_nod = np.isnan(block) if np.isnan(nod) else block == nod
        take &= ~np.any(is_nod, axis=0)
    if mask_band is not None and len(invalid):
        take &= ~np.isin(vrt.read(mask_band, window=win), invalid)
    if mvrt is not None:
        inside = mvrt.read(mvrt.count, window=win) > 0
        flagged = np.isin(mvrt.read(1, window=win), invalid) if len(invalid) else False
        take &= inside & ~flagged
    if np.issubdtype(block.dtype, np.floating):
        take &= np.isfinite(block).all(axis=0)
    return take, block


def read_block(
    src: rasterio.DatasetReader, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Read all bands of an aligned raster and its valid mask over ``window``."""
    data = src.read(window=window)
    mask = src.read_masks(1, window=window) > 0
    return data, mask


def align_step(*, grid: str, images: list[str], masks: list[str] | None = None, out: str, valid: str,
               params: AlignParams) -> None:
    """Mosaic one date's granules onto the grid (``masks``: one per image, '-' for none)."""
    g = Grid.load(grid)
    tiles = None
    if g.aoi:
        # imported here: its readers (pyogrio, shapely) stay out of the embedding jobs that read mosaics
        from landtaxa.inputs.aoi import tile_mask

        tiles = tile_mask(g, g.aoi)
    fr = align_date(
        g, images, out, valid, window_px=params.window_px, resampling=params.resampling,
        masks=[None if m in ("-", "") else m for m in masks] if masks else None, mask_band=params.mask_band,
        invalid_values=params.invalid or (), nodata=params.nodata, keep_empty=params.empty_dates == "keep",
        tiles=tiles,
    )
    log.info("aligned %d granule(s); %d of %d tiles hold data", len(images), int((fr > 0).sum()), fr.size)
