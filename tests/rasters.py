"""Build small GeoTIFF fixtures in code, for tests.

Tests describe their rasters as numpy arrays plus georeferencing and write them with
:func:`write_raster`; no binary fixture is checked in. Typical use::

    from rasters import write_raster

    path = write_raster(tmp_path / "a.tif", np.ones((1, 20, 30), "uint16"), "EPSG:32631", (500000, 4000000, 10))

``transform`` is either an :class:`affine.Affine` or a north-up shorthand ``(x0, y0, res)``:
the upper-left corner ``(x0, y0)`` and a square pixel of side ``res`` (CRS units).
``crs=None`` writes a raster without a CRS. :func:`read_raster` reads one back with its
mask, and :func:`pixel_transform` builds the shorthand's Affine; :func:`corrupt_block` breaks one
block of a tiled GeoTIFF (a file whose header reads but whose pixels do not).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def pixel_transform(x0: float, y0: float, res: float) -> Affine:
    """North-up geotransform with upper-left corner (x0, y0) and square pixels of side ``res``."""
    return Affine(float(res), 0.0, float(x0), 0.0, -float(res), float(y0))


def write_raster(
    path: str | os.PathLike,
    array: np.ndarray,
    crs: str | None,
    transform: Affine | tuple[float, float, float],
    nodata: float | None = None,
    dtype: str | np.dtype | None = None,
    **options: object,
) -> Path:
    """Write ``array`` ((bands, h, w), or (h, w) for one band) as a GeoTIFF; return its path.

    ``dtype`` defaults to the array's; ``nodata`` (a value, or NaN for float rasters) is
    stored in the file's metadata. Other keywords are GDAL creation options (``tiled=True``,
    ``compress="deflate"``, ...). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"expected a (bands, h, w) or (h, w) array, got shape {data.shape}")
    dtype = np.dtype(dtype) if dtype is not None else data.dtype
    if not isinstance(transform, Affine):
        transform = pixel_transform(*transform)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": dtype.name,
        "transform": transform,
        **options,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype, copy=False))
    return path


def read_raster(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """All bands, the valid mask of band 1 (bool) and the profile of a raster."""
    with rasterio.open(path) as src:
        return src.read(), src.read_masks(1) > 0, dict(src.profile)


def tiff_block(path: Path, x: int = 1, y: int = 1) -> tuple[int, int]:
    """Byte offset and length of one block of band 1 of a GeoTIFF."""
    with rasterio.open(path) as src:
        return (int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1)),
                int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)))


def corrupt_block(path: Path) -> Path:
    """Overwrite one compressed block with garbage: the header stays valid, the pixels do not."""
    offset, length = tiff_block(path)
    data = bytearray(path.read_bytes())
    data[offset : offset + length] = b"\xff" * length
    path.write_bytes(bytes(data))
    return path
