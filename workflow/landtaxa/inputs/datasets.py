"""Input datasets by name: a local file or any GDAL dataset string, how to open one, and the error every input
check raises.

A path may be a plain file or a GDAL dataset string (``/vsizip/archive.zip/a.tif``,
``/vsicurl/https://...``, ``SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630``): such strings go to
GDAL as they are; only the local file behind one, if any, is checked and tracked. :func:`openable`
gives what GDAL opens for a path, signed when a signing hook is in use. :func:`open_georeferenced`
opens an input raster (image, mask, band file, truth) and refuses, in one message shape, one that is
missing, unreadable, or not georeferenced. This module needs nothing beyond the standard library (and
:mod:`landtaxa.runtime`) at import, so every step may ask it; rasterio is imported only to open a raster.
"""

from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from landtaxa.runtime import sign, signing

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

# A GDAL subdataset string: DRIVER:rest, e.g. SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630,
# HDF5:"f.h5"://band, NETCDF:"f.nc":var. Two or more characters (not a drive letter), no "//".
_SUBDATASET = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")
_ARCHIVE = re.compile(r"^/vsi(zip|tar|gzip|7z|rar)/(.+?\.(zip|tar|tgz|tar\.gz|gz|7z|rar))(/|$)", re.I)
# A remote GDAL path with a query string (where a signed URL carries its token).
_QUERY = re.compile(r"(/vsi[a-z0-9_]+/[a-z0-9+.-]+://[^\s?'`\"]+)\?[^\s'`\"]*", re.I)


def is_gdal_path(path: str | os.PathLike) -> bool:
    """True for a GDAL dataset string that is not a plain local file path.

    That is a ``/vsi...`` path (``/vsizip/a.zip/b.tif``, ``/vsicurl/https://...``) or a
    subdataset string (``SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630``, ``NETCDF:"f.nc":v``).
    Such strings are handed to GDAL as they are and never checked with ``os.path``.
    """
    text = str(path)
    return text.startswith("/vsi") or bool(_SUBDATASET.match(text))


def local_file(path: str | os.PathLike) -> str | None:
    """The local file a dataset reads: the path itself, the archive of a ``/vsizip/``-like path, the
    file of a subdataset string; None for a remote one (``/vsicurl/``, ``/vsis3/``, ...)."""
    text = str(path)
    if not is_gdal_path(text):
        return text
    if m := _ARCHIVE.match(text):
        return m.group(2)
    if _SUBDATASET.match(text):
        rest = text.split(":", 1)[1].strip('"')
        for part in (rest.split('":')[0], rest.rsplit(":", 2)[0], rest.split(":")[0]):
            if os.path.exists(part):
                return part
    return None


def exists(path: str | os.PathLike) -> bool:
    """Whether a dataset can be looked for: a local file (or the archive behind a GDAL path) exists;
    a remote GDAL path counts as present (GDAL itself says when it is not)."""
    local = local_file(path)
    return local is None or os.path.exists(local)


def openable(path: str | os.PathLike) -> str:
    """What to hand GDAL for ``path``: the path itself, unless a signing hook is in use
    (:func:`landtaxa.runtime.use_signer`): then a remote href signed, and a VRT file with remote
    sources as its XML text with those sources signed (opened from memory: the file keeps the
    unsigned hrefs, and no signed URL lands in any file)."""
    text = str(path)
    if not signing():
        return text
    if text.startswith("/vsicurl/"):
        return "/vsicurl/" + sign(text[len("/vsicurl/"):])
    if not text.lower().endswith(".vrt") or not os.path.isfile(text):
        return text
    root = ET.parse(text).getroot()
    signed = False
    for source in root.iter("SourceFilename"):
        if (source.text or "").startswith("/vsicurl/"):
            source.text = "/vsicurl/" + sign(source.text[len("/vsicurl/"):])
            signed = True
    return ET.tostring(root, encoding="unicode") if signed else text


def unsigned(message: str) -> str:
    """``message`` with the query string of every remote URL in it cut (``?...``): a signed URL carries its
    token there, and messages go to logs."""
    return _QUERY.sub(r"\1?...", message)


class InventoryError(ValueError):
    """A problem with the input files the config points at (images, masks, truth, area of interest)."""


def open_georeferenced(
    path: str | os.PathLike, what: str = "raster",
    failure: Callable[[Exception], Exception | None] | None = None,
) -> DatasetReader:
    """Open the input raster ``path`` (a local file or a GDAL dataset string; through :func:`openable`, so signed
    when a signing hook is in use) and return it open (close it, or use it in a ``with``), georeferenced.

    Raises :class:`InventoryError` ``"<path>: <what>: <problem>"`` when the file is not found (the local file
    behind a GDAL string; a remote one is left to GDAL), GDAL cannot read it (with GDAL's reason, URLs
    unsigned), or it has no CRS or no geotransform. ``what`` names the file's role for the user: ``"image"``,
    ``"mask of image a.tif"``, ``"truth raster (config key truth)"``. ``failure``, given GDAL's error, may
    return a more telling error to raise instead (e.g. one naming the STAC item and asset of a remote read);
    None keeps the message above.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    text = str(path)
    if not exists(text):
        raise InventoryError(f"{text}: {what}: file not found")
    try:
        with warnings.catch_warnings():  # a raster without a geotransform is refused below, by name
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(openable(text))
    except RasterioIOError as err:
        better = failure(err) if failure is not None else None
        if better is not None:
            raise better from err
        raise InventoryError(f"{text}: {what}: not a readable raster (GDAL: {unsigned(str(err))})") from err
    problem = _not_georeferenced(src)
    if problem:
        src.close()
        raise InventoryError(f"{text}: {what}: {problem}")
    return src


def _not_georeferenced(src: DatasetReader) -> str | None:
    """What the open raster lacks to be placed on the ground, with how to fix it; None when nothing."""
    no_crs = src.crs is None or not src.crs.to_wkt()
    no_transform = src.transform.is_identity
    if not (no_crs or no_transform):
        return None
    if no_crs and no_transform and src.gcps[0]:
        return ("no CRS and no geotransform, only ground control points; warp it first, "
                "e.g. with gdalwarp -t_srs EPSG:<code>")
    if no_crs and no_transform:
        return ("no CRS and no geotransform; georeference it, e.g. with gdal_edit -a_srs EPSG:<code> "
                "-a_ullr <ulx> <uly> <lrx> <lry>")
    if no_crs:
        return "no CRS; georeference it, e.g. with gdal_edit -a_srs EPSG:<code>"
    return "no geotransform; georeference it, e.g. with gdal_edit -a_ullr <ulx> <uly> <lrx> <lry>"
