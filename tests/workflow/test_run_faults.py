"""Faults and repeatability: killed runs resume to the same results, the same seed gives the
same labels, user paths may hold spaces and non-ASCII letters, and the disk estimate bounds what
a run writes.

The tests share two runs of one small archive (configs/faults.yaml), written as a user's own
files (an image sheet with a mask column, a truth raster, a config file and a working folder, all
in paths with spaces and non-ASCII letters): an uninterrupted reference run, and a run killed
with SIGKILL in the middle of training and again in the middle of embedding, each time resumed
with ``--rerun-incomplete``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasters import write_raster
from runner import CONFIGS

from landtaxa.checks import RunShape, bytes_needed, encoder_bytes, output_estimates
from landtaxa.inputs.demo.scene import make_demo
from landtaxa.inputs.demo.spec import DemoSpec, demo_dates, truth_path
from landtaxa.inputs.grid import Grid
from landtaxa.learning.cube import read_embeddings
from landtaxa.storage import load_npz

pytestmark = pytest.mark.slow
ODD = "carpeta con espacios ñ é 東京"  # every user-given path goes through a folder like this
SPEC = DemoSpec(size=128, n_dates=3)
MODELS = ("spectral", "means", "geo", "refined")  # configs/faults.yaml: one member


# the outputs these tests read (the analysis of a taxonomy plays no part in faults and paths); the baselines'
# model files are asked for by name, as no job reads them
TARGETS = ["results/metrics.json", "results/maps/coverage.tif", *(f"results/maps/{m}_clusters.tif" for m in MODELS),
           *(f"results/models/{m}.pt" for m in MODELS)]


def configs(user_config: Path) -> list[Path]:
    return [CONFIGS / "faults.yaml", user_config]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> Path:
    """The config file of a user archive: sheet, images, a cloud mask and the truth, in odd paths."""
    base = tmp_path_factory.mktemp("faults") / ODD
    archive = base / "archivo de imágenes"
    inventory = make_demo(SPEC, archive)
    mask_dir = base / "máscaras de nubes"
    first_date, first_granule, first_path = inventory[0]
    with rasterio.open(first_path) as src:
        mask = write_raster(mask_dir / "máscara 1.tif", np.zeros((src.height, src.width), "uint8"), src.crs.to_string(),
                            src.transform)
    rows = ["date\tgranule\tpath\tmask"]
    for date, granule, path in inventory:
        rows.append(f"{date}\t{granule}\t{os.path.relpath(path, base)}\t"
                    + (os.path.relpath(mask, base) if (date, granule) == (first_date, first_granule) else ""))
    sheet = base / "hoja de imágenes ü.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    config = base / "configuración del ensayo" / "mi config ö.yaml"
    config.parent.mkdir()
    config.write_text(json.dumps({"images": str(sheet), "truth": str(truth_path(archive))}))
    return config


@pytest.fixture(scope="module")
def reference_run(snakemake, user_files: Path) -> Path:
    work = user_files.parent.parent / "trabajo sin cortes ü"
    t0 = time.perf_counter()
    snakemake.ok(work, *TARGETS, "--cores", "2", configs=configs(user_files))
    print(f"reference run: {time.perf_counter() - t0:.1f} s")
    return work


def _kill_when(proc: subprocess.Popen, started: Callable[[], bool], timeout: float = 600) -> None:
    """SIGKILL the whole process group of ``proc`` as soon as ``started()`` holds."""
    t0 = time.monotonic()
    while not started():
        assert proc.poll() is None, "the run ended before the point where it was to be killed"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)
    time.sleep(0.5)  # the job is past its start (python and torch loading)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # every job of the group is gone, none still writing
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("processes of the killed run are still alive")


def _unlock_and_start(snakemake, work: Path, config: Path) -> subprocess.Popen:
    # a killed snakemake leaves its lock behind: --unlock, as the README says, then resume
    snakemake.ok(work, "--unlock", configs=configs(config), timeout=120)
    return snakemake.popen(work, *TARGETS, "--cores", "2", "--rerun-incomplete", configs=configs(config))


def _readable_outputs(work: Path) -> None:
    """Every file under a final name reads whole: no half-written output is visible."""
    for f in (work / "results").rglob("*.npz"):
        load_npz(f)
    for f in (work / "results" / "embeddings").glob("*/*.zarr"):
        read_embeddings(f)
    for f in (work / "results" / "models").glob("*.pt"):
        torch.load(f, weights_only=True)


@pytest.fixture(scope="module")
def resumed_run(snakemake, user_files: Path) -> Path:
    """Killed in training, resumed; killed in embedding, resumed to the end."""
    work = user_files.parent.parent / "trabajo interrumpido ñ"
    proc = snakemake.popen(work, *TARGETS, "--cores", "2", configs=configs(user_files))
    _kill_when(proc, lambda: (work / "logs/train/geo.log").exists())
    assert not (work / "results/models/geo.pt").exists(), "killed too late: training had finished"
    _readable_outputs(work)

    proc = _unlock_and_start(snakemake, work, user_files)
    logs = work / "logs/embed/geo"
    _kill_when(proc, lambda: logs.exists() and any(logs.iterdir()))
    assert len(list((work / "results/embeddings/geo").glob("*.zarr"))) < SPEC.n_dates, "killed too late"
    _readable_outputs(work)

    proc = _unlock_and_start(snakemake, work, user_files)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    return work


def test_run_in_paths_with_spaces_and_non_ascii(reference_run: Path, user_files: Path) -> None:
    metrics = json.loads((reference_run / "results/metrics.json").read_text())
    assert list(metrics) == [*MODELS, "main"] and metrics["geo"]["n_dates"] == SPEC.n_dates
    assert "ari" in metrics["geo"]  # the truth raster was read from its odd path
    log = (reference_run / f"logs/align/{demo_dates(SPEC)[0]}.log").read_text()
    assert "aligned 4 granule(s)" in log
    for model in MODELS:
        assert (reference_run / f"results/maps/{model}_clusters.tif").stat().st_size > 0


def _results(work: Path) -> dict[str, np.ndarray]:
    out = {}
    for model in MODELS:
        out[f"{model} labels"] = load_npz(work / f"results/clusters/{model}/k4.npz")["labels"]
        state = torch.load(work / f"results/models/{model}.pt", weights_only=True)["state_dict"]
        out.update({f"{model} {k}": v.numpy() for k, v in state.items()})
        for f in sorted((work / f"results/embeddings/{model}").glob("*.zarr")):
            out[f"{model} {f.stem}"] = read_embeddings(f)["embeddings"]
    return out


def test_killed_run_resumes_to_the_uninterrupted_results(reference_run: Path, resumed_run: Path) -> None:
    """Also the repeatability check: the same config and seed, run twice on the CPU, agree bit for bit."""
    ref, res = _results(reference_run), _results(resumed_run)
    assert ref.keys() == res.keys()
    for key in ref:
        np.testing.assert_array_equal(res[key], ref[key], err_msg=key)
    assert not list((resumed_run / "results").rglob(".*.tmp*")), "temporary files left behind"
    assert json.loads((resumed_run / "results/metrics.json").read_text()) == json.loads(
        (reference_run / "results/metrics.json").read_text()
    )


def test_disk_estimate_bounds_the_real_outputs(reference_run: Path) -> None:
    grid = Grid.load(reference_run / "results/grid.json")
    shape = RunShape(width=grid.width, height=grid.height, n_bands=grid.n_bands, itemsize=2,
                     tile_size=grid.tile_size, dates=demo_dates(SPEC), models=list(MODELS), z_dim=16, ks=[4],
                     model_bytes=encoder_bytes("tilenet-lite", grid.n_bands, 16))
    estimates = output_estimates(shape)
    actual = 0
    for rel, estimate in estimates.items():
        size = (reference_run / rel).stat().st_size
        assert size <= estimate, f"{rel}: {size} bytes written, {estimate} estimated"
        actual += size
    assert sum(estimates.values()) < 10 * actual  # an upper bound, not a wild one
    assert bytes_needed(shape, reference_run) == 0  # a finished run needs nothing more


