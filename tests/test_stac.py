"""STAC input: reading items, one VRT per item in physical units, masks, filters and bad inputs.

Everything runs on the tiny archive of ``stac_archive.py`` (COGs at 10 m and 20 m, two
granules in two UTM zones, items on both sides of Sentinel-2 baseline 04.00, one cloudy
item); no network: remote hrefs are only checked as strings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasters import write_raster
from stac_archive import make_archive, physical, read_vrt, stacked_dn

from landtaxa.inputs import stac
from landtaxa.inputs.align import align_date
from landtaxa.inputs.datasets import InventoryError
from landtaxa.inputs.grid import Grid

BANDS = ["B04", "B11", "B08", "B02"]  # 10 m and 20 m assets mixed, not in file order
CLOUDY = "S2A_30TYQ_20220301_0_L2A"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """One archive for the tests that only read it (tests that break it write their own JSON)."""
    return make_archive(tmp_path_factory.mktemp("stac"))


@pytest.fixture
def landtaxa_log(caplog):
    """The landtaxa logger does not propagate to the root logger: listen on it directly."""
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


def features(archive) -> list[dict]:
    return json.loads(archive.item_collection.read_text())["features"]


def write_collection(archive, name: str, feats: list[dict]) -> Path:
    """An ItemCollection beside items.json (so its relative hrefs still resolve)."""
    path = archive.root / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


# --------------------------------------------------------------------------- values


def test_vrt_holds_the_physical_values_of_the_stacked_bands(archive, tmp_path: Path) -> None:
    found = stac.read_items(archive.item_collection, BANDS, "SCL", max_cloud_cover=50)
    inventory = stac.write_vrts(found, tmp_path / "vrt")
    assert list(inventory.columns) == ["date", "granule", "path", "mask", "item_id"]
    assert len(inventory) == 4 and found.warnings == []
    for row in inventory.itertuples():
        item = archive.item(row.item_id)
        # The reference: the same DNs stacked into one multi-band GeoTIFF (20 m bands resampled
        # nearest), read back and brought to reflectance with the declared scale and offset.
        ref = write_raster(tmp_path / f"{row.item_id}_stack.tif", stacked_dn(item, BANDS), item.crs,
                           item.transform_10m, nodata=0)
        with rasterio.open(ref) as src:
            expected = physical(src.read(), item.offset)
        got, profile = read_vrt(row.path)
        assert profile["dtype"] == "float32" and np.isnan(profile["nodata"])
        assert profile["transform"] == item.transform_10m and CRS.from_user_input(item.crs) == profile["crs"]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert np.isnan(got[0, 0, 0]) and np.isnan(got[1, -1, -1])  # DN 0 of B04 and of the 20 m B11
        with rasterio.open(row.path) as src:
            assert src.descriptions == tuple(BANDS)


def test_offsets_bring_both_sides_of_the_baseline_to_the_same_values(archive, tmp_path: Path) -> None:
    found = stac.read_items(archive.item_collection, BANDS, max_cloud_cover=50)
    inventory = stac.write_vrts(found, tmp_path)
    for granule in ("30TYQ", "31TCL"):
        rows = inventory[inventory.granule == granule]
        assert list(rows.date) == ["2022-01-10", "2022-02-14"]
        old = found.items.set_index("item_id").loc[rows.item_id.iloc[0]]
        new = found.items.set_index("item_id").loc[rows.item_id.iloc[1]]
        assert (old.processing_baseline, new.processing_baseline) == ("03.01", "04.00")
        assert old.band_offsets == [None] * 4 and new.band_offsets == [-0.1] * 4
        a, _ = read_vrt(rows.path.iloc[0])
        b, _ = read_vrt(rows.path.iloc[1])
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        assert np.nanmin(a) > 0.009 and np.nanmax(a) < 0.61  # reflectance, not DN


def test_file_scale_and_offset_are_used_when_the_catalog_declares_none(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a", file_scaling=True)
    found = stac.read_items(archive.item_collection, ["B04", "B11"], max_cloud_cover=50)
    assert found.items.band_scales.map(set).tolist() == [{None}] * 4
    assert found.warnings == []  # the newer items' files declare their offset
    inventory = stac.write_vrts(found, tmp_path / "vrt")
    for row in inventory.itertuples():
        item = archive.item(row.item_id)
        got, _ = read_vrt(row.path)
        np.testing.assert_allclose(got, physical(stacked_dn(item, ["B04", "B11"]), item.offset), atol=1e-6)


def test_vrts_of_two_utm_zones_align_onto_one_grid_with_their_masks(archive, tmp_path: Path) -> None:
    found = stac.read_items(archive.item_collection, ["B04", "B11"], "SCL", max_cloud_cover=50)
    inventory = stac.write_vrts(found, tmp_path / "vrt")
    day = inventory[inventory.date == "2022-02-14"].set_index("granule")
    grid = Grid(crs=CRS.from_string("EPSG:32631").to_wkt(), transform=(10.0, 0.0, 263540.0, 0.0, -10.0, 4987340.0),
                width=12, height=12, tile_size=6, bands=[1, 2], dtype="float32")
    item = archive.item(day.loc["31TCL", "item_id"])
    expected = physical(stacked_dn(item, ["B04", "B11"]), item.offset)
    cloud = np.repeat(np.repeat(item.dn["SCL"] == 9, 2, 0), 2, 1)

    def align(granules: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = tmp_path / f"{'_'.join(granules)}.tif"
        align_date(grid, list(day.loc[granules, "path"]), out, tmp_path / "valid.npz",
                   masks=list(day.loc[granules, "mask"]), invalid_values=[9])
        with rasterio.open(out) as src:
            assert src.dtypes[0] == "float32"
            return src.read().astype(np.float64), src.read_masks(1) > 0

    # The grid's own granule: copied where valid; its SCL cloud and its nodata pixels are invalid.
    data, valid = align(["31TCL"])
    np.testing.assert_array_equal(valid, np.isfinite(expected).all(axis=0) & ~cloud)
    np.testing.assert_allclose(data[:, valid], expected[:, valid], atol=1e-6)
    # The other zone's granule is reprojected onto the grid and fills some of those gaps.
    data, more = align(["31TCL", "30TYQ"])
    assert (more >= valid).all() and more.sum() > valid.sum()
    np.testing.assert_allclose(data[:, valid], expected[:, valid], atol=1e-6)
    assert np.isfinite(data[:, more]).all()


# --------------------------------------------------------------------------- items


def test_item_collection_and_catalog_give_the_same_items(archive) -> None:
    a = stac.read_items(archive.item_collection, BANDS, "SCL", 50).items
    b = stac.read_items(archive.catalog, BANDS, "SCL", 50).items
    assert list(a.item_id) == list(b.item_id) == [
        "S2A_30TYQ_20220110_0_L2A", "S2B_31TCL_20220110_0_L2A", "S2A_30TYQ_20220214_0_L2A", "S2B_31TCL_20220214_0_L2A"]
    assert list(a.granule) == list(b.granule) == ["30TYQ", "31TCL"] * 2  # s2:mgrs_tile, then mgrs:* fields
    assert a.band_hrefs.tolist() == b.band_hrefs.tolist()
    for row in a.itertuples():
        # items.json's hrefs are relative to it (one item's absolute), the catalog's relative to each item
        assert row.band_hrefs == [str(archive.asset_path(row.item_id, band)) for band in BANDS]
        assert row.mask == str(archive.asset_path(row.item_id, "SCL"))


def test_common_names_pick_the_same_assets_as_keys(archive) -> None:
    by_name = stac.read_items(archive.item_collection, ["red", "swir16", "NIR", "blue"], max_cloud_cover=50).items
    by_key = stac.read_items(archive.item_collection, BANDS, max_cloud_cover=50).items
    assert by_name.band_assets.tolist() == by_key.band_assets.tolist() == [BANDS] * 4
    assert by_name.band_hrefs.tolist() == by_key.band_hrefs.tolist()


def test_cloudy_item_is_dropped_and_logged(archive, landtaxa_log) -> None:
    found = stac.read_items(archive.item_collection, BANDS, max_cloud_cover=50)
    assert CLOUDY not in set(found.items.item_id) and len(found.items) == 4
    assert len(found.dropped) == 1 and CLOUDY in found.dropped[0]
    assert f"item {CLOUDY} (2022-03-01) dropped: eo:cloud_cover 95 is above max_cloud_cover 50" in landtaxa_log.text
    everything = stac.read_items(archive.item_collection, BANDS)
    assert CLOUDY in set(everything.items.item_id) and everything.dropped == []


def test_mixed_baselines_without_offsets_are_warned_about(tmp_path: Path, landtaxa_log) -> None:
    archive = make_archive(tmp_path, declare_offsets=False)
    found = stac.read_items(archive.item_collection, ["B04"], max_cloud_cover=50)
    assert len(found.warnings) == 1
    warning = found.warnings[0]
    assert "mixes Sentinel-2 processing baselines before 04.00 (dates 2022-01-10)" in warning
    assert "declares no radiometric offset for the dates 2022-02-14" in warning
    assert warning in landtaxa_log.text
    # One side of the baseline alone is not mixed.
    feats = [f for f in features(archive) if f["properties"]["s2:processing_baseline"] == "04.00"]
    assert stac.read_items(write_collection(archive, "new.json", feats), ["B04"]).warnings == []


def test_remote_and_gdal_hrefs_become_gdal_paths(tmp_path: Path) -> None:
    assert stac.gdal_path("https://example.com/s2/B04.tif") == "/vsicurl/https://example.com/s2/B04.tif"
    assert stac.gdal_path("s3://sentinel-cogs/a/B04.tif") == "/vsis3/sentinel-cogs/a/B04.tif"
    assert stac.gdal_path("gs://bucket/a/B04.tif") == "/vsigs/bucket/a/B04.tif"
    assert stac.gdal_path("B04.tif", "https://example.com/items/x.json") == "/vsicurl/https://example.com/items/B04.tif"
    assert stac.gdal_path("../B04.tif", "s3://bucket/items/x.json") == "/vsis3/bucket/B04.tif"
    assert stac.gdal_path("./B04.tif", "/data/items/x.json") == "/data/items/B04.tif"
    assert stac.gdal_path("file:///data/B04.tif") == "/data/B04.tif"
    for kept in ("/vsizip//data/a.zip/B04.tif", 'NETCDF:"/data/f.nc":ndvi',
                 "SENTINEL2_L2A:/data/S2.SAFE/MTD_MSIL2A.xml:10m:EPSG_32630"):
        assert stac.gdal_path(kept, "/data/items/x.json") == kept and stac.is_gdal_path(kept)
    assert not stac.is_gdal_path("/data/B04.tif") and not stac.is_gdal_path("C:/data/B04.tif")

    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "LC09_L2SP_198030_20230405_02_T1",
        "geometry": None, "properties": {"datetime": "2023-04-05T10:50:00Z", "landsat:wrs_path": "198",
                                         "landsat:wrs_row": "30"},
        "links": [{"rel": "self", "href": "https://example.com/items/LC09.json"}],
        "assets": {"red": {"href": "https://example.com/c/B4.TIF"}, "nir08": {"href": "s3://usgs/c/B5.TIF"},
                   "green": {"href": "B3.TIF"}, "qa_pixel": {"href": "/vsizip//data/qa.zip/QA.TIF"}},
    }
    path = tmp_path / "remote.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    row = stac.read_items(path, ["red", "nir08", "green"], mask_asset="qa_pixel").items.iloc[0]
    assert row.band_hrefs == ["/vsicurl/https://example.com/c/B4.TIF", "/vsis3/usgs/c/B5.TIF",
                              "/vsicurl/https://example.com/items/B3.TIF"]
    assert row["mask"] == "/vsizip//data/qa.zip/QA.TIF"
    assert (row.date, row.granule) == ("2023-04-05", "198030")


def test_band_names_prefer_single_band_geotiffs_and_keys_take_whole_assets(tmp_path: Path) -> None:
    def asset(href: str, media: str, *commons: str) -> dict:
        return {"href": f"https://example.com/{href}", "type": media,
                "eo:bands": [{"name": c.upper(), "common_name": c} for c in commons]}

    cog, jp2 = "image/tiff; application=geotiff; profile=cloud-optimized", "image/jp2"
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "x_20230405", "geometry": None, "links": [],
            "properties": {"datetime": "2023-04-05T10:50:00Z"},
            "assets": {"visual": asset("TCI.tif", cog, "red", "green", "blue"), "red-jp2": asset("B04.jp2", jp2, "red"),
                       "red": asset("B04.tif", cog, "red"), "nir-jp2": asset("B08.jp2", jp2, "nir")}}
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    row = stac.read_items(path, ["RED", "green", "nir", "visual"]).items.iloc[0]
    assert row.band_assets == ["red", "visual", "nir-jp2", "visual", "visual", "visual"]
    assert row.band_indexes == [1, 2, 1, 1, 2, 3]
    assert row.band_hrefs[:3] == ["/vsicurl/https://example.com/B04.tif", "/vsicurl/https://example.com/TCI.tif",
                                  "/vsicurl/https://example.com/B08.jp2"]


def test_granule_from_tile_ids_or_the_item_id(tmp_path: Path) -> None:
    def granule(props: dict, item_id: str = "x") -> str:
        item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "links": [],
                "properties": {"datetime": None, "start_datetime": "2023-04-05T23:30:00-02:00",
                               "end_datetime": "2023-04-06T00:00:00Z", **props},
                "assets": {"B04": {"href": "https://example.com/B04.tif"}}}
        path = tmp_path / "one.json"
        path.write_text(json.dumps(item))  # a single Item is a STAC source too
        row = stac.read_items(path, ["B04"]).items.iloc[0]
        assert row.date == "2023-04-06"  # start_datetime, in UTC
        return row.granule

    assert granule({"grid:code": "MGRS-30TYQ"}) == "MGRS-30TYQ"
    assert granule({"sentinel:utm_zone": 9, "sentinel:latitude_band": "U", "sentinel:grid_square": "XA"}) == "09UXA"
    assert granule({"modis:horizontal-tile": 17, "modis:vertical-tile": 4}) == "h17v04"
    assert granule({}, "S2B_MSIL2A_20230405T105619_N0509_R094_T30TYQ_20230405T170000") == "S2B_MSIL2A_N0509_R094_T30TYQ"


def test_is_stac_sniffs_the_json_type(archive, tmp_path: Path) -> None:
    assert stac.is_stac(archive.item_collection) and stac.is_stac(archive.catalog)
    assert stac.is_stac(archive.root / "sentinel-2" / "collection.json")
    plain = tmp_path / "aoi.geojson"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {}}]}))
    assert not stac.is_stac(plain)
    assert not stac.is_stac(archive.asset_path(archive.items[0].item_id, "B04"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert stac.is_stac(bad) and stac.is_stac(tmp_path / "missing.json")  # read_items says what is wrong


# --------------------------------------------------------------------------- bad inputs


def test_item_lacking_an_asked_asset_is_named_with_its_assets(archive) -> None:
    feats = features(archive)
    del feats[2]["assets"]["B11"]
    with pytest.raises(InventoryError) as err:
        stac.read_items(write_collection(archive, "lacking.json", feats), BANDS)
    msg = str(err.value)
    assert "lacking.json: item S2A_30TYQ_20220214_0_L2A (2022-02-14) lacks asset 'B11'" in msg
    assert "its assets: B02 (blue), B03 (green), B04 (red), B08 (nir), SCL" in msg


def test_missing_mask_asset_is_named(archive) -> None:
    with pytest.raises(InventoryError, match=r"item S2A_30TYQ_20220110_0_L2A \(2022-01-10\) lacks the mask asset "
                                             r"'CLD' \(config key masks.asset\); its assets: B02, B03"):
        stac.read_items(archive.item_collection, BANDS, mask_asset="CLD")


def test_missing_local_asset_file_is_named(archive) -> None:
    feats = features(archive)
    feats[1]["assets"]["B08"]["href"] = "data/nowhere/B08.tif"
    with pytest.raises(InventoryError) as err:
        stac.read_items(write_collection(archive, "missing.json", feats), BANDS)
    assert str(err.value) == (f"{archive.root / 'data/nowhere/B08.tif'}: file not found (asset B08 of item "
                              f"S2B_31TCL_20220110_0_L2A in {archive.root / 'missing.json'})")


def test_malformed_json_is_named_with_the_json_error(archive, tmp_path: Path) -> None:
    bad = tmp_path / "items.json"
    bad.write_text('{"type": "FeatureCollection", "features": [}')
    with pytest.raises(InventoryError, match=rf"{bad}: malformed JSON \(Expecting value: line 1 column 44"):
        stac.read_items(bad, BANDS)
    # A broken item file deep in a catalog is named, with the catalog that links it.
    root = make_archive(tmp_path / "cat").root
    item_file = root / "sentinel-2" / CLOUDY / f"{CLOUDY}.json"
    item_file.write_text(item_file.read_text()[:-20])
    with pytest.raises(InventoryError, match=rf"{item_file}: malformed JSON \(linked from {root / 'catalog.json'}\)"):
        stac.read_items(root / "catalog.json", BANDS)
    first = root / "sentinel-2" / archive.items[0].item_id / f"{archive.items[0].item_id}.json"
    first.unlink()
    with pytest.raises(InventoryError, match=rf"{first}: STAC file not found \(linked from {root / 'catalog.json'}\)"):
        stac.read_items(root / "catalog.json", BANDS)


def test_nothing_left_after_filtering_says_how_many_and_why(archive) -> None:
    with pytest.raises(InventoryError, match=r"items.json: no items left: all 5 were dropped because their "
                                             r"eo:cloud_cover is above max_cloud_cover 1;"):
        stac.read_items(archive.item_collection, BANDS, max_cloud_cover=1)


def test_unknown_band_name_lists_what_there_is(archive) -> None:
    with pytest.raises(InventoryError) as err:
        stac.read_items(archive.item_collection, ["red", "nri"])
    msg = str(err.value)
    assert "unknown band name 'nri' (config key bands)" in msg and "B08 (nir)" in msg and "B11 (swir16)" in msg


@pytest.mark.parametrize(
    ("bands", "message"),
    [(None, "config key bands must list asset keys or band common names"),
     ([4, 3, 2], r"got \[4, 3, 2\]")],
)
def test_bands_must_be_names_for_stac(archive, bands, message) -> None:
    with pytest.raises(InventoryError, match=message):
        stac.read_items(archive.item_collection, bands)


def test_two_items_of_one_granule_on_one_date_are_refused(archive) -> None:
    feats = features(archive)
    twin = json.loads(json.dumps(feats[0]))
    twin["id"] = "S2A_30TYQ_20220110_1_L2A"
    with pytest.raises(InventoryError, match=r"items S2A_30TYQ_20220110_0_L2A, S2A_30TYQ_20220110_1_L2A are both "
                                             r"granule '30TYQ' on 2022-01-10"):
        stac.read_items(write_collection(archive, "twins.json", [*feats, twin]), BANDS)


def test_missing_or_non_stac_sources_are_named(archive, tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nowhere.json: STAC file not found"):
        stac.read_items(tmp_path / "nowhere.json", BANDS)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(InventoryError, match=r"other.json: not a STAC ItemCollection, Catalog, Collection or Item"):
        stac.read_items(other, BANDS)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}))
    with pytest.raises(InventoryError, match=r"plain.json: feature 1 is not a STAC Item"):
        stac.read_items(plain, BANDS)


def test_write_vrts_checks_every_item_before_writing_any(archive, tmp_path: Path) -> None:
    found = stac.read_items(archive.item_collection, ["B04"])
    found.items.at[4, "band_hrefs"] = [str(tmp_path / "gone.tif")]
    with pytest.raises(InventoryError, match=r"gone.tif: asset B04: file not found"):
        stac.write_vrts(found, tmp_path / "vrt")
    assert not (tmp_path / "vrt").exists()
