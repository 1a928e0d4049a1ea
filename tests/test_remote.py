"""Remote assets: COGs over HTTP with Range requests from a server that demands a token and fails on purpose.

The test archive (``stac_archive.py``) is served by :class:`http_servers.AssetServer`: a share of its
answers are 503s, a share of its connections are reset, and every request needs the token. The
alignment runs as the workflow runs it, ``python -m landtaxa align`` in a process of its own, its
HTTP settings and ``env:`` header inherited from the environment. Transient faults are retried
away (the mosaic equals the one of the same items read from disk); an asset that keeps failing
stops the job naming its item and asset, and no mosaic is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from http_servers import AssetServer
from rasterio.crs import CRS
from stac_archive import make_archive, served_items, write_item_collection

from landtaxa import runtime
from landtaxa.inputs import stac
from landtaxa.inputs.grid import Grid
from landtaxa.params import AlignParams, schema_defaults

TOKEN = "tok-93b1f0"
HEADERS = {"Authorization": "env:LANDTAXA_TEST_TOKEN"}
HTTP = {"retries": 8, "retry_delay": 0.01, "timeout": 10, "connect_timeout": 5}
DAY, GRANULE = "2022-02-14", "31TCL"
ITEM = "S2B_31TCL_20220214_0_L2A"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The archive behind a flaky, token-demanding server; its items' VRTs (remote) and a local twin of each."""
    root = tmp_path_factory.mktemp("remote")
    archive = make_archive(root / "archive")
    with AssetServer(archive.root, token=TOKEN, fail_share=0.15, drop_share=0.1, seed=3) as server:
        saved = write_item_collection(root / "items.json", served_items(archive, server.url))
        options = runtime.gdal_http_options(HTTP, {"Authorization": f"Bearer {TOKEN}"})
        with rasterio.Env(**options):  # the plan's header reads, as plan.remote_reads sets them
            remote = stac.write_vrts(stac.read_items(saved, ["B04", "B11"], "SCL"), root / "remote")
        local = stac.write_vrts(stac.read_items(archive.item_collection, ["B04", "B11"], "SCL"), root / "local")
        grid = Grid(crs=CRS.from_string("EPSG:32631").to_wkt(), transform=(10.0, 0, 263540.0, 0, -10.0, 4987340.0),
                    width=12, height=12, tile_size=6, bands=[1, 2], dtype="float32")
        grid.save(root / "grid.json")
        yield {"root": root, "server": server, "remote": remote, "local": local}


def align_job(served: dict, name: str, inventory, token: str | None = TOKEN, sign: str | None = None,
              headers: dict | None = HEADERS) -> subprocess.CompletedProcess:
    """``python -m landtaxa align`` for the day's granules of ``inventory``, as the workflow's job runs it: the
    HTTP settings and the signing hook inherited, the token in the variable the header names (None: not set)."""
    day = inventory[inventory.date == DAY]
    params = AlignParams.from_config({**schema_defaults(), "masks": {"invalid": [9], "band": None}})
    out = served["root"] / name
    command = [sys.executable, "-m", "landtaxa", "align", "--grid", str(served["root"] / "grid.json"),
               "--images", *day.path, "--masks", *day["mask"], "--out", str(out / "day.tif"),
               "--valid", str(out / "valid.npz"), "--params", params.to_json()]
    environment = {k: v for k, v in os.environ.items() if k != "LANDTAXA_TEST_TOKEN"}
    environment.update(runtime.http_environment(headers, HTTP, sign))
    environment["PYTHONPATH"] = os.pathsep.join([runtime.PACKAGE_PARENT, environment.get("PYTHONPATH", "")])
    if token is not None:
        environment["LANDTAXA_TEST_TOKEN"] = f"Bearer {token}"
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as src:
        return src.read(), src.read_masks(1)


def test_transient_503s_and_dropped_connections_are_retried_away(served) -> None:
    before = served["server"].counts
    remote = align_job(served, "remote", served["remote"])
    assert remote.returncode == 0, remote.stderr[-3000:]
    local = align_job(served, "local", served["local"])
    assert local.returncode == 0, local.stderr[-3000:]
    data, mask = read(served["root"] / "remote/day.tif")
    expected, expected_mask = read(served["root"] / "local/day.tif")
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(data, expected)
    assert mask.any() and not mask.all()  # the SCL cloud (a mask asset read remotely) is masked
    after = served["server"].counts
    faults = {k: after.get(k, 0) - before.get(k, 0) for k in ("503", "drop", "requests")}
    assert faults["503"] >= 1 and faults["drop"] >= 1, faults  # the job met both kinds of fault
    assert after.get("unauthorised", 0) == before.get("unauthorised", 0)  # every request carried the token


@pytest.mark.parametrize(("asset", "named"), [("B11", f"item {ITEM}, asset B11"), ("SCL", f"item {ITEM}, its mask")])
def test_a_read_that_keeps_failing_stops_the_job_naming_item_and_asset(served, asset: str, named: str) -> None:
    served["server"].break_paths(f"/data/{ITEM}/{asset}.tif")
    try:
        job = align_job(served, f"broken_{asset}", served["remote"])
    finally:
        served["server"].break_paths()
    assert job.returncode == 1
    assert named in job.stderr and "the remote read failed" in job.stderr, job.stderr[-2000:]
    assert f"/data/{ITEM}/{asset}.tif" in job.stderr  # and the href
    assert not (served["root"] / f"broken_{asset}" / "day.tif").exists()  # no mosaic with a hole in it


def test_a_job_without_the_header_s_variable_names_it_and_never_a_value(served) -> None:
    job = align_job(served, "no_token", served["remote"], token=None)
    assert job.returncode == 1 and not (served["root"] / "no_token").exists()
    assert "http_headers.Authorization: the environment variable 'LANDTAXA_TEST_TOKEN' is not set" in job.stderr
    wrong = align_job(served, "wrong_token", served["remote"], token="not-it")
    assert wrong.returncode == 1 and "the remote read failed (HTTP response code: 401" in wrong.stderr
    assert "not-it" not in wrong.stderr and "item S2" in wrong.stderr


def test_a_signing_hook_signs_every_read_in_memory_and_no_signed_url_is_written(served, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """The hook (config key sign_hrefs) signs the plan's header reads and the job's reads; files keep bare hrefs."""
    archive = make_archive(tmp_path / "archive")
    hook = f"{Path(__file__).with_name('signing_hook.py')}:sign"
    monkeypatch.setenv("LANDTAXA_TEST_SIGNATURE", "sig-5f2e")
    with AssetServer(archive.root, signature="sig-5f2e") as server:
        saved = write_item_collection(tmp_path / "items.json", served_items(archive, server.url))
        runtime.use_signer(hook)
        try:
            inventory = stac.write_vrts(stac.read_items(saved, ["B04", "B11"], "SCL"), tmp_path / "vrt")
        finally:
            runtime.use_signer(None)
        job = {"root": served["root"]}
        signed = align_job(job, "signed", inventory, sign=hook, headers={})
        assert signed.returncode == 0, signed.stderr[-3000:]
        bare = align_job(job, "bare", inventory, headers={})
        assert server.counts.get("unsigned", 0) >= 1
        server.break_paths(f"/data/{ITEM}/B11.tif")
        failed = align_job(job, "signed_failed", inventory, sign=hook, headers={})
    assert failed.returncode == 1 and f"/data/{ITEM}/B11.tif?..." in failed.stderr  # the signature cut from the log
    assert "sig-5f2e" not in failed.stderr
    assert bare.returncode == 1 and "the remote read failed (HTTP response code: 403" in bare.stderr
    data, mask = read(served["root"] / "signed/day.tif")
    assert align_job(served, "local_twin", served["local"]).returncode == 0  # the same items, from disk
    expected, expected_mask = read(served["root"] / "local_twin/day.tif")
    np.testing.assert_array_equal(data, expected)
    np.testing.assert_array_equal(mask, expected_mask)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"sig-5f2e" in p.read_bytes()]
    with pytest.raises(ValueError, match=r"config key sign_hrefs: no_such_package:sign cannot be loaded"):
        runtime.use_signer("no_such_package:sign")


def test_http_settings_become_gdal_options_and_env_values_are_read_where_they_are_used(monkeypatch) -> None:
    options = runtime.gdal_http_options({"retries": 3, "retry_delay": 0.5}, {"A": "x, y", "B": "z"})
    assert options == {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.5", "GDAL_HTTP_TIMEOUT": "60",
                       "GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_HEADERS": "A: x, y\r\nB: z\r\n"}
    for key in [*options, runtime.HTTP_ENV]:
        monkeypatch.setenv(key, "")  # put back as they were after the test
    runtime.export_http({"Authorization": "env:SOME_TOKEN", "User-Agent": "landtaxa"}, {"retries": 2})
    monkeypatch.setenv("SOME_TOKEN", "secret-value")
    applied = runtime.apply_http()
    assert applied["GDAL_HTTP_HEADERS"] == "Authorization: secret-value\r\nUser-Agent: landtaxa\r\n"
    assert os.environ["GDAL_HTTP_MAX_RETRY"] == "2"
    assert json.loads(os.environ[runtime.HTTP_ENV])["headers"]["Authorization"] == "env:SOME_TOKEN"
    assert runtime.literal_secrets({"Authorization": "Bearer x", "X-Api-Key": "env:K", "Accept": "a"}) == [
        "Authorization"]
