"""Tests of class names, GDAL category names, QGIS styles and the kinds stack (landtaxa.products.styles).

Every sidecar is read back the way its users read it: the ``.aux.xml`` by GDAL itself
(``gdalinfo -json``; Debian's ``gdal-bin``, skipped where it is not installed), the ``.qml`` as the
XML QGIS parses, the GeoTIFFs with rasterio.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio

from landtaxa.inputs.grid import Grid, tile_areas_km2
from landtaxa.products.rasters import NODATA, write_cluster_map
from landtaxa.products.styles import (
    band_time_ranges,
    class_labels,
    class_summary,
    write_category_names,
    write_kinds_stack,
    write_map_styles,
    write_qml,
)

GDALINFO = shutil.which("gdalinfo")
needs_gdal = pytest.mark.skipif(GDALINFO is None, reason="gdalinfo not found: install Debian's gdal-bin "
                                "(apt-get install gdal-bin) to check what GDAL reads from the sidecars")
DATES = ["2023-03-01", "2023-07-25", "2023-10-02"]


def _grid() -> Grid:
    """6 rows x 5 columns of 100 m tiles (10 px of 10 m) in UTM 30N: 0.01 km2 per tile."""
    return Grid(crs="EPSG:32630", transform=(10, 0, 500000, 0, -10, 4700000), width=50, height=60, tile_size=10,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0] * 3, scale_max=[1000] * 3)


def _taxonomy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tile ids (tiles 0 and 7 missing), clusters, per-date kinds and colours of a 3-class taxonomy.

    Cluster 0: 12 tiles, 1: 10, 2: 6. Between dates 1 and 2, 5 of cluster 1's tiles take kind 0;
    between dates 0 and 1, one tile of cluster 2 takes kind 1 (1/6 of its tiles).
    """
    tile_ids = np.array([t for t in range(30) if t not in (0, 7)])
    labels = np.array([0] * 12 + [1] * 10 + [2] * 6)
    kind = np.repeat(labels[:, None], 3, axis=1)
    kind[12:17, 2] = 0
    kind[22, 1:] = 1
    colours = np.array([[0.2, 0.4, 0.6], [0.9, 0.15, 0.1], [0.1, 0.8, 0.3]])
    return tile_ids, labels, kind, colours


def _gdalinfo(path: Path) -> dict:
    out = subprocess.run([GDALINFO, "-json", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _rat(info: dict, band: int) -> dict:
    """The attribute table of a band in ``gdalinfo -json``. Older GDAL (3.6) reports one table only, at the
    top level: the last band's."""
    if "rat" in info["bands"][band]:
        return info["bands"][band]["rat"]
    assert band == len(info["bands"]) - 1, "this GDAL reports the last band's attribute table only"
    return info["rat"]


# --- class names ------------------------------------------------------------------

def test_class_labels_from_the_data() -> None:
    tile_ids, labels, kind, _ = _taxonomy()
    names = class_labels(labels, 3, tile_areas_km2(_grid(), tile_ids), kind, DATES)
    assert names == [
        "c0: 12 tiles, 0.12 km2, 43%, stable",
        "c1: 10 tiles, 0.1 km2, 36%, changes on 2023-10-02 (50%)",
        "c2: 6 tiles, 0.06 km2, 21%, changes on 2023-07-25 (17%)",
    ]
    # a higher bar for "changes" makes cluster 2 stable; without kinds there is nothing to say about time
    assert class_labels(labels, 3, 0.01, kind, DATES, min_share=0.2)[2].endswith("21%, stable")
    assert class_labels(labels, 3, 1000.0)[0] == "c0: 12 tiles, 12,000 km2, 43%"
    summary = class_summary(labels, 3, 0.01, kind)
    np.testing.assert_array_equal(summary["tiles"], [12, 10, 6])
    np.testing.assert_allclose(summary["change_share"], [[0, 0], [0, 0.5], [1 / 6, 0]])
    with pytest.raises(ValueError, match="one date per column"):
        class_labels(labels, 3, 0.01, kind, DATES[:2])


# --- GDAL category names and attribute table -------------------------------------------------

@needs_gdal
def test_gdal_reads_category_names_and_attribute_table(tmp_path: Path) -> None:
    grid = _grid()
    tile_ids, labels, kind, colours = _taxonomy()
    names = class_labels(labels, 3, tile_areas_km2(grid, tile_ids), kind, DATES)
    tif = tmp_path / "clusters.tif"
    write_cluster_map(grid, tile_ids, labels, colours, tif)
    aux, qml = write_map_styles(tif, colours, names)
    assert aux == tmp_path / "clusters.tif.aux.xml" and qml == tmp_path / "clusters.qml"

    info = _gdalinfo(tif)
    band = info["bands"][0]
    assert band["categories"] == names
    assert band["noDataValue"] == NODATA
    rat = _rat(info, 0)
    fields = [f["name"] for f in rat["fieldDefn"]]
    assert fields == ["value", "map_tiles", "map_km2", "map_share", "name", "red", "green", "blue", "alpha"]
    rows = [dict(zip(fields, r["f"], strict=True)) for r in rat["row"]]
    assert [r["value"] for r in rows] == [0, 1, 2]
    assert [r["map_tiles"] for r in rows] == [12, 10, 6]
    assert [r["map_km2"] for r in rows] == pytest.approx([0.12, 0.10, 0.06])
    assert [r["name"] for r in rows] == names
    # the attribute table's colours are the GeoTIFF's colour table, as GDAL reads it
    table = band["colorTable"]["entries"]
    assert [[r["red"], r["green"], r["blue"], r["alpha"]] for r in rows] == [table[i] for i in range(3)]
    assert table[NODATA][3] == 0
    # the map itself is untouched: rasterio still reads its pixels and colour table
    with rasterio.open(tif) as ds:
        assert ds.read(1)[0, 1] == 0 and ds.read(1)[0, 0] == NODATA
        assert ds.colormap(1)[2] == tuple(table[2])


def test_category_names_replace_a_stale_sidecar(tmp_path: Path) -> None:
    tile_ids, labels, _, colours = _taxonomy()
    tif = tmp_path / "map.tif"
    write_cluster_map(_grid(), tile_ids, labels, colours, tif)
    aux = tmp_path / "map.tif.aux.xml"
    aux.write_text("<PAMDataset><Metadata><MDI key='STALE'>1</MDI></Metadata></PAMDataset>")
    write_category_names(tif, ["a", "b", "c"])
    root = ET.parse(aux).getroot()
    assert "STALE" not in aux.read_text()
    assert [c.text for c in root.iter("Category")] == ["a", "b", "c"]
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="colours for 3"):
        write_category_names(tif, ["a", "b", "c"], colours[:2])


# --- QGIS style ------------------------------------------------------------------------------

def _palette(qml: Path) -> tuple[ET.Element, list[dict]]:
    root = ET.parse(qml).getroot()
    renderer = root.find("pipe/rasterrenderer")
    return root, [e.attrib for e in renderer.iter("paletteEntry")]


def test_qgis_style_matches_the_colour_table(tmp_path: Path) -> None:
    grid = _grid()
    tile_ids, labels, kind, colours = _taxonomy()
    names = class_labels(labels, 3, tile_areas_km2(grid, tile_ids), kind, DATES)
    tif = tmp_path / "clusters.tif"
    write_cluster_map(grid, tile_ids, labels, colours, tif)
    _, qml = write_map_styles(tif, colours, names)

    assert qml.read_text().startswith("<!DOCTYPE qgis")
    root, entries = _palette(qml)
    renderer = root.find("pipe/rasterrenderer")
    assert root.tag == "qgis" and root.get("styleCategories") == "AllStyleCategories"
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    assert root.find("temporal") is None
    with rasterio.open(tif) as ds:
        cmap = ds.colormap(1)
    assert [int(e["value"]) for e in entries] == [0, 1, 2]
    for e in entries:
        value = int(e["value"])
        rgb = tuple(int(e["color"][i:i + 2], 16) for i in (1, 3, 5))
        assert (*rgb, int(e["alpha"])) == cmap[value]
        assert e["label"] == names[value]
    transparent = renderer.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert transparent.attrib == {"min": str(NODATA), "max": str(NODATA), "percentTransparent": "100"}
    resampling = root.find("pipe/provider/resampling")
    assert resampling.get("zoomedInResamplingMethod") == "nearestNeighbour"


def test_qml_escapes_names_and_checks_lengths(tmp_path: Path) -> None:
    colours = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    write_qml(tmp_path / "s.qml", colours, ['a & "b" <c>', "d"])
    _, entries = _palette(tmp_path / "s.qml")
    assert [e["label"] for e in entries] == ['a & "b" <c>', "d"]
    assert [e["color"] for e in entries] == ["#000000", "#ffffff"]
    with pytest.raises(ValueError, match="2 colours for 1"):
        write_qml(tmp_path / "t.qml", colours, ["a"])


# --- the kinds stack -------------------------------------------------------------------------

def test_band_time_ranges() -> None:
    assert band_time_ranges(DATES) == [
        ("2023-03-01T00:00:00Z", "2023-07-25T00:00:00Z"),
        ("2023-07-25T00:00:00Z", "2023-10-02T00:00:00Z"),
        ("2023-10-02T00:00:00Z", "2023-10-03T00:00:00Z"),
    ]


def test_kinds_stack_bands_dates_and_styles(tmp_path: Path) -> None:
    grid = _grid()
    tile_ids, labels, kind, colours = _taxonomy()
    names = class_labels(labels, 3, tile_areas_km2(grid, tile_ids), kind, DATES)
    tif = tmp_path / "kinds.tif"
    stack = write_kinds_stack(grid, tile_ids, kind, colours, DATES, names, tif)

    rows, cols = grid.tile_rowcol(tile_ids)
    with rasterio.open(tif) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3 and ds.nodata == NODATA
        assert ds.crs == rasterio.crs.CRS.from_user_input(grid.crs) and ds.transform == grid.tile_transform
        assert ds.descriptions == tuple(DATES)
        assert [ds.tags(b)["DATE"] for b in (1, 2, 3)] == DATES
        assert ds.tags()["DATES"] == ",".join(DATES)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        data = ds.read()
    np.testing.assert_array_equal(data, stack)
    np.testing.assert_array_equal(data[:, rows, cols], kind.T)
    assert data[0, 0, 0] == NODATA and data[2, 1, 2] == NODATA

    root, entries = _palette(tmp_path / "kinds.qml")
    assert [e["label"] for e in entries] == names
    temporal = root.find("temporal")
    assert temporal.attrib == {"enabled": "1", "mode": "3", "fetchMode": "0"}
    ranges = [r.attrib for r in temporal.iter("range")]
    assert [r["band"] for r in ranges] == ["1", "2", "3"]
    assert [(r["begin"], r["end"]) for r in ranges] == band_time_ranges(DATES)
    assert {(r["includeBeginning"], r["includeEnd"]) for r in ranges} == {("1", "0")}

    with pytest.raises(ValueError, match="expected \\(28, 3\\)"):
        write_kinds_stack(grid, tile_ids, kind[:, :2], colours, DATES, names, tmp_path / "bad.tif")


@needs_gdal
def test_gdal_reads_kinds_stack_names_and_dates(tmp_path: Path) -> None:
    grid = _grid()
    tile_ids, labels, kind, colours = _taxonomy()
    names = class_labels(labels, 3, tile_areas_km2(grid, tile_ids), kind, DATES)
    tif = tmp_path / "kinds.tif"
    write_kinds_stack(grid, tile_ids, kind, colours, DATES, names, tif)
    info = _gdalinfo(tif)
    assert [b["description"] for b in info["bands"]] == DATES
    assert [b["metadata"][""]["DATE"] for b in info["bands"]] == DATES
    assert all(b["categories"] == names for b in info["bands"])
    assert all(b["noDataValue"] == NODATA for b in info["bands"])
    # each band's attribute table counts the tiles of each kind on that band's date
    expected = [[12, 10, 6], [12, 11, 5], [17, 6, 5]]
    assert [r["f"][1] for r in _rat(info, 2)["row"]] == expected[2]
    pam = ET.parse(tmp_path / "kinds.tif.aux.xml").getroot()
    for band in pam.iter("PAMRasterBand"):
        rows = band.findall("GDALRasterAttributeTable/Row")
        assert [int(r[1].text) for r in rows] == expected[int(band.get("band")) - 1]
