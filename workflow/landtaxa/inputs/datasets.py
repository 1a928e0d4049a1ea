"""Input datasets by name: a local file or any GDAL dataset string, and the error every input check raises.

A path may be a plain file or a GDAL dataset string (``/vsizip/archive.zip/a.tif``,
``/vsicurl/https://...``, ``SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630``): such strings go to
GDAL as they are; only the local file behind one, if any, is checked and tracked. :func:`openable`
gives what GDAL opens for a path, signed when a signing hook is in use. This module needs nothing
beyond the standard library (and :mod:`landtaxa.runtime`), so every step may ask it.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from landtaxa.runtime import sign, signing

# A GDAL subdataset string: DRIVER:rest, e.g. SENTINEL2_L2A:/x/MTD_MSIL2A.xml:10m:EPSG_32630,
# HDF5:"f.h5"://band, NETCDF:"f.nc":var. Two or more characters (not a drive letter), no "//".
_SUBDATASET = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")
_ARCHIVE = re.compile(r"^/vsi(zip|tar|gzip|7z|rar)/(.+?\.(zip|tar|tgz|tar\.gz|gz|7z|rar))(/|$)", re.I)


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


class InventoryError(ValueError):
    """A problem with the images the config points at."""
