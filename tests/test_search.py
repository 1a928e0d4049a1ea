"""STAC API input (landtaxa.inputs.search), against a real STAC API: ``rustac serve`` over the test archive.

The API serves the items of ``stac_archive.py`` with absolute http hrefs; searches page through it
two items at a time. A search is saved once and left alone while nothing changes; new, changed and
vanished items are named. The catalog's requests carry the headers (an ``env:`` token read from
the environment) through a token-demanding server in front of the API.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import pytest
from http_servers import AssetServer, StacApi, free_port
from stac_archive import make_archive, served_items, write_aoi, write_item_collection

from landtaxa.configcheck import check_config
from landtaxa.inputs import search as S
from landtaxa.inputs.datasets import InventoryError
from landtaxa.inputs.stac import read_items
from landtaxa.params import SCHEMA
from landtaxa.plan import PlanError, RunPlan
from landtaxa.runtime import resolve_headers

ASSETS = "http://assets.invalid"  # the hrefs are only read as strings here
SPEC = {"stac_api": "", "collections": ["sentinel-2"], "datetime": "2022-01-01/..", "page_size": 2}
FAST = {"retries": 1, "retry_delay": 0.1, "timeout": 10, "connect_timeout": 2}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("api archive")
    archive = make_archive(root)
    items = served_items(archive, ASSETS)
    write_item_collection(root / "all.json", items)
    write_item_collection(root / "first4.json", items[:4])
    later = copy.deepcopy(items[2])  # a new acquisition: 30TYQ again, on 2022-04-02
    later["id"] = "S2A_30TYQ_20220402_0_L2A"
    later["properties"]["datetime"] = "2022-04-02T10:56:21Z"
    changed = copy.deepcopy(items[0])  # the first item, reprocessed: another cloud cover
    changed["properties"]["eo:cloud_cover"] = 11.5
    write_item_collection(root / "next.json", [changed, *items[2:], later])  # and items[1] withdrawn
    write_aoi(root / "aoi.geojson", archive)
    return archive


@pytest.fixture(scope="module")
def api(archive):
    with StacApi() as server:
        yield server


@pytest.fixture
def landtaxa_log(caplog):
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


def spec(api: StacApi, **more) -> dict:
    return {**SPEC, "stac_api": api.url, **more}


def test_the_search_follows_the_paging_and_saves_an_item_collection(archive, api, tmp_path: Path) -> None:
    api.serve(archive.root / "all.json")
    out = tmp_path / "sources" / S.SAVED
    found = S.search(spec(api), archive.root / "aoi.geojson", out, {}, FAST)
    assert (found.items, found.pages, found.written) == (5, 3, True)
    saved = json.loads(out.read_text())
    assert saved["type"] == "FeatureCollection"
    ids = [f["id"] for f in saved["features"]]
    assert ids == [i.item_id for i in sorted(archive.items, key=lambda i: (i.date, i.item_id))]
    # the saved file is an ItemCollection like any other: the STAC reader takes it as it is
    items = read_items(out, ["B04", "B11"], "SCL", max_cloud_cover=50).items
    assert list(items.item_id) == ids[:4] and items.band_hrefs[0][0].startswith(f"/vsicurl/{ASSETS}/data/")
    # the time span is the API's to apply: a later start finds the later items only
    later = S.search(spec(api, datetime="2022-02-01/.."), archive.root / "aoi.geojson", tmp_path / "later.json",
                     {}, FAST)
    assert later.items == 3


def test_an_unchanged_search_leaves_the_file_alone_and_changes_are_named(archive, api, tmp_path: Path,
                                                                         landtaxa_log) -> None:
    out = tmp_path / S.SAVED
    aoi = archive.root / "aoi.geojson"
    api.serve(archive.root / "first4.json")
    S.search(spec(api), aoi, out, {}, FAST)
    stamp = out.stat().st_mtime_ns
    again = S.search(spec(api), aoi, out, {}, FAST)
    assert not again.written and out.stat().st_mtime_ns == stamp
    assert again.new == again.changed == again.vanished == []
    assert "nothing new since the last search (4 items); the file is left as it is" in landtaxa_log.text

    api.serve(archive.root / "next.json")  # one new item, one changed, one withdrawn
    landtaxa_log.clear()
    moved = S.search(spec(api), aoi, out, {}, FAST)
    assert moved.written and out.stat().st_mtime_ns != stamp
    assert moved.new == ["S2A_30TYQ_20220301_0_L2A", "S2A_30TYQ_20220402_0_L2A"]
    assert moved.changed == ["S2A_30TYQ_20220110_0_L2A"] and moved.vanished == ["S2B_31TCL_20220110_0_L2A"]
    lines = landtaxa_log.text
    assert re.search(r"2 new item\(s\): S2A_30TYQ_20220301_0_L2A, S2A_30TYQ_20220402_0_L2A", lines)
    assert "item S2A_30TYQ_20220110_0_L2A changed since the last search" in lines
    assert "item S2B_31TCL_20220110_0_L2A vanished from the search" in lines
    saved = [f["id"] for f in json.loads(out.read_text())["features"]]
    assert "S2B_31TCL_20220110_0_L2A" not in saved and saved[-1] == "S2A_30TYQ_20220402_0_L2A"


@pytest.mark.filterwarnings("ignore:Server does not conform")  # rustac in memory claims neither; sent all the same
def test_query_and_filter_are_passed_through_as_given(archive, api) -> None:
    api.serve(archive.root / "all.json")
    query = {"eo:cloud_cover": {"lt": 50}}
    cql = {"op": "=", "args": [{"property": "s2:mgrs_tile"}, "30TYQ"]}
    bbox = S.search_bbox(archive.root / "aoi.geojson")
    kwargs = S.search_parameters(spec(api, query=query, filter=cql, filter_lang="cql2-json"), bbox)
    sent = S.client(api.url, {}, FAST).search(**kwargs).get_parameters()  # the body the API is sent
    assert sent["query"] == query and sent["filter"] == cql and sent["filter-lang"] == "cql2-json"
    assert list(sent["bbox"]) == list(bbox) and list(sent["collections"]) == ["sentinel-2"] and sent["limit"] == 2
    assert sent["datetime"].startswith("2022-01-01T00:00:00") and sent["datetime"].endswith("/..")


def test_an_unreachable_api_stops_the_plan_naming_its_url(archive, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(InventoryError, match=rf"the STAC API at {url} cannot be searched .*collections sentinel-2"):
        S.search({**SPEC, "stac_api": url}, archive.root / "aoi.geojson", tmp_path / S.SAVED, {}, FAST)
    assert not (tmp_path / S.SAVED).exists()


def test_the_catalog_requests_carry_the_headers_env_values_read_from_the_environment(archive, tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """A token-demanding server in front of the API (its links name the server): every page needs the token."""
    proxy_port = free_port()
    with StacApi(public_url=f"http://127.0.0.1:{proxy_port}") as api:
        api.serve(archive.root / "all.json")
        with AssetServer(archive.root, token="s3cret", upstream=api.url, port=proxy_port) as proxy:
            config = {**SPEC, "stac_api": proxy.url}
            with pytest.raises(InventoryError, match=r"cannot be searched .*401"):
                S.search(config, archive.root / "aoi.geojson", tmp_path / "a.json", {}, FAST)
            monkeypatch.setenv("LANDTAXA_TEST_TOKEN", "Bearer s3cret")
            headers = resolve_headers({"Authorization": "env:LANDTAXA_TEST_TOKEN"})
            found = S.search(config, archive.root / "aoi.geojson", tmp_path / "b.json", headers, FAST)
            assert found.items == 5 and found.pages == 3
            seen = [h.get("Authorization") for h in proxy.state()["headers"]]
            assert seen.count("Bearer s3cret") >= 4  # the landing page and the three pages
            assert "s3cret" not in (tmp_path / "b.json").read_text()


def plan_config(**overrides) -> dict:
    import yaml

    config = yaml.safe_load((SCHEMA.parents[2] / "config" / "config.yaml").read_text())
    config.update({"truth": None, "tile_size": 4, "n_clusters": 3, "bands": ["B04", "B11"], **overrides})
    check_config(config, SCHEMA)
    return config


def test_a_search_without_an_area_of_interest_is_refused(archive, api, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"a search of the STAC API at .* needs an area of interest.*config key aoi"):
        RunPlan.from_config(plan_config(images=spec(api)), tmp_path)


def test_a_job_that_plans_again_reads_the_saved_search(archive, api, tmp_path: Path) -> None:
    config = plan_config(images=spec(api), aoi=str(archive.root / "aoi.geojson"))
    with pytest.raises(PlanError, match=r"stac_items.json: the saved STAC search is missing"):
        RunPlan.from_config(config, tmp_path, search=False)
