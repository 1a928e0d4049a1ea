"""Bad inputs stop the workflow with a message naming the file (or config key) and the problem.

Most stop before any job runs (nothing under results/). The few that can only be seen in
the pixels (a corrupt block, a date with no valid pixel, fewer valid tiles than K) stop in
the first job that reads them, before training, and leave no output under a final name.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasters import write_raster

from landtaxa.align import align_date
from landtaxa.checks import check_truth_overlap, image_region
from landtaxa.cli import main
from landtaxa.grid import Grid
from landtaxa.storage import save_npz

REPO = Path(__file__).resolve().parents[1]
UTM = "EPSG:32631"


def img(path: Path, bands: int = 3, dtype: str = "uint16", crs: str | None = UTM, size: int = 40,
        origin: tuple[float, float] = (500000, 4000000), **kwargs) -> Path:
    data = np.random.default_rng(0).integers(50, 150, (bands, size, size)).astype(dtype)
    return write_raster(path, data, crs, (*origin, 10), **kwargs)


def snakemake(work: Path, images: str, *config: str) -> subprocess.CompletedProcess:
    overlay = work / "overlay.yaml"  # in a file: on the command line, null would read as the string "null"
    overlay.write_text(json.dumps({"images": images, "truth": None, "tile_size": 8}))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--cores", "1", "--configfile", str(overlay), *(["--config", *config] if config else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def run(work: Path, images: str, *config: str) -> str:
    """Run the workflow and check that it stopped before any job ran."""
    proc = snakemake(work, images, *config)
    assert proc.returncode != 0
    assert not (work / "results").exists(), "a failed start must not write results"
    return proc.stdout + proc.stderr


def run_until_failure(work: Path, images: str, failing_log: str) -> str:
    """Run the workflow, which fails in a job; check it left nothing half-done; return that job's log."""
    proc = snakemake(work, images)
    assert proc.returncode != 0
    assert failing_log in proc.stdout + proc.stderr
    assert not (work / "results" / "models").exists(), "the run went on past the failure"
    assert not list((work / "results").rglob(".*tmp*")), "a temporary file was left behind"
    return (work / failing_log).read_text()


def tiff_block(path: Path, x: int = 1, y: int = 1) -> tuple[int, int]:
    """Byte offset and length of one block of band 1 of a GeoTIFF."""
    with rasterio.open(path) as src:
        return (int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1)),
                int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)))


def corrupt(path: Path) -> Path:
    """Overwrite one compressed block with garbage: the header stays valid, the pixels do not."""
    offset, length = tiff_block(path)
    data = bytearray(path.read_bytes())
    data[offset : offset + length] = b"\xff" * length
    path.write_bytes(bytes(data))
    return path


def deflate_img(path: Path) -> Path:
    return img(path, tiled=True, blockxsize=16, blockysize=16, compress="deflate")


def test_band_counts_differ_between_dates(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    img(tmp_path / "in" / "2020-02-01_a.tif", bands=4)
    out = run(tmp_path, str(tmp_path / "in"))
    assert "2020-02-01_a.tif: has 4 bands but" in out and "2020-01-01_a.tif has 3" in out


def test_non_raster_matched_by_the_glob(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    (tmp_path / "in" / "2020-02-01_a.tif").write_text("this is not a GeoTIFF")
    out = run(tmp_path, str(tmp_path / "in" / "*.tif"))
    assert "2020-02-01_a.tif: not a readable raster" in out


def test_granule_without_crs(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif", crs=None)
    out = run(tmp_path, str(tmp_path / "in"))
    assert "2020-01-01_a.tif: raster has no CRS" in out


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["2020-01-01\ta\tone.tif", "2020-01-01\ta\ttwo.tif"], "date 2020-01-01 lists granule 'a' more than once"),
        (["2020-01-01\ta\tone.tif", "2020-13-45\ta\ttwo.tif"], "row 3: cannot read '2020-13-45' as a date"),
        (["2020-01-01\ta\tone.tif", "2020-02-01\ta\tmissing.tif"], "missing.tif: image file not found"),
    ],
)
def test_bad_sheet_rows(tmp_path: Path, rows: list[str], message: str) -> None:
    img(tmp_path / "one.tif")
    img(tmp_path / "two.tif")
    (tmp_path / "images.tsv").write_text("date\tgranule\tpath\n" + "\n".join(rows) + "\n")
    out = run(tmp_path, str(tmp_path / "images.tsv"))
    assert message in out and ("images.tsv" in out or "missing.tif" in out)


def test_truncated_geotiff(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    bad = deflate_img(tmp_path / "in" / "2020-02-01_a.tif")
    bad.write_bytes(bad.read_bytes()[:-100])  # an interrupted copy: the header is whole, the end is not
    out = run(tmp_path, str(tmp_path / "in"))
    assert f"{bad}: the file is truncated" in out and "copy it again" in out


def test_corrupt_block_stops_the_grid_before_alignment(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    bad = corrupt(deflate_img(tmp_path / "in" / "2020-02-01_a.tif"))
    log = run_until_failure(tmp_path, str(tmp_path / "in"), "logs/grid/grid.log")
    assert f"{bad}: cannot read pixels (the file is corrupt or truncated" in log
    assert not (tmp_path / "results" / "grid.json").exists() and not (tmp_path / "results" / "aligned").exists()


def test_corrupt_block_in_alignment_names_the_file(tmp_path: Path) -> None:
    good = img(tmp_path / "good.tif")
    bad = corrupt(deflate_img(tmp_path / "bad.tif"))
    grid = Grid(crs=UTM, transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=40, tile_size=8,
                bands=[1, 2, 3], dtype="uint16", scale_min=[0] * 3, scale_max=[200] * 3)
    with pytest.raises(ValueError, match=re.escape(f"{bad}: cannot read pixels")):
        align_date(grid, [bad, good], tmp_path / "out" / "a.tif", tmp_path / "out" / "a_valid.npz")
    assert not list((tmp_path / "out").iterdir())


def test_data_types_differ_between_dates(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    img(tmp_path / "in" / "2020-02-01_a.tif", dtype="float32")
    out = run(tmp_path, str(tmp_path / "in"))
    assert "2020-02-01_a.tif: data type float32 differs from" in out and "2020-01-01_a.tif (uint16)" in out


def test_raster_smaller_than_one_tile(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    small = img(tmp_path / "in" / "2020-02-01_b.tif", size=5)
    out = run(tmp_path, str(tmp_path / "in"))
    assert f"{small}: the raster covers 5 x 5 px of the grid, smaller than one tile (8 px, config key tile_size)" in out


def test_tile_size_larger_than_the_region(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    out = run(tmp_path, str(tmp_path / "in"), "tile_size=64")
    assert "config key tile_size: 64 px is larger than the region (40 x 40 px)" in out


def test_date_with_no_valid_pixel(tmp_path: Path) -> None:
    """Every pixel nodata (or cloud): the date's alignment stops, naming its files; nothing is trained."""
    img(tmp_path / "in" / "2020-01-01_a.tif")
    empty = write_raster(tmp_path / "in" / "2020-02-01_a.tif", np.zeros((3, 40, 40), "uint16"), UTM,
                         (500000, 4000000, 10), nodata=0)
    log = run_until_failure(tmp_path, str(tmp_path / "in"), "logs/aligned/2020-02-01.log")
    assert f"{empty}: every pixel of this date is nodata or masked (clouds)" in log
    assert "leave the date out of the inventory" in log
    assert not (tmp_path / "results" / "aligned" / "2020-02-01.tif").exists()


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no rasters here")
    out = run(tmp_path, str(tmp_path / "in"))
    assert f"{tmp_path / 'in'}: no raster files found" in out


def test_sheet_with_a_missing_column(tmp_path: Path) -> None:
    img(tmp_path / "one.tif")
    (tmp_path / "images.tsv").write_text("day\tpath\n2020-01-01\tone.tif\n")
    out = run(tmp_path, str(tmp_path / "images.tsv"))
    assert f"{tmp_path / 'images.tsv'}: the image sheet lacks column(s) date" in out


def test_truth_not_overlapping_the_region(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")
    truth = img(tmp_path / "far away truth.tif", bands=1, dtype="uint8", origin=(700000, 5000000))
    out = run(tmp_path, str(tmp_path / "in"), f"truth={truth}")
    assert f"{truth}: the truth raster does not overlap the region" in out and "config key truth" in out


def test_more_clusters_than_tiles_in_the_region(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif")  # 5 x 5 tiles of 8 px
    out = run(tmp_path, str(tmp_path / "in"), "n_clusters=30")
    assert "n_clusters asks for K=30 clusters but there are only 25 tiles" in out


def test_more_clusters_than_valid_tiles_stops_before_fitting(tmp_path: Path, caplog) -> None:
    """Valid tiles are known only once the series exists: the clusters step refuses K before fitting."""
    grid = Grid(crs=UTM, transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=40, tile_size=8,
                bands=[1], dtype="uint16", scale_min=[0], scale_max=[1])
    grid.save(tmp_path / "grid.json")
    series = tmp_path / "series" / "geo.npz"
    save_npz(series, series=np.zeros((3, 2, 4), np.float32), tile_ids=np.arange(3), dates=np.array(["a", "b"]))
    logger = logging.getLogger("landtaxa")
    logger.addHandler(caplog.handler)
    try:
        rc = main(["clusters", "--grid", str(tmp_path / "grid.json"), "--series", str(series), "--k", "5",
                   "--model", "geo", "--out", str(tmp_path / "k5.npz"), "--metrics", str(tmp_path / "k5.json")])
    finally:
        logger.removeHandler(caplog.handler)
    assert rc == 1
    assert f"{series}: n_clusters asks for K=5 clusters but the series holds only 3 valid tiles" in caplog.text
    assert not (tmp_path / "k5.npz").exists() and not (tmp_path / "k5.json").exists()


def test_truth_in_another_crs_over_the_region_is_accepted(tmp_path: Path) -> None:
    """The overlap test works in the grid's CRS: a truth raster in degrees over the region passes."""
    image = img(tmp_path / "2020-01-01_a.tif")
    truth = write_raster(tmp_path / "truth.tif", np.ones((10, 10), "uint8"), "EPSG:4326",
                         (2.95, 36.2, 0.01))  # 2.95-3.05 E, 36.1-36.2 N: holds the region
    region = image_region([str(image)], tile_size=8)
    check_truth_overlap(str(truth), region)
    assert (region.width, region.height, region.n_tiles(8)) == (40, 40, 25)
