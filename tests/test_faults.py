"""Faults and repeatability: killed runs resume to the same results, the same seed gives the
same labels, user paths may hold spaces and non-ASCII letters, running out of GPU memory
halves the batch, and a run that will not fit on the disk stops before it starts.

The end-to-end tests share two runs of one small archive, written as a user's own files
(an image sheet with a mask column, a truth raster, a config file and a working folder, all
in paths with spaces and non-ASCII letters): an uninterrupted reference run, and a run
killed with SIGKILL in the middle of training and again in the middle of embedding, each
time resumed with ``--rerun-incomplete``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasters import write_raster

from landtaxa.checks import RunShape, bytes_needed, check_disk, encoder_bytes, output_estimates
from landtaxa.demo import DemoSpec, demo_dates, make_demo, truth_path
from landtaxa.embed import embed_date, encode_adaptive
from landtaxa.encoder import TileNet
from landtaxa.grid import Grid
from landtaxa.storage import load_npz

REPO = Path(__file__).resolve().parents[1]
ODD = "carpeta con espacios ñ é 東京"  # every user-given path goes through a folder like this
SPEC = DemoSpec(size=128, n_dates=3)
RUN = {
    "n_clusters": 4,
    "encoder": {"name": "tilenet-lite", "z_dim": 16},
    "train": {"triplets": 300, "epochs": 3},
    "refine": {"triplets": 100, "epochs": 1},
    "cluster": {"n_init": 2},
    "masks": {"invalid": [1]},
}


def snakemake_cmd(work: Path, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
            "--configfile", str(config), "--cores", "2", *args]


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
    config.write_text(json.dumps({**RUN, "images": str(sheet), "truth": str(truth_path(archive))}))
    return config


@pytest.fixture(scope="module")
def reference_run(user_files: Path) -> Path:
    work = user_files.parent.parent / "trabajo sin cortes ü"
    t0 = time.perf_counter()
    proc = subprocess.run(snakemake_cmd(work, user_files), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
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


def _unlock_and_start(work: Path, config: Path) -> subprocess.Popen:
    # a killed snakemake leaves its lock behind: --unlock, as the README says, then resume
    unlock = subprocess.run(snakemake_cmd(work, config, "--unlock"), capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    return subprocess.Popen(snakemake_cmd(work, config, "--rerun-incomplete"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _readable_outputs(work: Path) -> None:
    """Every file under a final name reads whole: no half-written output is visible."""
    for f in (work / "results").rglob("*.npz"):
        load_npz(f)
    for f in (work / "results" / "models").glob("*.pt"):
        torch.load(f, weights_only=True)


@pytest.fixture(scope="module")
def resumed_run(user_files: Path) -> Path:
    """Killed in training, resumed; killed in embedding, resumed to the end."""
    work = user_files.parent.parent / "trabajo interrumpido ñ"
    proc = subprocess.Popen(snakemake_cmd(work, user_files), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: (work / "logs/train_geo/geo.log").exists())
    assert not (work / "results/models/geo.pt").exists(), "killed too late: training had finished"
    _readable_outputs(work)

    proc = _unlock_and_start(work, user_files)
    logs = work / "logs/embeddings/geo"
    _kill_when(proc, lambda: logs.exists() and any(logs.iterdir()))
    assert len(list((work / "results/embeddings/geo").glob("*.npz"))) < SPEC.n_dates, "killed too late"
    _readable_outputs(work)

    proc = _unlock_and_start(work, user_files)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    return work


@pytest.mark.slow
def test_run_in_paths_with_spaces_and_non_ascii(reference_run: Path, user_files: Path) -> None:
    metrics = json.loads((reference_run / "results/metrics.json").read_text())
    assert set(metrics) == {"geo", "refined"} and metrics["geo"]["n_dates"] == SPEC.n_dates
    assert "ari" in metrics["geo"]  # the truth raster was read from its odd path
    log = (reference_run / f"logs/aligned/{demo_dates(SPEC)[0]}.log").read_text()
    assert "aligned 4 granule(s)" in log
    for model in ("geo", "refined"):
        assert (reference_run / f"results/maps/{model}_clusters.tif").stat().st_size > 0


def _results(work: Path) -> dict[str, np.ndarray]:
    out = {}
    for model in ("geo", "refined"):
        out[f"{model} labels"] = load_npz(work / f"results/clusters/{model}/k4.npz")["labels"]
        state = torch.load(work / f"results/models/{model}.pt", weights_only=True)["state_dict"]
        out.update({f"{model} {k}": v.numpy() for k, v in state.items()})
        for f in sorted((work / f"results/embeddings/{model}").glob("*.npz")):
            out[f"{model} {f.stem}"] = load_npz(f)["embeddings"]
    return out


@pytest.mark.slow
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


@pytest.mark.slow
def test_disk_estimate_bounds_the_real_outputs(reference_run: Path) -> None:
    grid = Grid.load(reference_run / "results/grid.json")
    shape = RunShape(width=grid.width, height=grid.height, n_bands=grid.n_bands, itemsize=2,
                     tile_size=grid.tile_size, dates=demo_dates(SPEC), models=["geo", "refined"], z_dim=16, ks=[4],
                     model_bytes=encoder_bytes(RUN["encoder"]["name"], grid.n_bands, 16))
    estimates = output_estimates(shape)
    actual = 0
    for rel, estimate in estimates.items():
        size = (reference_run / rel).stat().st_size
        assert size <= estimate, f"{rel}: {size} bytes written, {estimate} estimated"
        actual += size
    assert sum(estimates.values()) < 10 * actual  # an upper bound, not a wild one
    assert bytes_needed(shape, reference_run) == 0  # a finished run needs nothing more


def test_disk_check_message(tmp_path: Path) -> None:
    assert "need about 2.00 MB" in check_disk(2_000_000, tmp_path / "results", margin_gb=0)
    with pytest.raises(ValueError) as err:
        check_disk(2_000_000, tmp_path / "results", margin_gb=1e6)
    msg = str(err.value)
    assert f"{tmp_path / 'results'}: not enough disk space" in msg and "disk.margin_gb" in msg and "GB is free" in msg


def test_too_little_disk_stops_before_any_job(tmp_path: Path) -> None:
    config = tmp_path / "disk.yaml"
    config.write_text("disk: {margin_gb: 1.0e+9}\n")
    cmd = snakemake_cmd(tmp_path, config, "--cores", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"{tmp_path / 'results'}: not enough disk space" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_disk_need_is_printed_before_the_run(tmp_path: Path) -> None:
    proc = subprocess.run(snakemake_cmd(tmp_path, REPO / "config/config.yaml", "-n"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"landtaxa: the outputs still to write need about [\d.]+ [MG]B under", proc.stderr)


# --------------------------------------------------------------------------- out of GPU memory


@pytest.fixture(scope="module")
def tiny_encoder(quiet_one_thread) -> TileNet:
    torch.manual_seed(0)
    return TileNet(2, z_dim=8, widths=(8, 8, 8, 8)).eval()


def _capped(model: TileNet, cap: int, error: type[Exception]):
    """The model's forward, raising ``error`` like CUDA does for batches above ``cap`` tiles."""
    forward = model.forward

    def capped(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > cap:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    return capped


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_out_of_memory_halves_the_batch(tiny_encoder, monkeypatch, caplog, error) -> None:
    tiles = np.random.default_rng(0).uniform(0, 1, (23, 2, 8, 8)).astype(np.float32)
    expected, _ = encode_adaptive(tiny_encoder, tiles, 23, torch.device("cpu"))
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 5, error))
    with caplog.at_level(logging.WARNING, logger="landtaxa"):
        logging.getLogger("landtaxa").addHandler(caplog.handler)
        try:
            got, batch = encode_adaptive(tiny_encoder, tiles, 16, torch.device("cpu"))
        finally:
            logging.getLogger("landtaxa").removeHandler(caplog.handler)
    assert batch == 4
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["out of GPU memory at batch 16: retrying with batch 8",
                        "out of GPU memory at batch 8: retrying with batch 4"]


def test_out_of_memory_with_one_tile_is_an_error(tiny_encoder, monkeypatch) -> None:
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 0, torch.cuda.OutOfMemoryError))
    with pytest.raises(MemoryError, match="batch of one tile"):
        encode_adaptive(tiny_encoder, np.zeros((3, 2, 8, 8), np.float32), 2, torch.device("cpu"))


def test_embed_date_after_out_of_memory_equals_a_run_without(tiny_encoder, monkeypatch, tmp_path) -> None:
    rng = np.random.default_rng(1)
    path = write_raster(tmp_path / "aligned.tif", rng.integers(0, 1000, (2, 32, 40)).astype("uint16"),
                        "EPSG:32631", (500000, 4000000, 10))
    grid = Grid(crs="EPSG:32631", transform=(10, 0, 500000, 0, -10, 4000000), width=40, height=32, tile_size=8,
                bands=[1, 2], dtype="uint16", scale_min=[0, 0], scale_max=[1000, 1000])
    fractions = np.ones((4, 5), np.float32)
    embed_date(tiny_encoder, grid, path, fractions, tmp_path / "plain.npz", 0.5, 64, torch.device("cpu"))
    monkeypatch.setattr(tiny_encoder, "forward", _capped(tiny_encoder, 3, torch.cuda.OutOfMemoryError))
    embed_date(tiny_encoder, grid, path, fractions, tmp_path / "oom.npz", 0.5, 64, torch.device("cpu"))
    np.testing.assert_allclose(load_npz(tmp_path / "oom.npz")["embeddings"],
                               load_npz(tmp_path / "plain.npz")["embeddings"], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- safe model files


def test_every_torch_load_is_weights_only() -> None:
    """No file the package loads can run code: every torch.load passes weights_only=True."""
    calls = []
    for src in (REPO / "workflow" / "landtaxa").glob("*.py"):
        text = src.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            calls.append((src.name, m.group(1)))
        assert "pickle.load" not in text and "allow_pickle=True" not in text, src
    assert calls, "expected the checkpoint loader"
    for name, args in calls:
        assert "weights_only=True" in args, f"{name}: torch.load({args})"
