"""One common grid of square tiles over the union of all granules.

The grid fixes the CRS, the pixel lattice (origin and resolution), the region's size in
pixels (a whole number of tiles) and the tile size, for every date. Every date is
mosaicked onto this grid, so a tile id means the same ground on every date and
overlapping granules leave no border effect. The grid also records the radiometric
scaling (per band min/max) used to bring pixels into the encoder's [0, 1] range; it is
computed once for the whole region so the same ground gives the same input everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from landtaxa.inputs.datasets import is_gdal_path, open_georeferenced
from landtaxa.inputs.vrt import remote_read_failure
from landtaxa.params import GridParams
from landtaxa.storage import get_logger, read_json, write_json

log = get_logger()


@dataclass
class Grid:
    """The tiling of the region: CRS, pixel transform, size in pixels, tile size, bands."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    tile_size: int
    bands: list[int]
    dtype: str
    scale_min: list[float] = field(default_factory=list)
    scale_max: list[float] = field(default_factory=list)
    train_dates: list[str] = field(default_factory=list)  # what the grid's scaling and the encoders learn from
    aoi: str | None = None  # the area of interest: only tiles whose centre lies inside it are used

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])

    @property
    def n_rows(self) -> int:
        return self.height // self.tile_size

    @property
    def n_cols(self) -> int:
        return self.width // self.tile_size

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def tile_metres(self) -> float:
        """Side of one tile in CRS units (metres for a projected CRS)."""
        return self.tile_size * self.resolution

    @property
    def tile_transform(self) -> Affine:
        """Geotransform of a map with one pixel per tile."""
        return self.affine @ Affine.scale(self.tile_size)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.affine @ (0, 0)
        right, bottom = self.affine @ (self.width, self.height)
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    def scale(self, data: np.ndarray, band_axis: int = -3) -> np.ndarray:
        """Bring raw pixel values into [0, 1] with the grid's per-band min/max (float32)."""
        shape = [1] * data.ndim
        shape[band_axis] = self.n_bands
        lo = np.asarray(self.scale_min, np.float32).reshape(shape)
        hi = np.asarray(self.scale_max, np.float32).reshape(shape)
        out = (data.astype(np.float32) - lo) / (hi - lo)
        return np.clip(out, 0.0, 1.0, out=out)

    def tile_window(self, tile_id: int) -> Window:
        row, col = divmod(int(tile_id), self.n_cols)
        return Window(col * self.tile_size, row * self.tile_size, self.tile_size, self.tile_size)

    def tile_rowcol(self, tile_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.divmod(np.asarray(tile_ids), self.n_cols)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Grid:
        data = read_json(path)
        data["transform"] = tuple(data["transform"])
        return cls(**data)


@dataclass
class Region:
    """The union footprint of the images in the grid's CRS, before snapping to tiles."""

    crs: CRS
    bounds: tuple[float, float, float, float]
    resolution: float
    n_bands: int
    itemsize: int

    @property
    def width(self) -> int:
        return max(0, round((self.bounds[2] - self.bounds[0]) / self.resolution))

    @property
    def height(self) -> int:
        return max(0, round((self.bounds[3] - self.bounds[1]) / self.resolution))

    def n_tiles(self, tile_size: int) -> int:
        return math.ceil(self.width / tile_size) * math.ceil(self.height / tile_size)


def _snap(value: float, origin: float, step: float, up: bool) -> float:
    n = (value - origin) / step
    n = math.ceil(n - 1e-9) if up else math.floor(n + 1e-9)
    return origin + n * step


@dataclass
class Footprint:
    """Where a set of rasters lies in the grid's CRS, from their headers only (no pixels read).

    ``crs`` and ``resolution`` default to the first raster's; ``origin`` is a corner of the
    first raster's pixel lattice when the grid keeps its CRS (so its pixels are copied, not
    resampled), else (0, 0); ``boxes`` holds each raster's bounds in ``crs``.
    """

    crs: CRS
    resolution: float
    origin: tuple[float, float]
    boxes: list[tuple[float, float, float, float]]
    bands: list[int]
    dtype: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        box = np.array(self.boxes)
        return (float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 2].max()), float(box[:, 3].max()))

    def box_pixels(self, box: Sequence[float]) -> tuple[int, int]:
        """Width and height in grid pixels of a box in the grid's CRS."""
        return (max(0, round((box[2] - box[0]) / self.resolution)),
                max(0, round((box[3] - box[1]) / self.resolution)))


def footprint(
    paths: Sequence[str | os.PathLike], crs: str | None = None, resolution: float | None = None,
    bands: Sequence[int] | None = None,
) -> Footprint:
    """The footprint of ``paths`` on the grid they will share (see :class:`Footprint`)."""
    if not paths:
        raise ValueError("no images to build the grid from")
    with open_georeferenced(paths[0], "image") as first:
        dst_crs = CRS.from_user_input(crs) if crs else first.crs
        res = float(resolution) if resolution else abs(first.transform.a)
        keeps_lattice = crs is None or CRS.from_user_input(crs) == first.crs
        origin = (first.transform.c, first.transform.f) if keeps_lattice else (0.0, 0.0)
        band_list = list(bands) if bands else list(range(1, first.count + 1))
        dtype = first.dtypes[0]
    boxes = []
    for path in paths:
        with open_georeferenced(path, "image") as src:
            if max(band_list) > src.count:
                raise ValueError(f"{path}: has {src.count} bands, config asks for band {max(band_list)}")
            boxes.append(tuple(transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21)))
    return Footprint(dst_crs, res, origin, boxes, band_list, dtype)


def build_grid(
    paths: Sequence[str | os.PathLike],
    tile_size: int,
    bands: Sequence[int] | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    scale_min: Sequence[float] | float | None = None,
    scale_max: Sequence[float] | float | None = None,
    percentiles: Sequence[float] = (1.0, 99.0),
    nodata: float | None = None,
    scale_paths: Sequence[str | os.PathLike] | None = None,
    within: tuple[float, float, float, float] | None = None,
) -> Grid:
    """Build the grid covering the union of the footprints of ``paths`` (cut to ``within``, bounds in
    the grid's CRS, e.g. an area of interest's).

    The CRS defaults to the first raster's and the resolution to its pixel size; the
    origin is snapped to the first raster's pixel lattice, so rasters on that lattice are
    copied without resampling. The region is padded to a whole number of tiles.
    Scaling not given in the config is taken from robust percentiles of a decimated
    sample of valid pixels of ``scale_paths`` (default: ``paths``), so that it reflects the
    whole sequence, not one season.
    """
    fp = footprint(paths, crs, resolution, bands)
    (ox, oy), res = fp.origin, fp.resolution
    b = fp.bounds
    if within is not None:
        b = (max(within[0], b[0]), max(within[1], b[1]), min(within[2], b[2]), min(within[3], b[3]))
    left = _snap(b[0], ox, res, up=False)
    top = _snap(b[3], oy, res, up=True)
    right = _snap(b[2], ox, res, up=True)
    bottom = _snap(b[1], oy, res, up=False)
    width_px = round((right - left) / res)
    height_px = round((top - bottom) / res)
    if width_px < tile_size or height_px < tile_size:
        raise ValueError(
            f"the region ({width_px} x {height_px} px) is smaller than one tile ({tile_size} px)"
        )
    width = math.ceil(width_px / tile_size) * tile_size
    height = math.ceil(height_px / tile_size) * tile_size
    transform = Affine(res, 0.0, left, 0.0, -res, top)
    grid = Grid(
        crs=fp.crs.to_wkt(),
        transform=tuple(transform)[:6],
        width=width,
        height=height,
        tile_size=int(tile_size),
        bands=fp.bands,
        dtype=fp.dtype,
    )
    lo, hi = _scaling(scale_paths or paths, fp.bands, tuple(percentiles), nodata)
    grid.scale_min = _per_band(scale_min, lo, len(fp.bands))
    grid.scale_max = _per_band(scale_max, hi, len(fp.bands))
    for i, (a, z) in enumerate(zip(grid.scale_min, grid.scale_max, strict=True)):
        if not z > a:
            raise ValueError(f"band {fp.bands[i]}: scaling max {z} is not above min {a}")
    return grid


def grid_step(*, images: list[str], scale_images: list[str] | None = None, train_dates: list[str] | None = None,
              out: str, params: GridParams) -> None:
    """The common grid over one image per granule, scaled on images of the training dates.

    ``scale_images`` default to ``images``. ``train_dates`` are recorded in the grid: they are what
    the grid and the encoders learn from, fixed by the first run (see :mod:`landtaxa.plan`).
    """
    numbered = params.bands if params.bands and all(isinstance(b, int) for b in params.bands) else None
    within = None
    if params.aoi:  # the grid covers the area of interest's bounds (within the images')
        # imported here: its readers (pyogrio, shapely) stay out of every other step that loads a grid
        from landtaxa.inputs.aoi import aoi_bounds, check_overlap

        fp = footprint(images, params.crs, params.resolution, numbered)
        check_overlap(params.aoi, fp.bounds, fp.crs)
        within = aoi_bounds(params.aoi, fp.crs)
    grid = build_grid(images, tile_size=params.tile_size, bands=numbered, crs=params.crs,
                      resolution=params.resolution, scale_min=params.scale_min, scale_max=params.scale_max,
                      percentiles=params.percentiles, nodata=params.nodata, scale_paths=scale_images, within=within)
    grid.train_dates = list(train_dates or [])
    grid.aoi = params.aoi if not params.aoi or is_gdal_path(params.aoi) else os.path.abspath(params.aoi)
    grid.save(out)
    log.info(
        "grid: %d x %d px at %.2f, %d x %d tiles of %d px (%.0f units); scaling %s..%s; training dates %s",
        grid.width, grid.height, grid.resolution, grid.n_rows, grid.n_cols, grid.tile_size,
        grid.tile_metres, grid.scale_min, grid.scale_max, ", ".join(grid.train_dates),
    )


# --------------------------------------------------------------------------- areas

# WGS 84 ellipsoid, for areas on a geographic grid.
WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def _authalic_q(lat_rad: np.ndarray) -> np.ndarray:
    """q(phi) of the WGS 84 ellipsoid: the area from the equator to phi is a^2/2 * dlon * q(phi)."""
    e2 = WGS84_F * (2 - WGS84_F)
    e = math.sqrt(e2)
    s = np.sin(lat_rad)
    return (1 - e2) * (s / (1 - e2 * s * s) - np.log((1 - e * s) / (1 + e * s)) / (2 * e))


def pixel_areas_km2(crs: str | CRS, transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Area in km2 of the pixels at ``rows``, ``cols`` of a raster with this CRS and geotransform.

    Projected CRS: every pixel alike, measured in the projection's plane (in metres, whatever
    the CRS's unit; UTM's scale factor makes it up to about 0.1% off the ground's). Geographic
    CRS: each pixel's latitude-longitude box on the WGS 84 ellipsoid, exactly for a north-up
    raster (for another datum's ellipsoid the error is far below 0.1%).
    """
    crs = CRS.from_user_input(crs)
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    det = abs(transform.a * transform.e - transform.b * transform.d)
    if not crs.is_geographic:
        metres = crs.linear_units_factor[1] if crs.is_projected else 1.0
        return np.full(rows.shape, det * metres**2 / 1e6)
    top = np.radians(np.clip(transform.d * cols + transform.e * rows + transform.f, -90, 90))
    bottom = np.radians(np.clip(np.degrees(top) + transform.e, -90, 90))
    if transform.b == 0 and transform.d == 0:
        return np.abs(_authalic_q(top) - _authalic_q(bottom)) * WGS84_A**2 / 2 * math.radians(abs(transform.a)) / 1e6
    radius = WGS84_A * (1 - WGS84_F / 3)  # rotated grid: the cosine-of-latitude approximation
    return (radius / 1e3) ** 2 * math.radians(1) ** 2 * det * np.cos((top + bottom) / 2)


def tile_areas_km2(grid: Grid, tile_ids: np.ndarray | None = None) -> np.ndarray:
    """Area in km2 of each tile of ``tile_ids`` (default: every tile, in tile-id order)."""
    ids = np.arange(grid.n_tiles) if tile_ids is None else np.asarray(tile_ids)
    rows, cols = grid.tile_rowcol(ids)
    return pixel_areas_km2(grid.crs, grid.tile_transform, rows, cols)


# --------------------------------------------------------------------------- tiling


def io_block(tile_size: int) -> int:
    """Side in px of the aligned mosaics' GeoTIFF blocks: whole tiles, a multiple of 16 (GeoTIFF's rule for tiled
    files), and at least 256 px (fewer, larger blocks compress better) unless one tile is larger."""
    unit = tile_size * 16 // math.gcd(tile_size, 16)
    return unit * max(1, math.ceil(256 / unit))


def window_side(tile_size: int, window_px: int) -> int:
    """Side in px of the windows of :func:`windows`: ``window_px`` rounded down to whole blocks of :func:`io_block`
    (so each block of a mosaic is read or written once), or below one block to whole tiles (at least one)."""
    block = io_block(tile_size)
    if window_px >= block:
        return block * (window_px // block)
    return tile_size * max(1, window_px // tile_size)


def windows(grid: Grid, window_px: int) -> list[tuple[int, int, Window]]:
    """Square windows covering the grid, row of windows by row of windows, each with the tile row and column of its
    top-left tile, :func:`window_side` on a side; those at the grid's right and bottom edges are cut there.

    A step that walks the region window by window holds one window, whatever the region's width and height."""
    side = window_side(grid.tile_size, window_px)
    ts = grid.tile_size
    return [(y // ts, x // ts, Window(x, y, min(side, grid.width - x), min(side, grid.height - y)))
            for y in range(0, grid.height, side) for x in range(0, grid.width, side)]


def window_tile_ids(grid: Grid, r0: int, c0: int, window: Window) -> np.ndarray:
    """The ids of a window's tiles, row-major within the window (the order of :func:`to_tiles`)."""
    rows = np.arange(r0, r0 + window.height // grid.tile_size)
    cols = np.arange(c0, c0 + window.width // grid.tile_size)
    return (rows[:, None] * grid.n_cols + cols[None, :]).reshape(-1)


def to_tiles(block: np.ndarray, tile_size: int) -> np.ndarray:
    """(C, r*ts, c*ts) -> (r*c, C, ts, ts), tiles in row-major order."""
    c, h, w = block.shape
    r, k = h // tile_size, w // tile_size
    t = block.reshape(c, r, tile_size, k, tile_size).transpose(1, 3, 0, 2, 4)
    return t.reshape(r * k, c, tile_size, tile_size)


def tile_fractions(mask: np.ndarray, tile_size: int) -> np.ndarray:
    """Fraction of valid pixels per tile of a (rows*ts, cols*ts) boolean mask."""
    h, w = mask.shape
    blocks = mask.reshape(h // tile_size, tile_size, w // tile_size, tile_size)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _per_band(value: Sequence[float] | float | None, fallback: list[float], n: int) -> list[float]:
    if value is None:
        return [float(v) for v in fallback]
    if isinstance(value, (int, float)):
        return [float(value)] * n
    if len(value) != n:
        raise ValueError(f"scaling has {len(value)} values for {n} bands")
    return [float(v) for v in value]


def unreadable_pixels(path: str | os.PathLike, err: Exception, what: str = "", mask: str | None = None) -> ValueError:
    """The error for a raster whose header opened but whose pixels cannot be decoded (or, remote, could not be
    fetched: then it names the item and asset, :func:`~landtaxa.inputs.vrt.remote_read_failure`)."""
    remote = remote_read_failure(path, err, mask)
    if remote is not None:
        return remote
    return ValueError(
        f"{path}{what}: cannot read pixels (the file is corrupt or truncated: {err}); copy it again from its source"
    )


def _scaling(
    paths: Sequence[str | os.PathLike], bands: list[int], percentiles: tuple[float, float],
    nodata: float | None = None, max_side: int = 512,
) -> tuple[list[float], list[float]]:
    """Per-band percentiles of valid pixels from a decimated read of every raster."""
    samples: list[np.ndarray] = []
    for path in paths:
        with open_georeferenced(path, "image") as src:
            f = max(1, math.ceil(max(src.width, src.height) / max_side))
            shape = (len(bands), max(1, src.height // f), max(1, src.width // f))
            try:
                data = src.read(bands, out_shape=shape, resampling=Resampling.nearest, masked=True)
            except rasterio.errors.RasterioIOError as err:
                raise unreadable_pixels(path, err) from err
            valid = ~np.ma.getmaskarray(data).any(axis=0)
            if nodata is not None:
                valid &= ~(np.isnan(data.data) if np.isnan(nodata) else data.data == nodata).any(axis=0)
            samples.append(np.asarray(data.data)[:, valid].astype(np.float64))
    pixels = np.concatenate(samples, axis=1)
    pixels = pixels[:, np.isfinite(pixels).all(axis=0)]
    if pixels.shape[1] == 0:
        raise ValueError("no valid pixel in any image: cannot derive the radiometric scaling")
    lo = np.percentile(pixels, percentiles[0], axis=1)
    hi = np.percentile(pixels, percentiles[1], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo.tolist(), hi.tolist()
