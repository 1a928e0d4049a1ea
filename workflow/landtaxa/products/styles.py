"""Names and styles for the categorical maps: class labels, GDAL category names, QGIS styles.

There are no land-cover labels to name the clusters with, so each class is named by what the
data says about it: its number, its size in tiles and km2, its share of the mapped area, and
whether its tiles keep their kind through the sequence ("stable") or on which dates many of
them change kind. The same names reach every reader of a map:

- GDAL (``gdalinfo``, QGIS's identify tool, rasterio-free tools) through the PAM sidecar
  ``<map>.tif.aux.xml``: per band, the category names and a raster attribute table (value,
  tiles, km2, share, name, colour). A GeoTIFF cannot store category names itself, and
  rasterio cannot write them, so the sidecar is written here as XML.
- QGIS through the default style ``<map>.qml`` beside the ``.tif`` (QGIS applies a ``.qml``
  of the same base name when the layer is added): a paletted renderer with one entry per class
  in the colour table's colours, labelled with the class names.

The per-date kinds can also come as one GeoTIFF with one band per date
(:func:`write_kinds_stack`). QGIS's temporal controller reads no band time from a GeoTIFF
itself (its GDAL provider takes times from netCDF-style multidimensional sources only), but
QGIS >= 3.38 has a "fixed time range per band" temporal mode stored in the layer style. The
stack's ``.qml`` carries that mode with one range per band, from its date up to the next
date, so the temporal controller steps through the dates as soon as the layer is added (older
QGIS ignores the mode and shows band 1). The date is also the band description and the
band's ``DATE`` metadata item, which GDAL, rasterio and xarray show, and which a QGIS user
can turn into ranges with the expression ``to_datetime(@band_description)`` in the
per-band table of the layer's temporal properties.
"""

from __future__ import annotations

import datetime as dt
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from landtaxa.inputs.grid import Grid, pixel_areas_km2
from landtaxa.products.rasters import NODATA, label_image
from landtaxa.storage import atomic_path

# GDAL raster attribute table field types and usages (gdal.h: GDALRATFieldType, GDALRATFieldUsage).
_RAT_INTEGER, _RAT_REAL, _RAT_STRING = 0, 1, 2
_GFU_GENERIC, _GFU_PIXEL_COUNT, _GFU_NAME, _GFU_MINMAX = 0, 1, 2, 5
_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 6, 7, 8, 9

# Qgis::RasterTemporalMode::FixedRangePerBand, QGIS >= 3.38.
_QGIS_FIXED_RANGE_PER_BAND = 3


# --- what the data says about each class ----------------------------------------------------

def class_summary(labels: np.ndarray, k: int, areas_km2: np.ndarray | float,
                  kind: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per class: ``tiles`` (K,), ``km2`` (K,), ``share`` of the mapped area (K,) and, with the
    (N, T) per-date ``kind``, ``change_share`` (K, T-1): the share of the class's tiles whose kind
    differs between date t and date t+1."""
    labels = np.asarray(labels)
    areas = np.broadcast_to(np.asarray(areas_km2, np.float64), labels.shape)
    tiles = np.bincount(labels, minlength=k)[:k]
    km2 = np.bincount(labels, weights=areas, minlength=k)[:k]
    total = km2.sum()
    out = {"tiles": tiles, "km2": km2, "share": km2 / total if total > 0 else np.zeros(k)}
    if kind is not None:
        kind = np.asarray(kind)
        if kind.shape[0] != len(labels):
            raise ValueError(f"kind has {kind.shape[0]} tiles, labels {len(labels)}")
        # one pair of dates at a time: no (N, T) float64 array of changes (400 MB at 1,000,000 tiles x 50 dates)
        counts = np.stack([np.bincount(labels, weights=(kind[:, t + 1] != kind[:, t]).astype(np.float64),
                                       minlength=k)[:k] for t in range(kind.shape[1] - 1)], axis=1) \
            if kind.shape[1] > 1 else np.zeros((k, 0))
        out["change_share"] = counts / np.maximum(tiles, 1)[:, None]
    return out


def format_km2(km2: float) -> str:
    """An area for a label: whole km2 from 100 up (with thousands separators), 3 digits below."""
    return f"{km2:,.0f}" if km2 >= 100 else f"{km2:.3g}"


def format_share(share: float) -> str:
    """A share for a label: whole percent from 10 % up, one decimal below."""
    return f"{share:.0%}" if share >= 0.1 else f"{share:.1%}"


def class_labels(labels: np.ndarray, k: int, areas_km2: np.ndarray | float, kind: np.ndarray | None = None,
                 dates: Sequence[str] | None = None, min_share: float = 0.1, max_dates: int = 2,
                 prefix: str = "c") -> list[str]:
    """One name per class, built from the data: ``"c3: 163 tiles, 163 km2, 12%, stable"``.

    ``labels`` (N,) the cluster of each tile, ``areas_km2`` the area of each tile (or one area
    for all). With the (N, T) per-date ``kind`` and the ``dates``, a class whose tiles change kind
    between consecutive dates is named by the (at most ``max_dates``) dates on which the largest
    shares of its tiles take a new kind, ``"changes on 2023-07-25 (41%)"``; a class where no date
    reaches ``min_share`` of its tiles is ``"stable"``.
    """
    summary = class_summary(labels, k, areas_km2, kind)
    if kind is not None and (dates is None or len(dates) != np.asarray(kind).shape[1]):
        raise ValueError("class_labels needs one date per column of kind")
    names = []
    for c in range(k):
        name = (f"{prefix}{c}: {summary['tiles'][c]:,} tiles, {format_km2(summary['km2'][c])} km2, "
                f"{format_share(summary['share'][c])}")
        if kind is not None:
            shares = summary["change_share"][c]
            top = [t for t in np.argsort(-shares, kind="stable")[:max_dates] if shares[t] >= min_share]
            if top:
                name += ", changes on " + ", ".join(f"{dates[t + 1]} ({format_share(shares[t])})"
                                                   for t in sorted(top))
            else:
                name += ", stable"
        names.append(name)
    return names


# --- colours ----------------------------------------------------------------------------------

def colour_bytes(colours: np.ndarray) -> list[tuple[int, int, int]]:
    """(K, 3) colours in [0, 1] -> K (r, g, b) bytes, rounded exactly as the GeoTIFF colour table is."""
    return [tuple(int(round(255 * v)) for v in c) for c in np.asarray(colours, np.float64)]


def colour_hex(colours: np.ndarray) -> list[str]:
    """(K, 3) colours in [0, 1] -> K ``#rrggbb`` strings (the GeoTIFF colour table's bytes)."""
    return ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in colour_bytes(colours)]


def colour_table(colours: np.ndarray, nodata: int = NODATA) -> dict[int, tuple[int, int, int, int]]:
    """The colour table written into the maps: one opaque entry per class, nodata transparent."""
    table = {i: (*rgb, 255) for i, rgb in enumerate(colour_bytes(colours))}
    table[nodata] = (0, 0, 0, 0)
    return table


# --- GDAL: category names and a raster attribute table in the PAM sidecar ---------------------

def _field(rat: ET.Element, index: int, name: str, ftype: int, usage: int) -> None:
    defn = ET.SubElement(rat, "FieldDefn", index=str(index))
    ET.SubElement(defn, "Name").text = name
    ET.SubElement(defn, "Type").text = str(ftype)
    ET.SubElement(defn, "Usage").text = str(usage)


def write_category_names(tif_path: str | os.PathLike, labels: Sequence[str], colours: np.ndarray | None = None,
                         nodata: int = NODATA) -> Path:
    """Write ``<tif>.aux.xml``: for every band, GDAL category names and a raster attribute table.

    Category ``i`` is the name of pixel value ``i`` (``labels[i]``). The attribute table has one
    row per class: ``value``, ``map_tiles`` and ``map_km2`` (pixels of that value in this band and
    their area), ``map_share`` (of the band's mapped area), ``name`` and, with ``colours``, the
    ``red``, ``green``, ``blue``, ``alpha`` of the colour table, so tools that build a legend from
    a raster attribute table (QGIS >= 3.30) get the same colours. The sidecar is rewritten whole;
    any earlier one (statistics of an older map) is replaced. Returns its path.
    """
    tif_path = Path(tif_path)
    k = len(labels)
    if k > nodata:
        raise ValueError(f"{k} class names do not fit values 0..{nodata - 1}")
    rgb = colour_bytes(colours) if colours is not None else None
    if rgb is not None and len(rgb) != k:
        raise ValueError(f"{len(rgb)} colours for {k} class names")
    root = ET.Element("PAMDataset")
    with rasterio.open(tif_path) as src:
        rows, cols = np.mgrid[0:src.height, 0:src.width]
        area = pixel_areas_km2(src.crs, src.transform, rows, cols) if src.crs else np.ones(rows.shape)
        for b in range(1, src.count + 1):
            data = src.read(b)
            has = data != nodata
            tiles = np.bincount(data[has], minlength=k)[:k]
            km2 = np.bincount(data[has], weights=area[has], minlength=k)[:k]
            total = km2.sum()
            band = ET.SubElement(root, "PAMRasterBand", band=str(b))
            names = ET.SubElement(band, "CategoryNames")
            for label in labels:
                ET.SubElement(names, "Category").text = label
            rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
            fields = [("value", _RAT_INTEGER, _GFU_MINMAX), ("map_tiles", _RAT_INTEGER, _GFU_PIXEL_COUNT),
                      ("map_km2", _RAT_REAL, _GFU_GENERIC), ("map_share", _RAT_REAL, _GFU_GENERIC),
                      ("name", _RAT_STRING, _GFU_NAME)]
            if rgb is not None:
                fields += [("red", _RAT_INTEGER, _GFU_RED), ("green", _RAT_INTEGER, _GFU_GREEN),
                           ("blue", _RAT_INTEGER, _GFU_BLUE), ("alpha", _RAT_INTEGER, _GFU_ALPHA)]
            for i, (name, ftype, usage) in enumerate(fields):
                _field(rat, i, name, ftype, usage)
            for c in range(k):
                row = ET.SubElement(rat, "Row", index=str(c))
                values = [c, int(tiles[c]), f"{km2[c]:.6g}", f"{km2[c] / total if total else 0.0:.6g}", labels[c]]
                if rgb is not None:
                    values += [*rgb[c], 255]
                for v in values:
                    ET.SubElement(row, "F").text = str(v)
    ET.indent(root, space="  ")
    aux = tif_path.with_name(tif_path.name + ".aux.xml")
    with atomic_path(aux) as tmp:
        tmp.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
    return aux


# --- QGIS: a paletted-renderer style, optionally with a time range per band -------------------

def band_time_ranges(dates: Sequence[str]) -> list[tuple[str, str]]:
    """One ``(begin, end)`` ISO range per date, UTC: from each date up to the next date (excluded),
    and one day for the last, so a temporal controller always shows the latest observed kind."""
    days = [dt.date.fromisoformat(str(d)) for d in dates]
    ends = days[1:] + [days[-1] + dt.timedelta(days=1)] if days else []
    return [(f"{a.isoformat()}T00:00:00Z", f"{b.isoformat()}T00:00:00Z") for a, b in zip(days, ends, strict=True)]


def qml_text(colours: np.ndarray, labels: Sequence[str], nodata: int = NODATA, band: int = 1,
             dates: Sequence[str] | None = None) -> str:
    """The QGIS layer style (QML) of a categorical map: see :func:`write_qml`."""
    if len(colours) != len(labels):
        raise ValueError(f"{len(colours)} colours for {len(labels)} class names")
    temporal = dates is not None and len(dates) > 0
    root = ET.Element("qgis", version="3.38.0" if temporal else "3.28.0", styleCategories="AllStyleCategories",
                      hasScaleBasedVisibilityFlag="0", minScale="1e+08", maxScale="0")
    if temporal:
        node = ET.SubElement(root, "temporal", enabled="1", mode=str(_QGIS_FIXED_RANGE_PER_BAND), fetchMode="0")
        ranges = ET.SubElement(node, "ranges")
        for b, (begin, end) in enumerate(band_time_ranges(dates), start=1):
            ET.SubElement(ranges, "range", band=str(b), begin=begin, end=end, includeBeginning="1", includeEnd="0")
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", enabled="false", maxOversampling="2",
                  zoomedInResamplingMethod="nearestNeighbour", zoomedOutResamplingMethod="nearestNeighbour")
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band=str(band), opacity="1",
                             alphaBand="-1", nodataColor="")
    transparency = ET.SubElement(renderer, "rasterTransparency")
    single = ET.SubElement(transparency, "singleValuePixelList")
    ET.SubElement(single, "pixelListEntry", min=str(nodata), max=str(nodata), percentTransparent="100")
    minmax = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", "0.02"), ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(minmax, tag).text = text
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (hexcol, label) in enumerate(zip(colour_hex(colours), labels, strict=True)):
        ET.SubElement(palette, "paletteEntry", value=str(value), color=hexcol, alpha="255", label=label)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0", colorizeRed="255",
                  colorizeGreen="128", colorizeBlue="128", colorizeStrength="100", invertColors="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root, space="  ")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_qml(qml_path: str | os.PathLike, colours: np.ndarray, labels: Sequence[str], nodata: int = NODATA,
              band: int = 1, dates: Sequence[str] | None = None) -> None:
    """Write a QGIS style: a paletted renderer of ``band`` with value ``i`` drawn in ``colours[i]``
    (the GeoTIFF colour table's bytes) and labelled ``labels[i]``; ``nodata`` transparent.

    With ``dates`` (one per band), the style also sets QGIS's "fixed time range per band"
    temporal mode (QGIS >= 3.38), band b valid from ``dates[b-1]`` up to the next date, so the
    temporal controller shows each date's band. Saved as ``<map>.qml`` beside ``<map>.tif``, QGIS
    applies it when the layer is added.
    """
    with atomic_path(qml_path) as tmp:
        tmp.write_text(qml_text(colours, labels, nodata, band, dates), encoding="utf-8")


def write_map_styles(tif_path: str | os.PathLike, colours: np.ndarray, labels: Sequence[str],
                     dates: Sequence[str] | None = None, nodata: int = NODATA) -> tuple[Path, Path]:
    """Give a categorical map its names and style: ``<map>.tif.aux.xml`` (GDAL category names and
    attribute table) and ``<map>.qml`` (QGIS style; with ``dates``, one time range per band).
    Returns both paths."""
    tif_path = Path(tif_path)
    aux = write_category_names(tif_path, labels, colours, nodata)
    qml = tif_path.with_suffix(".qml")
    write_qml(qml, colours, labels, nodata, dates=dates)
    return aux, qml


# --- the per-date kinds as one multi-band GeoTIFF ---------------------------------------------

def write_kinds_stack(grid: Grid, tile_ids: np.ndarray, kind: np.ndarray, colours: np.ndarray,
                      dates: Sequence[str], labels: Sequence[str], out_tif: str | os.PathLike) -> np.ndarray:
    """Write the kind of every tile on every date as one Cloud-Optimized GeoTIFF, band t = ``dates[t]``.

    ``kind`` (N, T) over ``tile_ids``; one pixel per tile, uint8, nodata 255. Each band's
    description and ``DATE`` metadata item is its date. A GeoTIFF palette can only belong to a
    one-band image, so the colours travel in the sidecars written beside it (as for every map):
    the attribute table's colour columns and the category names in ``.tif.aux.xml``, and the QGIS
    style ``.qml`` with one time range per band (module docstring). Returns the (T, rows, cols) stack.
    """
    kind = np.asarray(kind)
    n_t = len(dates)
    if kind.shape != (len(tile_ids), n_t):
        raise ValueError(f"kind has shape {kind.shape}, expected ({len(tile_ids)}, {n_t}) for the tiles and dates")
    if kind.size and kind.max() >= NODATA:
        raise ValueError(f"at most {NODATA} kinds fit a byte map, got {kind.max() + 1}")
    if len(labels) != len(colours):
        raise ValueError(f"{len(labels)} class names for {len(colours)} colours")
    stack = np.stack([label_image(grid, tile_ids, kind[:, t]) for t in range(n_t)])
    profile = {"driver": "GTiff", "width": grid.n_cols, "height": grid.n_rows, "count": n_t, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.tile_transform, "nodata": NODATA, "photometric": "MINISBLACK"}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(stack)
            ds.update_tags(DATES=",".join(str(d) for d in dates), CLASSES=str(len(labels)))
            for b, date in enumerate(dates, start=1):
                ds.set_band_description(b, str(date))
                ds.update_tags(b, DATE=str(date))
        with mem.open() as ds, atomic_path(out_tif) as tmp:
            rasterio.shutil.copy(ds, tmp, driver="COG", compress="deflate", overview_resampling="mode")
    write_map_styles(out_tif, colours, labels, dates=[str(d) for d in dates])
    return stack
