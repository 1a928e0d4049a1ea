"""New dates arrive: only that date's work and the cheap downstream steps run again.

The archive is a demo region written as a folder of GeoTIFFs (one per date and granule).
A run on the first dates, with ``train.dates`` fixed, is followed by adding one date's
granules to the folder: the dry run must list exactly one alignment, one embedding per
model, and the series/clusters/maps/metrics steps; no grid, no training, no refinement.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from landtaxa.demo import DemoSpec, demo_dates, make_demo, truth_path
from landtaxa.storage import load_npz

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "run.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


@pytest.mark.slow
def test_new_date_reruns_only_its_work(tmp_path: Path) -> None:
    spec = DemoSpec(size=160, n_dates=5)
    archive = tmp_path / "archive"
    make_demo(spec, archive)
    dates = demo_dates(spec)
    images = tmp_path / "images"
    images.mkdir()

    def add(date: str) -> None:
        for f in sorted((archive / "images").glob(f"{date}_*.tif")):
            (images / f.name).symlink_to(f)

    for d in dates[:4]:
        add(d)
    (tmp_path / "run.yaml").write_text(json.dumps({
        "images": str(images),
        "truth": str(truth_path(archive)),
        "n_clusters": 5,
        "encoder": {"z_dim": 32},
        "train": {"dates": dates[:4], "triplets": 200, "epochs": 1},
        "refine": {"triplets": 100, "epochs": 1},
    }))
    t0 = time.perf_counter()
    full = snakemake(tmp_path, "--cores", "2")
    full_s = time.perf_counter() - t0
    assert full.returncode == 0, full.stderr[-3000:]
    models = {m: (tmp_path / f"results/models/{m}.pt").stat().st_mtime_ns for m in ("geo", "refined")}

    add(dates[4])
    dry = snakemake(tmp_path, "--cores", "2", "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts == {
        "aligned": 1, "embeddings": 2, "series": 2, "clusters": 2, "map": 2, "metrics": 1, "coverage": 1, "all": 1,
        "analysis": 2, "evolution": 2,
    }
    assert f"results/aligned/{dates[4]}.tif" in dry.stdout
    assert f"results/embeddings/geo/{dates[4]}.npz" in dry.stdout

    t0 = time.perf_counter()
    inc = snakemake(tmp_path, "--cores", "2")
    inc_s = time.perf_counter() - t0
    assert inc.returncode == 0, inc.stderr[-3000:]
    print(f"full run {full_s:.1f} s, incremental rerun with one new date {inc_s:.1f} s")
    assert {m: (tmp_path / f"results/models/{m}.pt").stat().st_mtime_ns for m in models} == models
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())
    assert metrics["refined"]["n_dates"] == 5 and metrics["refined"]["dates"][-1] == dates[4]
    series = load_npz(tmp_path / "results/series/refined.npz")
    assert series["series"].shape[1] == 5 and series["dates"].tolist() == dates

    # a clustering knob reruns clustering and what depends on it, never alignment or f^g
    config = json.loads((tmp_path / "run.yaml").read_text())
    (tmp_path / "run.yaml").write_text(json.dumps({**config, "cluster": {"n_init": 2}}))
    dry = snakemake(tmp_path, "--cores", "2", "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts["clusters"] == 2
    assert not {"aligned", "grid", "train_geo"} & set(counts)
