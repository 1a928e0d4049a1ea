"""Bad inputs stop the workflow with a message naming the file (or config key) and the problem.

Most stop before any job runs (nothing under results/). The few that can only be seen in
the pixels (a corrupt block, a date with no valid pixel, fewer valid tiles than K) stop in
the first job that reads them, before training, and leave no output under a final name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from rasters import corrupt_block, write_raster
from runner import Snakemake

UTM = "EPSG:32631"
RUNNER = Snakemake()


def img(path: Path, bands: int = 3, dtype: str = "uint16", crs: str | None = UTM, size: int = 40,
        origin: tuple[float, float] = (500000, 4000000), **kwargs) -> Path:
    data = np.random.default_rng(0).integers(50, 150, (bands, size, size)).astype(dtype)
    return write_raster(path, data, crs, (*origin, 10), **kwargs)


def snakemake(work: Path, images: str, *config: str):
    overlay = work / "overlay.yaml"  # in a file: on the command line, null would read as the string "null"
    overlay.write_text(json.dumps({"images": images, "truth": None, "tile_size": 8}))
    return RUNNER(work, "--cores", "1", *(["--config", *config] if config else []), configs=[overlay], timeout=300)


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
    # the untrained baselines need only the grid and may be built alongside; nothing is trained
    trained = [m.name for m in (work / "results" / "models").glob("*.pt") if m.stem not in ("spectral", "means")]
    assert not trained, f"the run went on past the failure: {trained}"
    assert not list((work / "results").rglob(".*tmp*")), "a temporary file was left behind"
    return (work / failing_log).read_text()


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
    assert "2020-02-01_a.tif: image: not a readable raster" in out


def test_granule_without_crs(tmp_path: Path) -> None:
    img(tmp_path / "in" / "2020-01-01_a.tif", crs=None)
    out = run(tmp_path, str(tmp_path / "in"))
    assert "2020-01-01_a.tif: image: no CRS" in out


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
    bad = corrupt_block(deflate_img(tmp_path / "in" / "2020-02-01_a.tif"))
    log = run_until_failure(tmp_path, str(tmp_path / "in"), "logs/grid/grid.log")
    assert f"{bad}: cannot read pixels (the file is corrupt or truncated" in log
    assert not (tmp_path / "results" / "grid.json").exists() and not (tmp_path / "results" / "aligned").exists()


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
    log = run_until_failure(tmp_path, str(tmp_path / "in"), "logs/align/2020-02-01.log")
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


def test_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    proc = RUNNER(tmp_path, "--cores", "1", "--config", "n_clusters=1", timeout=120)
    assert proc.returncode != 0
    assert "landtaxa: config key n_clusters: 1 is less than the minimum of 2" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_missing_truth_is_reported(tmp_path: Path) -> None:
    proc = RUNNER(tmp_path, "--cores", "1", "-n", "--config", f"truth={tmp_path / 'labels.tif'}", timeout=120)
    assert proc.returncode != 0
    assert f"{tmp_path / 'labels.tif'}: truth raster not found" in proc.stdout + proc.stderr


def test_too_little_disk_stops_before_any_job(tmp_path: Path) -> None:
    config = tmp_path / "disk.yaml"
    config.write_text("disk: {margin_gb: 1.0e+9}\n")
    proc = RUNNER(tmp_path, "--cores", "1", configs=[config], timeout=120)
    assert proc.returncode != 0
    assert f"{tmp_path / 'results'}: not enough disk space" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_disk_need_is_printed_before_the_run(tmp_path: Path) -> None:
    proc = RUNNER.ok(tmp_path, "-n", timeout=120)
    assert re.search(r"landtaxa: the outputs still to write need about [\d.]+ [MG]B under", proc.stderr)
