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

from landtaxa.storage import read_json, write_json


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


def _snap(value: float, origin: float, step: float, up: bool) -> float:
    n = (value - origin) / step
    n = math.ceil(n - 1e-9) if up else math.floor(n + 1e-9)
    return origin + n * step


def build_grid(
    paths: Sequence[str | os.PathLike],
    tile_size: int,
    bands: Sequence[int] | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    scale_min: Sequence[float] | float | None = None,
    scale_max: Sequence[float] | float | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    nodata: float | None = None,
    scale_paths: Sequence[str | os.PathLike] | None = None,
) -> Grid:
    """Build the grid covering the union of the footprints of ``paths``.

    The CRS defaults to the first raster's and the resolution to its pixel size; the
    origin is snapped to the first raster's pixel lattice, so rasters on that lattice are
    copied without resampling. The region is padded to a whole number of tiles.
    Scaling not given in the config is taken from robust percentiles of a decimated
    sample of valid pixels of ``scale_paths`` (default: ``paths``), so that it reflects the
    whole sequence, not one season.
    """
    if not paths:
        raise ValueError("no images to build the grid from")
    with rasterio.open(paths[0]) as first:
        if first.crs is None:
            raise ValueError(f"{paths[0]}: raster has no CRS")
        dst_crs = CRS.from_user_input(crs) if crs else first.crs
        res = float(resolution) if resolution else abs(first.transform.a)
        if crs is None or CRS.from_user_input(crs) == first.crs:
            ox, oy = first.transform.c, first.transform.f
        else:
            ox, oy = 0.0, 0.0
        band_list = list(bands) if bands else list(range(1, first.count + 1))
        dtype = first.dtypes[0]
    lefts, bottoms, rights, tops = [], [], [], []
    for path in paths:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise ValueError(f"{path}: raster has no CRS")
            if max(band_list) > src.count:
                raise ValueError(f"{path}: has {src.count} bands, config asks for band {max(band_list)}")
            b = transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21)
        lefts.append(b[0])
        bottoms.append(b[1])
        rights.append(b[2])
        tops.append(b[3])
    left = _snap(min(lefts), ox, res, up=False)
    top = _snap(max(tops), oy, res, up=True)
    right = _snap(max(rights), ox, res, up=True)
    bottom = _snap(min(bottoms), oy, res, up=False)
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
        crs=dst_crs.to_wkt(),
        transform=tuple(transform)[:6],
        width=width,
        height=height,
        tile_size=int(tile_size),
        bands=band_list,
        dtype=dtype,
    )
    lo, hi = _scaling(scale_paths or paths, band_list, percentiles, nodata)
    grid.scale_min = _per_band(scale_min, lo, len(band_list))
    grid.scale_max = _per_band(scale_max, hi, len(band_list))
    for b, (a, z) in enumerate(zip(grid.scale_min, grid.scale_max, strict=True)):
        if not z > a:
            raise ValueError(f"band {band_list[b]}: scaling max {z} is not above min {a}")
    return grid


def _per_band(value: Sequence[float] | float | None, fallback: list[float], n: int) -> list[float]:
    if value is None:
        return [float(v) for v in fallback]
    if isinstance(value, (int, float)):
        return [float(value)] * n
    if len(value) != n:
        raise ValueError(f"scaling has {len(value)} values for {n} bands")
    return [float(v) for v in value]


def unreadable_pixels(path: str | os.PathLike, err: Exception, what: str = "") -> ValueError:
    """The error for a raster whose header opened but whose pixels cannot be decoded."""
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
        with rasterio.open(path) as src:
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
