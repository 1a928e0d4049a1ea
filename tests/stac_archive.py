"""Build a tiny local STAC archive of Sentinel-2-like items in code, for tests.

:func:`make_archive` writes, under a folder:

- ``data/<item id>/<asset>.tif``: one Cloud-Optimized GeoTIFF per asset, ``B02``, ``B03``,
  ``B04``, ``B08`` at 10 m (12 x 12 px), ``B11`` at 20 m (6 x 6 px) and the scene
  classification ``SCL`` at 20 m, uint16 (SCL uint8), nodata 0;
- ``items.json``: an ItemCollection (GeoJSON FeatureCollection, as pystac-client saves a
  search) whose asset hrefs are relative to it, except one item's, which are absolute;
- ``catalog.json``: a Catalog with a child Collection ``sentinel-2/collection.json`` whose
  items live in ``sentinel-2/<id>/<id>.json`` with hrefs relative to each item file.

Five items over two granules near the UTM zone boundary at 45 N 0 E: ``30TYQ`` in
EPSG:32630 (tile id as ``s2:mgrs_tile``) and ``31TCL`` in EPSG:32631 (tile id as
``mgrs:*`` fields), on 2022-01-10 (processing baseline 03.01), 2022-02-14 (04.00) and, for
30TYQ only, 2022-03-01 (04.00, 95% cloud cover). One granule shows the same ground on
every date: reflectance ``r`` is stored as ``DN = r * 10000`` before baseline 04.00 and
``DN = r * 10000 + 1000`` from it, declared in ``raster:bands`` as scale 1e-4 (and offset
-0.1 from 04.00). ``declare_offsets=False`` leaves the newer items' offset out (the mixed
baseline case); ``file_scaling=True`` puts scale and offset in the files' GDAL metadata
instead of the catalog. One pixel of ``B04`` and one of ``B11`` are nodata (DN 0) in every
item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform

SIZE = 12  # 10 m pixels per side; 20 m assets have SIZE // 2
BANDS_10M = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
BANDS_20M = {"B11": "swir16"}
SCALE = 1e-4
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
# Upper-left corners (20 m aligned) of the same ground, 45 N 0 E, in both UTM zones.
GRANULES = {
    "30TYQ": ("EPSG:32630", 736440.0, 4987340.0),
    "31TCL": ("EPSG:32631", 263540.0, 4987340.0),
}
ITEMS = [  # id, granule, date, processing baseline, cloud cover
    ("S2A_30TYQ_20220110_0_L2A", "30TYQ", "2022-01-10", "03.01", 10.0),
    ("S2B_31TCL_20220110_0_L2A", "31TCL", "2022-01-10", "03.01", 20.0),
    ("S2A_30TYQ_20220214_0_L2A", "30TYQ", "2022-02-14", "04.00", 5.0),
    ("S2B_31TCL_20220214_0_L2A", "31TCL", "2022-02-14", "04.00", 15.0),
    ("S2A_30TYQ_20220301_0_L2A", "30TYQ", "2022-03-01", "04.00", 95.0),
]
ABSOLUTE_HREFS = "S2B_31TCL_20220214_0_L2A"  # this item's hrefs are absolute in items.json


@dataclass
class ArchiveItem:
    """One item as written: its metadata, DNs per asset and the declared radiometry."""

    item_id: str
    granule: str
    date: str
    baseline: str
    cloud_cover: float
    crs: str
    x0: float
    y0: float
    dn: dict[str, np.ndarray] = field(default_factory=dict)
    offset: float = 0.0  # the true offset of the DNs (-0.1 from baseline 04.00)

    @property
    def transform_10m(self) -> Affine:
        return Affine(10.0, 0.0, self.x0, 0.0, -10.0, self.y0)

    @property
    def transform_20m(self) -> Affine:
        return Affine(20.0, 0.0, self.x0, 0.0, -20.0, self.y0)


@dataclass
class Archive:
    """Where :func:`make_archive` put things, and what it put there."""

    root: Path
    item_collection: Path
    catalog: Path
    items: list[ArchiveItem]

    def item(self, item_id: str) -> ArchiveItem:
        return next(i for i in self.items if i.item_id == item_id)

    def asset_path(self, item_id: str, asset: str) -> Path:
        return self.root / "data" / item_id / f"{asset}.tif"


def reflectance(granule: str) -> dict[str, np.ndarray]:
    """Reflectance in units of 1e-4 (integers 100..6000) per band, the same on every date."""
    rng = np.random.default_rng(sorted(GRANULES).index(granule) + 1)
    out = {b: rng.integers(100, 6000, (SIZE, SIZE)) for b in BANDS_10M}
    out.update({b: rng.integers(100, 6000, (SIZE // 2, SIZE // 2)) for b in BANDS_20M})
    return out


def scene_classes(granule: str, cloudy: bool) -> np.ndarray:
    """An SCL-like class raster: vegetation (4), bare soil (5), and a cloud (9) corner if cloudy."""
    scl = np.full((SIZE // 2, SIZE // 2), 4, np.uint8)
    scl[3:, :2] = 5
    if cloudy:
        scl[:2, -2:] = 9
    return scl


def write_cog(path: Path, array: np.ndarray, crs: str, affine: Affine, scale: float | None = None,
              offset: float | None = None) -> Path:
    """Write one band as a Cloud-Optimized GeoTIFF (nodata 0), with GDAL scale/offset if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "COG", "width": array.shape[1], "height": array.shape[0], "count": 1,
               "dtype": array.dtype.name, "crs": crs, "transform": affine, "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        if scale is not None:
            dst.scales = (scale,)
            dst.offsets = (offset or 0.0,)
    return path


def _footprint(item: ArchiveItem) -> dict:
    x1, y1 = item.x0 + SIZE * 10, item.y0 - SIZE * 10
    xs, ys = transform(item.crs, "EPSG:4326", [item.x0, x1, x1, item.x0, item.x0], [item.y0, item.y0, y1, y1, item.y0])
    return {"type": "Polygon", "coordinates": [[[x, y] for x, y in zip(xs, ys, strict=True)]]}


def item_json(item: ArchiveItem, hrefs: dict[str, str], declare_offsets: bool, file_scaling: bool) -> dict:
    """The STAC Item of ``item`` with the given asset hrefs."""
    geometry = _footprint(item)
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    props = {
        "datetime": f"{item.date}T10:56:21Z",
        "platform": "sentinel-2a" if item.item_id.startswith("S2A") else "sentinel-2b",
        "eo:cloud_cover": item.cloud_cover,
        "s2:processing_baseline": item.baseline,
        "proj:epsg": int(item.crs.split(":")[1]),
    }
    if item.granule.startswith("30"):
        props["s2:mgrs_tile"] = item.granule
    else:
        props.update({"mgrs:utm_zone": int(item.granule[:2]), "mgrs:latitude_band": item.granule[2],
                      "mgrs:grid_square": item.granule[3:]})
    assets = {}
    for key, common in {**BANDS_10M, **BANDS_20M}.items():
        raster = {"data_type": "uint16", "nodata": 0}
        if not file_scaling:
            raster["scale"] = SCALE
            if item.offset and declare_offsets:
                raster["offset"] = item.offset
        assets[key] = {
            "href": hrefs[key], "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "eo:bands": [{"name": key, "common_name": common}], "raster:bands": [raster],
        }
    assets["SCL"] = {"href": hrefs["SCL"], "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                     "roles": ["data"], "raster:bands": [{"data_type": "uint8", "nodata": 0}]}
    return {
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": EXTENSIONS, "id": item.item_id,
        "geometry": geometry, "bbox": [min(xs), min(ys), max(xs), max(ys)], "properties": props,
        "links": [], "assets": assets, "collection": "sentinel-2",
    }


def write_json(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def make_archive(root: Path, declare_offsets: bool = True, file_scaling: bool = False) -> Archive:
    """Write the archive described in the module docstring under ``root``; return what it holds."""
    root = Path(root)
    items = []
    for item_id, granule, date, baseline, cloud in ITEMS:
        crs, x0, y0 = GRANULES[granule]
        new = float(baseline) >= 4.0
        item = ArchiveItem(item_id, granule, date, baseline, cloud, crs, x0, y0, offset=-0.1 if new else 0.0)
        for band, refl in reflectance(granule).items():
            dn = (refl + (1000 if new else 0)).astype(np.uint16)
            if band in ("B04", "B11"):
                dn.flat[0 if band == "B04" else -1] = 0  # one nodata pixel
            item.dn[band] = dn
            affine = item.transform_10m if band in BANDS_10M else item.transform_20m
            scale = (SCALE, item.offset) if file_scaling else (None, None)
            write_cog(root / "data" / item_id / f"{band}.tif", item.dn[band], crs, affine, *scale)
        item.dn["SCL"] = scene_classes(granule, cloudy=date == "2022-02-14")
        write_cog(root / "data" / item_id / "SCL.tif", item.dn["SCL"], crs, item.transform_20m)
        items.append(item)

    assets = [*BANDS_10M, *BANDS_20M, "SCL"]
    features = []
    for item in items:
        folder = root / "data" / item.item_id
        hrefs = {a: str(folder / f"{a}.tif") if item.item_id == ABSOLUTE_HREFS else f"data/{item.item_id}/{a}.tif"
                 for a in assets}
        features.append(item_json(item, hrefs, declare_offsets, file_scaling))
    item_collection = write_json(root / "items.json", {"type": "FeatureCollection", "features": features})

    catalog = write_json(root / "catalog.json", {
        "type": "Catalog", "stac_version": "1.0.0", "id": "landtaxa-test", "description": "test archive",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                  {"rel": "child", "href": "./sentinel-2/collection.json", "type": "application/json"}],
    })
    links = [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
             {"rel": "parent", "href": "../catalog.json", "type": "application/json"}]
    for item in items:
        links.append({"rel": "item", "href": f"./{item.item_id}/{item.item_id}.json", "type": "application/json"})
        hrefs = {a: f"../../data/{item.item_id}/{a}.tif" for a in assets}
        obj = item_json(item, hrefs, declare_offsets, file_scaling)
        obj["links"] = [{"rel": "root", "href": "../../catalog.json"},
                        {"rel": "parent", "href": "../collection.json"},
                        {"rel": "collection", "href": "../collection.json"}]
        write_json(root / "sentinel-2" / item.item_id / f"{item.item_id}.json", obj)
    write_json(root / "sentinel-2" / "collection.json", {
        "type": "Collection", "stac_version": "1.0.0", "id": "sentinel-2", "description": "test items",
        "license": "proprietary", "links": links,
        "extent": {"spatial": {"bbox": [[-0.01, 44.98, 0.01, 45.0]]},
                   "temporal": {"interval": [["2022-01-10T00:00:00Z", "2022-03-01T23:59:59Z"]]}},
    })
    return Archive(root, item_collection, catalog, items)


def stacked_dn(item: ArchiveItem, bands: list[str]) -> np.ndarray:
    """The DNs of ``bands`` stacked at 10 m, 20 m bands resampled nearest (each pixel repeated 2 x 2)."""
    return np.stack([np.repeat(np.repeat(item.dn[b], 2, 0), 2, 1) if b in BANDS_20M else item.dn[b] for b in bands])


def physical(dn: np.ndarray, offset: float) -> np.ndarray:
    """Reflectance of DNs, ``DN * 1e-4 + offset``, NaN where the DN is nodata (0)."""
    out = dn.astype(np.float64) * SCALE + offset
    out[dn == 0] = np.nan
    return out


def read_vrt(path: str | Path) -> tuple[np.ndarray, dict]:
    """A VRT's bands as float64 and its profile."""
    with rasterio.open(path) as src:
        return src.read().astype(np.float64), dict(src.profile)


def served_items(archive: Archive, base_url: str, declare_offsets: bool = True) -> list[dict]:
    """The archive's items with absolute ``http`` hrefs: ``<base_url>/data/<item id>/<asset>.tif``, as a
    server of the archive's folder serves them."""
    assets = [*BANDS_10M, *BANDS_20M, "SCL"]
    return [item_json(item, {a: f"{base_url}/data/{item.item_id}/{a}.tif" for a in assets}, declare_offsets, False)
            for item in archive.items]


def write_item_collection(path: Path, items: list[dict]) -> Path:
    """An ItemCollection file of ``items`` (what ``rustac serve`` loads)."""
    return write_json(path, {"type": "FeatureCollection", "features": items})


def write_aoi(path: Path, archive: Archive, margin: float = 0.0005) -> Path:
    """A GeoJSON polygon (lon/lat) around every item's footprint, ``margin`` degrees wider."""
    boxes = [_footprint(item)["coordinates"][0] for item in archive.items]
    xs = [p[0] for ring in boxes for p in ring]
    ys = [p[1] for ring in boxes for p in ring]
    w, s, e, n = min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return write_json(path, {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]})
