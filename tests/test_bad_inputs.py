"""Bad images stop the workflow before any job runs, with a message naming the file and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rasters import write_raster

REPO = Path(__file__).resolve().parents[1]
UTM = "EPSG:32631"


def img(path: Path, bands: int = 3, dtype: str = "uint16", crs: str | None = UTM) -> Path:
    return write_raster(path, np.full((bands, 40, 40), 100, dtype), crs, (500000, 4000000, 10))


def run(work: Path, images: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--cores", "1", "--config", f"images={images}", "truth=null", "tile_size=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert not (work / "results").exists(), "a failed start must not write results"
    return proc.stdout + proc.stderr


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
