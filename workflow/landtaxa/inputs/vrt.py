"""VRTs in physical units: bands of one or several rasters stacked on the finest band's pixels.

:func:`write_vrt` stacks bands of one or several rasters (all in one CRS) as bands 1..n of one
VRT, Float32, in physical units (``value = DN * scale + offset``), source nodata as NaN, on the
pixel lattice of the finest source: coarser sources (e.g. 20 m bands under 10 m ones) are
resampled by GDAL when read, nearest-neighbour by default. Where ``scale``/``offset``/``nodata``
are not given, each file's own GDAL values apply. :func:`wrap_raster` makes the same kind of VRT
for one plain multi-band raster with per-band scale/offset (image sheet rows with
``scale``/``offset`` columns). STAC items (:mod:`landtaxa.inputs.stac`) become images through
these VRTs too. Only headers are read here, never pixels; a VRT whose text would not change is
not rewritten, so Snakemake does not rerun what reads it.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landtaxa.inputs.datasets import InventoryError, is_gdal_path, open_georeferenced, unsigned
from landtaxa.storage import atomic_path

#: Resampling methods a VRT source accepts for sources coarser than the finest band.
RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average", "rms", "mode")

#: GDAL's prefixes of remote files (what ``http(s)://``, ``s3://`` and ``gs://`` hrefs become)
_REMOTE_PREFIXES = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsihdfs",
                    "/vsiwebhdfs")

_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64",
}


@dataclass
class _Source:
    crs: Any
    transform: Any
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: tuple[float | None, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    blocks: tuple[tuple[int, int], ...]


def _open_source(href: str, what: str) -> _Source:
    def remote(err: Exception) -> InventoryError | None:
        if not href.startswith(_REMOTE_PREFIXES):
            return None
        return InventoryError(f"{href}: {what}: cannot read the remote raster's header ({unsigned(str(err))}; "
                              f"transient errors are retried {_retries()} times)")

    with open_georeferenced(href, what, remote) as src:
        return _Source(src.crs, src.transform, src.width, src.height, src.count, tuple(src.dtypes),
                       tuple(src.nodatavals), tuple(src.scales), tuple(src.offsets), tuple(src.block_shapes))


def _per_band(values: Sequence[Any] | None, n: int, what: str) -> list[Any]:
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{len(values)} {what} for {n} bands")
    return values


def _num(value: float) -> str:
    """A number as VRT text: integers without a fraction, others exactly (repr)."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isfinite(value) and abs(value - round(value)) < 1e-9 and abs(value) < 1e15:
        return str(int(round(value)))
    return repr(value)


def _edge(value: float, up: bool) -> int:
    """Snap a fractional pixel coordinate outwards (to whole pixels, 1e-6 px tolerance)."""
    return math.ceil(value - 1e-6) if up else math.floor(value + 1e-6)


def vrt_xml(
    hrefs: Sequence[str],
    scales: Sequence[float | None] | None = None,
    offsets: Sequence[float | None] | None = None,
    bands: Sequence[int] | None = None,
    nodata: Sequence[float | None] | None = None,
    names: Sequence[str] | None = None,
    resampling: str = "nearest",
) -> str:
    """The VRT text of :func:`write_vrt` (reads the sources' headers, writes nothing)."""
    n = len(hrefs)
    if n == 0:
        raise ValueError("a VRT needs at least one band")
    if resampling not in RESAMPLINGS:
        raise ValueError(f"resampling {resampling!r} is not one of {', '.join(RESAMPLINGS)}")
    hrefs = [h if is_gdal_path(h) else os.path.abspath(h) for h in map(str, hrefs)]
    scales, offsets = _per_band(scales, n, "scales"), _per_band(offsets, n, "offsets")
    bands, nodata = _per_band(bands, n, "band indexes"), _per_band(nodata, n, "nodata values")
    names = _per_band(names, n, "names")
    sources = {}
    for href, name in zip(hrefs, names, strict=True):
        if href not in sources:
            sources[href] = _open_source(href, f"asset {name}" if name else "raster")
    first_href, first = next(iter(sources.items()))
    for href, src in sources.items():
        if src.crs != first.crs:
            raise InventoryError(
                f"{href}: its CRS ({src.crs.to_string()}) differs from {first_href}'s ({first.crs.to_string()}); "
                "the bands of one image must share a CRS"
            )
        t = src.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise InventoryError(f"{href}: the raster is not north-up (geotransform {tuple(t)[:6]})")
    for href, band in zip(hrefs, bands, strict=True):
        if band is not None and not 1 <= int(band) <= sources[href].count:
            raise InventoryError(f"{href}: has {sources[href].count} bands, asked for band {band}")
    # The output lattice: the finest asked source's, stretched to the union of all sources.
    fine = min((sources[h] for h in hrefs), key=lambda s: s.transform.a * -s.transform.e)
    ox, oy, rx, ry = fine.transform.c, fine.transform.f, fine.transform.a, -fine.transform.e
    boxes = [(s.transform.c, s.transform.f, s.transform.c + s.width * s.transform.a,
              s.transform.f + s.height * s.transform.e) for s in sources.values()]
    col0 = _edge(min((b[0] - ox) / rx for b in boxes), up=False)
    col1 = _edge(max((b[2] - ox) / rx for b in boxes), up=True)
    row0 = _edge(min((oy - b[1]) / ry for b in boxes), up=False)
    row1 = _edge(max((oy - b[3]) / ry for b in boxes), up=True)
    left, top = ox + col0 * rx, oy - row0 * ry

    root = ET.Element("VRTDataset", rasterXSize=str(col1 - col0), rasterYSize=str(row1 - row0))
    ET.SubElement(root, "SRS").text = first.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(_num(v) for v in (left, rx, 0, top, 0, -ry))
    for j, href in enumerate(hrefs):
        src = sources[href]
        k = int(bands[j] or 1) - 1
        scale = scales[j] if scales[j] is not None else src.scales[k]
        offset = offsets[j] if offsets[j] is not None else src.offsets[k]
        nod = nodata[j] if nodata[j] is not None else src.nodata[k]
        band = ET.SubElement(root, "VRTRasterBand", dataType="Float32", band=str(j + 1))
        if names[j]:
            ET.SubElement(band, "Description").text = str(names[j])
        ET.SubElement(band, "NoDataValue").text = "nan"
        cs = ET.SubElement(band, "ComplexSource", resampling=resampling)
        ET.SubElement(cs, "SourceFilename", relativeToVRT="0").text = href
        ET.SubElement(cs, "SourceBand").text = str(k + 1)
        props = {"RasterXSize": str(src.width), "RasterYSize": str(src.height)}
        if src.dtypes[k] in _GDAL_TYPES:
            props["DataType"] = _GDAL_TYPES[src.dtypes[k]]
        props["BlockXSize"], props["BlockYSize"] = str(src.blocks[k][1]), str(src.blocks[k][0])
        ET.SubElement(cs, "SourceProperties", props)
        ET.SubElement(cs, "SrcRect", xOff="0", yOff="0", xSize=str(src.width), ySize=str(src.height))
        t = src.transform
        ET.SubElement(cs, "DstRect", xOff=_num((t.c - left) / rx), yOff=_num((top - t.f) / ry),
                      xSize=_num(src.width * t.a / rx), ySize=_num(src.height * -t.e / ry))
        if nod is not None:
            ET.SubElement(cs, "NODATA").text = _num(nod)
        ET.SubElement(cs, "ScaleOffset").text = _num(offset if offset is not None else 0.0)
        ET.SubElement(cs, "ScaleRatio").text = _num(scale if scale is not None else 1.0)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_vrt(
    hrefs: Sequence[str],
    out_path: str | os.PathLike,
    scales: Sequence[float | None] | None = None,
    offsets: Sequence[float | None] | None = None,
    bands: Sequence[int] | None = None,
    nodata: Sequence[float | None] | None = None,
    names: Sequence[str] | None = None,
    resampling: str = "nearest",
) -> Path:
    """Write a VRT stacking ``hrefs`` (band ``bands[j]`` of each, default 1) as bands 1..n.

    Every band is Float32 in physical units, ``DN * scale + offset``: ``scale``/``offset``
    given as None (or not given) fall back to the file's own GDAL scale/offset (1 and 0
    when it has none). Source ``nodata`` (None: the file's own) becomes NaN, as does any
    place a source does not cover. All sources must share one CRS; the VRT takes the pixel
    lattice of the finest source and spans the union of their footprints, so a coarser
    source is resampled with ``resampling`` (one of :data:`RESAMPLINGS`; ``nearest`` keeps
    the source values, each 20 m pixel becoming 2 x 2 pixels at 10 m) when the VRT is read.
    ``names`` become the band descriptions.

    Local paths are written absolute; GDAL strings (``/vsicurl/...``) as they are. The file
    is written atomically and left untouched (same modification time) when its content
    would not change, so Snakemake does not rerun what reads it. Returns ``out_path``.
    """
    return write_text_if_changed(out_path, vrt_xml(hrefs, scales, offsets, bands, nodata, names, resampling))


def wrap_raster(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    scales: Sequence[float | None] | float | None = None,
    offsets: Sequence[float | None] | float | None = None,
    nodata: float | None = None,
) -> Path:
    """Wrap a plain multi-band raster in a VRT of the same bands in physical units.

    For an image sheet row with ``scale``/``offset`` columns (see :func:`parse_band_values`):
    one value applies to every band, a list gives one per band (None: the file's own GDAL
    scale/offset). A class band used as ``masks.band`` should get scale 1 and offset 0 so its
    classes keep their values. ``nodata`` overrides the file's nodata (which becomes NaN).
    """
    path = str(path)
    with open_georeferenced(path, "image") as src:
        count = src.count

    def spread(values: Sequence[float | None] | float | None, what: str) -> list[float | None]:
        if values is None or isinstance(values, (int, float)):
            return [values] * count
        values = list(values)
        if len(values) == 1:
            return values * count
        if len(values) != count:
            raise InventoryError(f"{path}: {len(values)} {what} values given for its {count} bands")
        return values

    return write_vrt([path] * count, out_path, spread(scales, "scale"), spread(offsets, "offset"),
                     bands=list(range(1, count + 1)), nodata=[nodata] * count, names=None)


def _retries() -> str:
    """GDAL's HTTP retries in force here: of the rasterio environment, else of the process's."""
    import rasterio.env

    try:
        options = rasterio.env.getenv()
    except Exception:  # noqa: BLE001 - no rasterio environment active
        options = {}
    return str(options.get("GDAL_HTTP_MAX_RETRY") or os.environ.get("GDAL_HTTP_MAX_RETRY") or 0)


def vrt_sources(path: str | os.PathLike) -> dict[str, str]:
    """Each source of a VRT file with its band's description (for a STAC item's VRT, the asset key);
    {} for anything that is not a readable VRT file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out = {}
    for band in root.iter("VRTRasterBand"):
        name = band.findtext("Description") or f"band {band.get('band')}"
        for source in band.iter("SourceFilename"):
            out.setdefault((source.text or "").strip(), name)
    return out


def _messages(err: BaseException) -> str:
    """The error with every cause and context below it (GDAL's own message is rasterio's cause), URLs unsigned."""
    seen, parts, at = set(), [], err
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        parts.append(str(at))
        at = at.__cause__ or at.__context__
    return unsigned("; ".join(dict.fromkeys(p for p in parts if p)))


def remote_read_failure(path: str | os.PathLike, err: BaseException, mask: str | None = None) -> ValueError | None:
    """The error of a read of remote data (``/vsicurl/``, ``/vsis3/``, ...) that failed after GDAL's retries,
    naming the STAC item (the VRT's name) and the asset (its band's description) behind it; None when the
    failed read was not a remote one. The job stops with it: a tile-date is never quietly left empty."""
    text = _messages(err)
    sources = vrt_sources(path) if str(path).lower().endswith(".vrt") else {}
    remote = [h for h in [*sources, mask or "", str(path)] if h.startswith(_REMOTE_PREFIXES)]
    if not remote:
        return None
    failed = [h for h in remote if h.split("?", 1)[0] in text] or remote
    if mask and mask in failed:
        asset = f"its mask asset ({mask})"
    elif failed[0] in sources:
        asset = f"asset {sources[failed[0]]} ({failed[0]})" if len(failed) == 1 or failed[0] in text else (
            f"one of the assets {', '.join(sources[h] for h in failed)}")
    else:
        asset = failed[0]
    item = f"item {Path(path).stem}, " if sources else ""
    return ValueError(
        f"{path}: {item}{asset}: the remote read failed ({text}; transient errors are retried {_retries()} times); the "
        "job stops rather than leave this date's tiles empty: check the server, the network and http_headers, then "
        "run snakemake again (http.retries and http.timeout set the patience)"
    )


def parse_band_values(text: Any, where: str) -> list[float] | None:
    """Read a sheet cell of per-band numbers: ``1e-4``, ``1e-4,1e-4,2e-4`` (or ``;``/space); empty is None."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return None
    parts = [p for p in re.split(r"[,;\s]+", str(text).strip()) if p]
    try:
        return [float(p) for p in parts]
    except ValueError as err:
        raise InventoryError(f"{where}: cannot read {text!r} as numbers (one, or one per band)") from err


def write_text_if_changed(out_path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically unless the file already holds exactly it (mtime kept)."""
    out = Path(out_path)
    if out.is_file() and out.read_text() == text:
        return out
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out
