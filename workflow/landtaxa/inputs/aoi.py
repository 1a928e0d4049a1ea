"""The area of interest (AOI): a polygon file that bounds the region and selects its tiles.

An AOI is any vector file GDAL reads (GeoJSON, GeoPackage, Shapefile, or a GDAL string
such as ``/vsizip/aoi.zip/aoi.shp``), in any CRS, holding polygons or multipolygons; all
of its polygons together are the AOI. It is used three ways:

- :func:`aoi_bounds`: its bounds in the grid's CRS, for a grid that covers the AOI;
- :func:`check_overlap`: refuse, before any work, an AOI that misses the region (a wrong
  CRS or file is the usual cause), naming the file;
- :func:`tile_mask`: which tiles of a :class:`~landtaxa.inputs.grid.Grid` belong to the AOI: those
  whose *centre* lies inside it. This is exactly GDAL's rasterization of the polygon on the
  grid's one-pixel-per-tile transform (a pixel is burnt when its centre is inside).

Polygons are densified (each edge cut into pieces of at most 1/64 of the AOI's extent)
before being reprojected with :func:`rasterio.warp.transform_geom`, so edges that are
straight in the AOI's CRS stay close to their true course in the grid's CRS.

Tile areas (for statistics per cluster) are :func:`landtaxa.inputs.grid.tile_areas_km2`.

Needs ``pyogrio`` (reading) and ``shapely`` (geometry), imported on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.crs import CRS

if TYPE_CHECKING:  # a type only: the grid imports this module
    from landtaxa.inputs.grid import Grid

from landtaxa.inputs.datasets import InventoryError, is_gdal_path


@dataclass
class Aoi:
    """The polygons of an AOI file, as GeoJSON-like mappings in the file's CRS."""

    path: str
    crs: CRS
    geometries: list[dict[str, Any]]


def read_aoi(path: str | os.PathLike, layer: str | int | None = None) -> Aoi:
    """Read the polygons of an AOI file (first layer unless ``layer`` is given).

    Raises InventoryError naming the file when it is missing, unreadable, has no CRS, or
    holds no polygon or a non-polygon geometry. Invalid polygons (self-intersections) are
    repaired with :func:`shapely.make_valid`.
    """
    import pyogrio
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError

    text = str(path)
    if not is_gdal_path(text) and not os.path.exists(text):
        raise InventoryError(f"{text}: AOI file not found (config key aoi)")
    try:
        meta, _, wkb, _ = pyogrio.raw.read(text, layer=layer, columns=[])
    except (DataSourceError, DataLayerError, OSError, ValueError) as err:
        raise InventoryError(f"{text}: not a readable polygon file (config key aoi; {err})") from err
    if not meta.get("crs"):
        raise InventoryError(f"{text}: the AOI file has no CRS (a Shapefile needs its .prj); config key aoi")
    geometries = []
    for i, geom in enumerate(shapely.from_wkb(wkb)):
        if geom is None or geom.is_empty:
            continue
        if geom.geom_type == "GeometryCollection":
            geom = shapely.union_all([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise InventoryError(
                f"{text}: feature {i + 1} is a {geom.geom_type}; the AOI must hold polygons (config key aoi)"
            )
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        geometries.append(shapely.geometry.mapping(geom))
    if not geometries:
        raise InventoryError(f"{text}: the AOI file holds no polygon (config key aoi)")
    return Aoi(text, CRS.from_user_input(meta["crs"]), geometries)


def _as_aoi(aoi: Aoi | str | os.PathLike) -> Aoi:
    return aoi if isinstance(aoi, Aoi) else read_aoi(aoi)


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:80]


def reproject(aoi: Aoi | str | os.PathLike, crs: Any) -> list[Any]:
    """The AOI's polygons as shapely geometries in ``crs`` (densified first, see the module docstring)."""
    import shapely
    from rasterio.warp import transform_geom

    aoi = _as_aoi(aoi)
    dst = CRS.from_user_input(crs)
    shapes = [shapely.geometry.shape(g) for g in aoi.geometries]
    if aoi.crs == dst:
        return shapes
    x0, y0, x1, y1 = shapely.union_all(shapes).bounds
    step = max(x1 - x0, y1 - y0) / 64
    out = []
    for shape in shapes:
        dense = shapely.segmentize(shape, step) if step > 0 else shape
        moved = shapely.geometry.shape(transform_geom(aoi.crs, dst, shapely.geometry.mapping(dense)))
        if not np.isfinite(moved.bounds).all():
            raise InventoryError(
                f"{aoi.path}: the AOI cannot be expressed in {_crs_name(dst)} (it reaches where that CRS is "
                "undefined); use a smaller AOI or a grid CRS that covers it (config key aoi)"
            )
        out.append(moved if moved.is_valid else shapely.make_valid(moved))
    return out


def aoi_bounds(aoi: Aoi | str | os.PathLike, crs: Any) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the AOI in ``crs``: the extent a grid must cover."""
    import shapely

    return tuple(float(v) for v in shapely.union_all(reproject(aoi, crs)).bounds)


def check_overlap(
    aoi: Aoi | str | os.PathLike, bounds: tuple[float, float, float, float], crs: Any, what: str = "the region"
) -> None:
    """Refuse an AOI whose polygons do not overlap ``bounds`` (in ``crs``) with some area.

    ``bounds`` is typically the images' union footprint (or the grid's bounds). Touching
    along an edge is not an overlap. The error names the file and both extents.
    """
    import shapely

    aoi = _as_aoi(aoi)
    shapes = shapely.union_all(reproject(aoi, crs))
    if shapes.intersection(shapely.box(*bounds)).area <= 0:
        fmt = ", ".join(f"{v:.0f}" if abs(v) > 360 else f"{v:.5f}" for v in shapes.bounds)
        reg = ", ".join(f"{v:.0f}" if abs(v) > 360 else f"{v:.5f}" for v in bounds)
        raise InventoryError(
            f"{aoi.path}: the AOI does not overlap {what} (AOI bounds ({fmt}), {what} ({reg}) in "
            f"{_crs_name(CRS.from_user_input(crs))}); check the AOI's extent and CRS (config key aoi)"
        )


def tile_mask(grid: Grid, aoi: Aoi | str | os.PathLike) -> np.ndarray:
    """Boolean (n_tiles,) array, True for the tiles whose centre lies inside the AOI.

    Tile ids are row-major (``tile_id = row * n_cols + col``, as :meth:`Grid.tile_rowcol`).
    Refuses an AOI that misses the grid, or that overlaps it without holding any tile centre
    (an AOI smaller than a tile: use a smaller ``tile_size``).
    """
    import shapely
    from rasterio.features import rasterize

    aoi = _as_aoi(aoi)
    check_overlap(aoi, grid.bounds, grid.crs, what="the grid")
    shapes = reproject(aoi, grid.crs)
    burnt = rasterize(
        [(shapely.geometry.mapping(s), 1) for s in shapes],
        out_shape=(grid.n_rows, grid.n_cols), transform=grid.tile_transform, fill=0, all_touched=False,
        dtype="uint8",
    )
    mask = burnt.astype(bool).ravel()
    if not mask.any():
        raise InventoryError(
            f"{aoi.path}: the AOI overlaps the grid but holds no tile centre (tiles of {grid.tile_metres:g} CRS "
            "units); use a larger AOI or a smaller tile_size (config keys aoi, tile_size)"
        )
    return mask
