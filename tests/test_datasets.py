"""Tests of :func:`landtaxa.inputs.datasets.open_georeferenced`: one way to open an input raster, one message shape.

Every refusal reads ``"<path>: <what>: <problem>"``: the file as the user gave it, its role, what is wrong.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from http_servers import AssetServer
from rasterio.control import GroundControlPoint
from rasters import write_raster

from landtaxa import runtime
from landtaxa.inputs.datasets import InventoryError, open_georeferenced

UTM31 = "EPSG:32631"
CORNER = (500000.0, 4000000.0, 10.0)


def plain(path: Path, **profile: object) -> Path:
    """A 1-band 8 x 8 GeoTIFF with only what ``profile`` gives (crs, transform, gcps)."""
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", **profile) as dst:
        dst.write(np.full((1, 8, 8), 7, np.uint8))
    return path


def refusal(path: str | Path, what: str = "raster") -> str:
    with pytest.raises(InventoryError) as err:
        open_georeferenced(path, what)
    return str(err.value)


def test_a_georeferenced_raster_opens_and_closes_with_its_with(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "good.tif", np.arange(64, dtype="uint16").reshape(8, 8), UTM31, CORNER)
    with open_georeferenced(path, "image") as src:
        assert src.crs.to_string() == UTM31
        assert src.transform == Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
        np.testing.assert_array_equal(src.read(1), np.arange(64).reshape(8, 8))
    assert src.closed


def test_a_missing_file_is_named_with_its_role(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.tif"
    assert refusal(path, "image") == f"{path}: image: file not found"


def test_a_file_gdal_cannot_read_gives_gdal_s_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.tif"
    path.write_text("this is not a GeoTIFF")
    message = refusal(path, "mask of image a.tif")
    assert message.startswith(f"{path}: mask of image a.tif: not a readable raster (GDAL: ")
    assert "not recognized as being in a supported file format" in message


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        ({"transform": Affine(10, 0, 500000, 0, -10, 4000000)}, "no CRS; georeference it, e.g. with gdal_edit -a_srs"),
        ({"crs": UTM31}, "no geotransform; georeference it, e.g. with gdal_edit -a_ullr"),
        ({}, "no CRS and no geotransform; georeference it, e.g. with gdal_edit -a_srs EPSG:<code> -a_ullr"),
        ({"crs": UTM31, "gcps": [GroundControlPoint(0, 0, 500000, 4000000), GroundControlPoint(8, 8, 500080, 3999920),
                                 GroundControlPoint(0, 8, 500000, 3999920)]},
         "no CRS and no geotransform, only ground control points; warp it first, e.g. with gdalwarp"),
    ],
    ids=["no-crs", "no-transform", "neither", "gcps-only"],
)
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the fixture warns
def test_a_raster_not_georeferenced_is_refused_naming_what_it_lacks(tmp_path: Path, profile: dict,
                                                                    problem: str) -> None:
    path = plain(tmp_path / "flat.tif", **profile)
    assert refusal(path, "truth raster (config key truth)").startswith(
        f"{path}: truth raster (config key truth): {problem}")


def test_gdal_dataset_strings_open_and_their_local_archive_is_checked(tmp_path: Path) -> None:
    tif = write_raster(tmp_path / "inside.tif", np.ones((2, 8, 8), "uint16"), UTM31, CORNER)
    archive = tmp_path / "granule.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tif, "inside.tif")
    with open_georeferenced(f"/vsizip/{archive}/inside.tif", "image") as src:
        assert src.count == 2 and src.crs.to_string() == UTM31
    gone = f"/vsizip/{tmp_path / 'gone.zip'}/inside.tif"
    assert refusal(gone, "image") == f"{gone}: image: file not found"
    absent = f"/vsizip/{archive}/absent.tif"
    assert refusal(absent, "image").startswith(f"{absent}: image: not a readable raster (GDAL: ")


def test_a_caller_s_better_explanation_replaces_the_read_failure(tmp_path: Path) -> None:
    path = tmp_path / "junk.tif"
    path.write_text("junk")
    seen: list[Exception] = []

    def explain(err: Exception) -> Exception | None:
        seen.append(err)
        return RuntimeError("item X, asset B04: the remote read failed")

    with pytest.raises(RuntimeError, match="item X, asset B04") as err:
        open_georeferenced(path, "image", explain)
    assert isinstance(err.value.__cause__, rasterio.errors.RasterioIOError) and seen == [err.value.__cause__]
    with pytest.raises(InventoryError, match="image: not a readable raster"):
        open_georeferenced(path, "image", lambda err: None)


def test_a_remote_raster_is_opened_signed_and_no_signature_lands_in_the_message(tmp_path: Path, monkeypatch) -> None:
    """Opened through ``openable``: the server refuses an unsigned URL, so the signed open is the one that works;
    a refused one names the href and its role, with GDAL's reason, and without the signature GDAL's reason held."""
    for name in ("signed.tif", "bare.tif"):
        write_raster(tmp_path / "srv" / name, np.ones((1, 8, 8), "uint8"), UTM31, CORNER)
    (tmp_path / "srv" / "junk.tif").write_text("served, signed, but not a raster")
    monkeypatch.setenv("LANDTAXA_TEST_SIGNATURE", "sig-5f2e")
    gdal: list[str] = []
    with AssetServer(tmp_path / "srv", signature="sig-5f2e") as server, rasterio.Env(GDAL_HTTP_MAX_RETRY=0):
        href = f"/vsicurl/{server.url}/%s"
        runtime.use_signer(f"{Path(__file__).with_name('signing_hook.py')}:sign")
        try:
            with open_georeferenced(href % "signed.tif", "asset B04") as src:
                assert src.crs.to_string() == UTM31 and src.read(1).sum() == 64
            with pytest.raises(InventoryError) as junk:
                open_georeferenced(href % "junk.tif", "asset B04", lambda err: gdal.append(str(err)))
        finally:
            runtime.use_signer(None)
        bare = refusal(href % "bare.tif", "asset B04")
    assert bare == f"{href % 'bare.tif'}: asset B04: not a readable raster (GDAL: HTTP response code: 403)"
    assert "junk.tif?sig=sig-5f2e" in gdal[0]
    assert str(junk.value).startswith(f"{href % 'junk.tif'}: asset B04: not a readable raster (GDAL: ")
    assert "junk.tif?..." in str(junk.value) and "sig-5f2e" not in str(junk.value)
