"""STAC input: items of a STAC archive as landtaxa images, one VRT per item.

A STAC source is a JSON file: an ItemCollection (a GeoJSON FeatureCollection of Items, as
``pystac-client`` saves a search), a static Catalog or Collection (its child catalogs and
items are followed), or a single Item. :func:`read_items` turns it into one row per item:

- **date** from the item's ``datetime`` (or ``start_datetime``), in UTC;
- **granule** from its tile id: ``s2:mgrs_tile``; ``mgrs:utm_zone`` + ``mgrs:latitude_band`` +
  ``mgrs:grid_square`` (or the older ``sentinel:`` fields); ``grid:code``;
  ``landsat:wrs_path`` + ``landsat:wrs_row``; ``modis:horizontal-tile`` +
  ``modis:vertical-tile``; else the item id without its date(s), so that one tile's items on
  different dates share a granule;
- **bands**: each name asked for is an asset key (``B04``), else a band ``name`` or
  ``common_name`` (``red``) of an asset's ``eo:bands`` / ``bands``; where several assets
  carry that name, a single-band GeoTIFF wins over a multi-band or JPEG2000 one (so ``red``
  picks ``red`` over ``visual`` and ``red-jp2``). A key naming a multi-band asset takes all of
  its bands. Bands are kept in the order asked;
- **radiometry**: each band's ``scale``, ``offset`` and ``nodata`` from the STAC raster
  extension (``raster:bands``, or STAC 1.1 ``bands`` with ``raster:scale``/``raster:offset``);
  where the catalog declares none, the VRT takes the raster file's own GDAL
  scale/offset/nodata;
- **mask**: the href of the asset named by ``mask_asset`` (e.g. ``SCL``); the alignment takes it
  onto the grid with nearest-neighbour resampling like any mask raster.

Hrefs relative to the item (or to the ItemCollection file when the item has no self link)
are resolved; ``http(s)://`` hrefs become GDAL ``/vsicurl/`` paths, ``s3://`` ``/vsis3/`` and
``gs://`` ``/vsigs/`` ones, so GDAL streams them (nothing is downloaded); ``/vsi...`` paths and
GDAL subdataset strings (``SENTINEL2_L2A:...``) are kept as they are. Only local files are
checked for existence.

Items whose ``eo:cloud_cover`` is above ``max_cloud_cover`` are dropped before anything else
looks at them, each with a log line. Every other problem (malformed JSON, an item lacking
an asked asset, a missing local file, an unknown band name, nothing left after filtering,
two items of one granule on one date) raises :class:`~landtaxa.inputs.inventory.InventoryError`
naming the file, item and asset. When the series mixes Sentinel-2 processing baselines
before and from 04.00 (acquisitions from 25 January 2022 carry a +1000 DN offset) and the
newer items declare no offset, a warning names the dates.

:func:`write_vrts` then writes one VRT per item (:mod:`landtaxa.inputs.vrt`) stacking the asked
bands in physical units on the pixel lattice of the finest asked asset, and returns the image
inventory (``date``, ``granule``, ``path``, ``mask``) that the alignment reads. Only headers are
read here, never pixels.

``pystac`` is needed to read catalogs (imported on first use).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import pandas as pd

from landtaxa.inputs.datasets import InventoryError, is_gdal_path, openable
from landtaxa.inputs.vrt import vrt_xml, write_text_if_changed
from landtaxa.storage import get_logger

log = get_logger()

#: Sentinel-2 processing baseline from which L1C/L2A products carry a +1000 DN radiometric
#: offset (BOA_ADD_OFFSET = -1000; in production for acquisitions from 25 January 2022).
S2_OFFSET_BASELINE = 4.0

ITEM_COLUMNS = [
    "date", "granule", "item_id", "band_assets", "band_indexes", "band_hrefs", "band_scales",
    "band_offsets", "band_nodata", "mask", "cloud_cover", "processing_baseline",
]

_STAC_TYPES = ("FeatureCollection", "Catalog", "Collection", "Feature")
_DATE_TOKEN = re.compile(r"\d{8}(T\d{4,6}Z?)?|\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?")


@dataclass
class StacItems:
    """What :func:`read_items` found: the kept items, and what was dropped or looked wrong.

    ``items`` has one row per kept item with the columns of :data:`ITEM_COLUMNS`, sorted by
    date (source order within a date). The ``band_*`` columns hold one list per row, one
    entry per output band: asset key, 1-based band of the asset file, GDAL path, and the
    scale/offset/nodata the catalog declares (``None`` where it declares none).
    ``dropped`` and ``warnings`` hold the lines also written to the log.
    """

    source: str
    items: pd.DataFrame
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- paths


def gdal_path(href: str, base: str | None = None) -> str:
    """The GDAL path of an asset ``href``, relative hrefs resolved against ``base``.

    ``base`` is the href of the JSON file that holds the item (a local path or a URL).
    ``http(s)://`` and ``ftp://`` become ``/vsicurl/<url>``, ``s3://b/k`` ``/vsis3/b/k``,
    ``gs://b/k`` ``/vsigs/b/k``, ``file://`` a local path; GDAL strings stay as they are.
    A local relative href becomes an absolute, normalised path.
    """
    href = href.strip()
    if is_gdal_path(href):
        return href
    parsed = urlparse(href)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https", "ftp"):
        return "/vsicurl/" + href
    if scheme in ("s3", "gs"):
        return f"/vsi{scheme}/" + href[len(scheme) + 3:]
    if scheme == "file":
        return os.path.normpath(unquote(parsed.path))
    if len(scheme) > 1:
        raise InventoryError(f"{href}: unsupported URL scheme {scheme!r} (use http(s)://, s3://, gs:// or a path)")
    if os.path.isabs(href) or not base:
        return os.path.abspath(href)
    base_scheme = urlparse(base).scheme.lower()
    if base_scheme in ("http", "https", "ftp"):
        return gdal_path(urljoin(base, href))
    if base_scheme in ("s3", "gs"):
        return gdal_path(posixpath.normpath(posixpath.join(posixpath.dirname(base), href)).replace(":/", "://", 1))
    if base_scheme == "file":
        base = unquote(urlparse(base).path)
    return os.path.abspath(os.path.join(os.path.dirname(base), href))


def _is_url(text: str) -> bool:
    return len(urlparse(text).scheme) > 1


# --------------------------------------------------------------------------- reading STAC


def is_stac(source: str | os.PathLike) -> bool:
    """Whether ``images`` should be read as STAC (by :func:`read_items`).

    True for a ``.json``/``.geojson`` path or URL whose ``type`` is a FeatureCollection of
    STAC Items, a Catalog, a Collection or an Item. Also True for such a path that is
    missing or not valid JSON: no raster reader takes a JSON file, and :func:`read_items`
    then says what is wrong with it. False for anything else (a JSON that parses but is not
    STAC, e.g. a plain GeoJSON of polygons). Never raises; URLs are not fetched (True).
    """
    text = str(source)
    if not text.lower().endswith((".json", ".geojson")):
        return False
    if _is_url(text) or not os.path.isfile(text):
        return True
    try:
        data = json.loads(Path(text).read_text())
    except (OSError, ValueError):
        return True
    if not isinstance(data, dict) or data.get("type") not in _STAC_TYPES:
        return False
    if data["type"] == "FeatureCollection":
        features = data.get("features") or []
        return all(isinstance(f, dict) and "stac_version" in f for f in features)
    if data["type"] == "Feature":
        return "stac_version" in data
    return True


def _read_json(href: str, linked_from: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """Parse one JSON file (local or URL, fetched with ``headers``); errors name the file."""
    where = f" (linked from {linked_from})" if linked_from and linked_from != href else ""
    try:
        if _is_url(href):
            from pystac.stac_io import DefaultStacIO

            text = DefaultStacIO(headers=headers).read_text(href)
        else:
            text = Path(href).read_text()
    except FileNotFoundError as err:
        raise InventoryError(f"{href}: STAC file not found{where}") from err
    except Exception as err:  # noqa: BLE001 - any I/O problem, named with the file
        raise InventoryError(f"{href}: cannot read the STAC file{where} ({err})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InventoryError(f"{href}: malformed JSON{where} ({err})") from err


def _stac_io(source: str, headers: dict[str, str] | None = None) -> Any:
    """A pystac reader whose errors name the file (child catalogs and items included)."""
    from pystac.stac_io import DefaultStacIO

    class NamingStacIO(DefaultStacIO):
        def read_json(self, href, *args, **kwargs):  # noqa: ANN001, ANN202 - pystac's signature
            return _read_json(str(href), source, headers)

    return NamingStacIO()


def _load_items(source: str, headers: dict[str, str] | None = None) -> list[tuple[Any, str]]:
    """Every STAC Item under ``source`` with the href its relative asset hrefs resolve against."""
    import pystac

    data = _read_json(source, headers=headers)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _STAC_TYPES:
        raise InventoryError(
            f"{source}: not a STAC ItemCollection, Catalog, Collection or Item (JSON type {kind!r})"
        )
    if kind in ("FeatureCollection", "Feature"):
        features = data.get("features") if kind == "FeatureCollection" else [data]
        if not isinstance(features, list):
            raise InventoryError(f"{source}: the FeatureCollection has no list of features")
        out = []
        for i, feature in enumerate(features):
            if not isinstance(feature, dict) or "stac_version" not in feature:
                raise InventoryError(f"{source}: feature {i + 1} is not a STAC Item (no stac_version)")
            try:
                item = pystac.Item.from_dict(feature)
            except Exception as err:  # noqa: BLE001 - pystac raises KeyError, STACError, ...
                name = feature.get("id", f"feature {i + 1}")
                raise InventoryError(f"{source}: item {name} is not a valid STAC Item ({err!r})") from err
            self_href = item.get_self_href()  # relative hrefs are relative to the item's own location
            absolute = bool(self_href) and (_is_url(self_href) or os.path.isabs(self_href))
            out.append((item, self_href if absolute else source))
        return out
    try:
        kind_class = pystac.Collection if kind == "Collection" else pystac.Catalog
        root = kind_class.from_file(source if _is_url(source) else os.path.abspath(source),
                                   stac_io=_stac_io(source, headers))
        items = list(root.get_items(recursive=True))
    except Exception as err:  # noqa: BLE001 - pystac's link and schema errors
        cause: BaseException | None = err  # pystac wraps our named errors of linked files: unwrap them
        while cause is not None and not isinstance(cause, InventoryError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise InventoryError(f"{source}: cannot read the STAC {kind.lower()} ({err!r})") from err
    return [(item, item.get_self_href() or source) for item in items]


def _item_date(item: Any, source: str) -> str:
    dt = item.datetime
    if dt is None:
        start = item.properties.get("start_datetime")
        if start:
            from pystac.utils import str_to_datetime

            dt = str_to_datetime(start)
    if not isinstance(dt, datetime):
        raise InventoryError(f"{source}: item {item.id} has neither datetime nor start_datetime")
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.date().isoformat()


def _granule(item: Any) -> str:
    """The item's tile id, else its id without date(s)."""
    p = item.properties
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"])
    for prefix in ("mgrs", "sentinel"):
        zone, band, square = (p.get(f"{prefix}:{k}") for k in ("utm_zone", "latitude_band", "grid_square"))
        if zone is not None and band and square:
            return f"{int(zone):02d}{band}{square}"
    if p.get("grid:code"):
        return str(p["grid:code"])
    if p.get("landsat:wrs_path") is not None and p.get("landsat:wrs_row") is not None:
        return f"{str(p['landsat:wrs_path']).zfill(3)}{str(p['landsat:wrs_row']).zfill(3)}"
    if p.get("modis:horizontal-tile") is not None and p.get("modis:vertical-tile") is not None:
        return f"h{int(p['modis:horizontal-tile']):02d}v{int(p['modis:vertical-tile']):02d}"
    rest = _DATE_TOKEN.sub("", item.id)
    rest = re.sub(r"[_.\-\s]{2,}", "_", rest).strip("_.- ")
    return rest or item.id


def _baseline(item: Any) -> str:
    """``s2:processing_baseline`` (e.g. ``05.09``), else the ``_Nxxyy_`` of the product name."""
    p = item.properties
    if p.get("s2:processing_baseline"):
        return str(p["s2:processing_baseline"])
    for key in ("s2:product_uri", "s2:product_id"):
        m = re.search(r"_N(\d{2})(\d{2})_", str(p.get(key, "")))
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return ""


def _float(value: Any) -> float | None:
    """A number from STAC metadata ("nan" and "inf" strings included); None when absent."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass
class _Band:
    """One band of one asset, as the catalog describes it."""

    key: str
    index: int  # 1-based band of the asset's file
    n_bands: int
    names: tuple[str, ...]
    common_names: tuple[str, ...]
    scale: float | None
    offset: float | None
    nodata: float | None
    media_type: str


def _asset_bands(key: str, asset: Any) -> list[_Band]:
    """The bands of an asset from ``eo:bands``, ``raster:bands`` and STAC 1.1 ``bands``."""
    extra = asset.extra_fields
    eo = extra.get("eo:bands") or []
    raster = extra.get("raster:bands") or []
    bands11 = extra.get("bands") or []
    n = max(len(eo), len(raster), len(bands11), 1)
    out = []
    for i in range(n):
        e = eo[i] if i < len(eo) and isinstance(eo[i], dict) else {}
        r = raster[i] if i < len(raster) and isinstance(raster[i], dict) else {}
        b = bands11[i] if i < len(bands11) and isinstance(bands11[i], dict) else {}
        single = extra if n == 1 else {}  # STAC 1.1 puts a single band's fields on the asset
        names = tuple(str(v) for v in (e.get("name"), b.get("name")) if v)
        commons = tuple(
            str(v) for v in (e.get("common_name"), b.get("eo:common_name"), single.get("eo:common_name")) if v
        )
        out.append(_Band(
            key=key, index=i + 1, n_bands=n, names=names, common_names=commons,
            scale=_float(_first(r.get("scale"), b.get("raster:scale"), single.get("raster:scale"))),
            offset=_float(_first(r.get("offset"), b.get("raster:offset"), single.get("raster:offset"))),
            nodata=_float(_first(r.get("nodata"), b.get("nodata"), single.get("nodata"))),
            media_type=str(asset.media_type or ""),
        ))
    return out


def _resolve(name: str, bands: list[_Band]) -> list[_Band]:
    """The asset band(s) a name asks for: an asset key first, then a band name or common name."""
    for same in (lambda k: k == name, lambda k: k.lower() == name.lower()):
        keys = list(dict.fromkeys(b.key for b in bands if same(b.key)))
        if len(keys) == 1:
            return [b for b in bands if b.key == keys[0]]
    wanted = name.lower()
    hits = [b for b in bands if wanted in {n.lower() for n in (*b.names, *b.common_names)}]
    if not hits:
        return []

    def rank(b: _Band) -> tuple[int, int]:
        geotiff = "tiff" in b.media_type.lower() or not b.media_type
        return (b.n_bands > 1, not geotiff)

    return [min(hits, key=rank)]  # min keeps the first of equals: the catalog's asset order


def _describe_assets(item: Any) -> str:
    parts = []
    for key, asset in item.assets.items():
        commons = sorted({c for b in _asset_bands(key, asset) for c in (*b.common_names, *b.names) if c != key})
        parts.append(f"{key} ({', '.join(commons)})" if commons else key)
    return ", ".join(parts) or "none"


def read_items(
    source: str | os.PathLike,
    bands: Sequence[str],
    mask_asset: str | None = None,
    max_cloud_cover: float | None = None,
    headers: dict[str, str] | None = None,
) -> StacItems:
    """Read a STAC source into one row per kept item (see the module docstring).

    ``bands``: asset keys or band (common) names, in the order the encoder gets them.
    ``mask_asset``: key of the asset holding pixel classes (e.g. ``SCL``), or None.
    ``max_cloud_cover``: drop items whose ``eo:cloud_cover`` is above it (percent); items
    without ``eo:cloud_cover`` are kept. Reads JSON only (raster headers only to check a
    Sentinel-2 baseline mix without declared offsets). ``headers`` go with every catalog
    request (the config's ``http_headers``, resolved). Raises InventoryError naming the
    file, item and asset of the first problem.
    """
    source = str(source)
    if not _is_url(source) and not os.path.isfile(source):
        raise InventoryError(f"{source}: STAC file not found")
    if isinstance(bands, str):
        bands = [bands]
    if not bands or any(not isinstance(b, str) or not b.strip() for b in bands):
        raise InventoryError(
            f"{source}: config key bands must list asset keys or band common names for STAC input "
            f"(e.g. [B04, B03, B02, B08] or [red, green, blue, nir]), got {list(bands or [])!r}"
        )
    loaded = _load_items(source, headers)
    if not loaded:
        raise InventoryError(f"{source}: the STAC source holds no items")
    dropped: list[str] = []
    kept: list[tuple[Any, str, str]] = []
    for item, base in loaded:
        date = _item_date(item, source)
        cloud = _float(item.properties.get("eo:cloud_cover"))
        if max_cloud_cover is not None and cloud is not None and cloud > max_cloud_cover:
            line = (f"{source}: item {item.id} ({date}) dropped: eo:cloud_cover {cloud:g} is above "
                    f"max_cloud_cover {max_cloud_cover:g}")
            log.info(line)
            dropped.append(line)
            continue
        kept.append((item, base, date))
    if not kept:
        raise InventoryError(
            f"{source}: no items left: all {len(loaded)} were dropped because their eo:cloud_cover is above "
            f"max_cloud_cover {max_cloud_cover:g}; raise max_cloud_cover or choose other items"
        )

    # Resolve every band of every item first: a name no item knows is a typo, not a missing asset.
    resolved = []
    for item, _, _ in kept:
        asset_bands = [b for key, asset in item.assets.items() for b in _asset_bands(key, asset)]
        resolved.append([_resolve(name, asset_bands) for name in bands])
    for j, name in enumerate(bands):
        if not any(r[j] for r in resolved):
            item = kept[0][0]
            raise InventoryError(
                f"{source}: unknown band name {name!r} (config key bands): no item has an asset with that key "
                f"or a band with that name or common_name; item {item.id} has assets {_describe_assets(item)}"
            )
    rows = []
    for (item, base, date), found in zip(kept, resolved, strict=True):
        for name, hits in zip(bands, found, strict=True):
            if not hits:
                raise InventoryError(
                    f"{source}: item {item.id} ({date}) lacks asset {name!r} asked by config key bands; "
                    f"its assets: {_describe_assets(item)}"
                )
        chosen = [b for hits in found for b in hits]
        hrefs = {}
        for key in dict.fromkeys(b.key for b in chosen):
            hrefs[key] = _asset_href(item, key, base, source)
        mask = ""
        if mask_asset:
            key = mask_asset if mask_asset in item.assets else next(
                (k for k in item.assets if k.lower() == mask_asset.lower()), None)
            if key is None:
                raise InventoryError(
                    f"{source}: item {item.id} ({date}) lacks the mask asset {mask_asset!r} (config key "
                    f"masks.asset); its assets: {', '.join(item.assets) or 'none'}"
                )
            mask = _asset_href(item, key, base, source)
        rows.append({
            "date": date,
            "granule": _granule(item),
            "item_id": item.id,
            "band_assets": [b.key for b in chosen],
            "band_indexes": [b.index for b in chosen],
            "band_hrefs": [hrefs[b.key] for b in chosen],
            "band_scales": [b.scale for b in chosen],
            "band_offsets": [b.offset for b in chosen],
            "band_nodata": [b.nodata for b in chosen],
            "mask": mask,
            "cloud_cover": math.nan if (c := _float(item.properties.get("eo:cloud_cover"))) is None else c,
            "processing_baseline": _baseline(item),
        })
    df = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    counts = df["band_assets"].map(len)
    if counts.nunique() > 1:
        odd = df[counts != counts.iloc[0]].iloc[0]
        raise InventoryError(
            f"{source}: item {odd.item_id} gives {len(odd.band_assets)} bands ({', '.join(odd.band_assets)}) but "
            f"item {df.item_id.iloc[0]} gives {counts.iloc[0]}; every item needs the same bands"
        )
    dup = df[df.duplicated(["date", "granule"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        ids = dup[(dup.date == first.date) & (dup.granule == first.granule)].item_id
        raise InventoryError(
            f"{source}: items {', '.join(ids)} are both granule {first.granule!r} on {first.date}; "
            "keep one of them (e.g. the newest processing)"
        )
    df = df.assign(_order=range(len(df))).sort_values(["date", "_order"], kind="stable")
    df = df.drop(columns="_order").reset_index(drop=True)
    result = StacItems(source=source, items=df, dropped=dropped)
    warning = baseline_warning(df, source)
    if warning:
        log.warning(warning)
        result.warnings.append(warning)
    log.info("%s: %d items kept, %d dropped", source, len(df), len(dropped))
    return result


def _asset_href(item: Any, key: str, base: str, source: str) -> str:
    href = gdal_path(item.assets[key].href, base)
    if not is_gdal_path(href) and not os.path.exists(href):
        raise InventoryError(f"{href}: file not found (asset {key} of item {item.id} in {source})")
    return href


def _file_offsets_declared(hrefs: Sequence[str], indexes: Sequence[int]) -> bool:
    """Whether every band's file carries a non-zero GDAL offset (header read only)."""
    import rasterio

    try:
        for href, index in zip(hrefs, indexes, strict=True):
            with rasterio.open(openable(href)) as src:
                if not src.offsets[index - 1]:
                    return False
    except Exception:  # noqa: BLE001 - unreadable here means "not declared"; write_vrt names the file
        return False
    return True


def baseline_warning(items: pd.DataFrame, source: str) -> str | None:
    """A warning when Sentinel-2 baselines before and from 04.00 mix without declared offsets.

    From processing baseline 04.00 (acquisitions from 25 January 2022) Sentinel-2 DNs carry
    +1000, so reflectance = (DN - 1000) / 10000 there but DN / 10000 before. Without a
    declared offset (STAC ``raster:bands`` offset, or a non-zero GDAL offset in the file) the
    newer dates read 0.1 brighter than the older ones. Returns None when nothing is wrong.
    """
    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    versions = items["processing_baseline"].map(number)
    old = items[versions.notna() & (versions < S2_OFFSET_BASELINE)]
    new = items[versions.notna() & (versions >= S2_OFFSET_BASELINE)]
    if old.empty or new.empty:
        return None
    undeclared = [
        row.date for row in new.itertuples()
        if any(o is None for o in row.band_offsets)
        and not _file_offsets_declared(
            [h for h, o in zip(row.band_hrefs, row.band_offsets, strict=True) if o is None],
            [i for i, o in zip(row.band_indexes, row.band_offsets, strict=True) if o is None])
    ]
    if not undeclared:
        return None
    return (
        f"{source}: the series mixes Sentinel-2 processing baselines before 04.00 (dates "
        f"{', '.join(sorted(set(old.date)))}) and from 04.00 (dates {', '.join(sorted(set(new.date)))}), but "
        f"declares no radiometric offset for the dates {', '.join(sorted(set(undeclared)))}: their DNs carry "
        "+1000 and would read 0.1 brighter in reflectance; declare raster:bands offset -0.1 with scale 0.0001 "
        "(or the files' GDAL offset), or use a collection reprocessed to one baseline"
    )


def vrt_name(item_id: str) -> str:
    """File name of an item's VRT: its id with characters unsafe in file names replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._") + ".vrt"


def write_vrts(items: StacItems | pd.DataFrame, folder: str | os.PathLike, resampling: str = "nearest") -> pd.DataFrame:
    """Write every item's VRT under ``folder``; return the image inventory that points at them.

    All VRTs are composed (every asset header read and checked) before the first is
    written, so a bad asset stops the run with nothing written. The inventory has the
    columns the alignment reads (``date``, ``granule``, ``path``, ``mask``) plus
    ``item_id``, in the items' order. Unchanged VRTs are not rewritten.
    """
    df = items.items if isinstance(items, StacItems) else items
    names = [vrt_name(i) for i in df["item_id"]]
    if len(set(names)) != len(names):
        raise InventoryError(f"{folder}: two item ids give the same VRT name; item ids must differ")
    texts = []
    for row in df.itertuples(index=False):
        try:
            texts.append(vrt_xml(row.band_hrefs, row.band_scales, row.band_offsets, row.band_indexes,
                                 row.band_nodata, row.band_assets, resampling))
        except InventoryError as err:
            raise InventoryError(f"item {row.item_id} ({row.date}): {err}") from err
    rows = []
    for row, name, text in zip(df.itertuples(index=False), names, texts, strict=True):
        path = write_text_if_changed(Path(folder) / name, text)
        rows.append({"date": row.date, "granule": row.granule, "path": str(path), "mask": row.mask,
                     "item_id": row.item_id})
    return pd.DataFrame(rows, columns=["date", "granule", "path", "mask", "item_id"])
