"""Short series end to end: one date (a single mosaic) and two dates, the latter with a user's own
encoder registered by a plugin module that is the only file it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import rasterio
import torch
from runner import CONFIGS

from landtaxa.clustering.series import Series
from landtaxa.storage import read_json

pytestmark = pytest.mark.slow
MODELS = ("spectral", "means", "geo", "refined", "consensus")  # configs/onedate.yaml: two members


@pytest.fixture(scope="module")
def one_date(snakemake, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("one date")
    snakemake.ok(work, "--cores", "2", configs=[CONFIGS / "onedate.yaml"])
    return work


@pytest.fixture(scope="module")
def two_dates_toy_encoder(snakemake, plugin_overlay: Path, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("toy encoder")
    targets = ["results/metrics.json", *(f"results/evolution/{m}/k3/summary.json" for m in ("geo", "refined"))]
    snakemake.ok(work, *targets, "--cores", "2", configs=[CONFIGS / "plugin.yaml", plugin_overlay])
    return work


def test_one_date_runs_every_step(one_date: Path) -> None:
    metrics = json.loads((one_date / "results/metrics.json").read_text())
    assert list(metrics) == [*MODELS, "main"]
    for model in ("geo", "refined", "consensus"):  # two members: the two taxonomies compared
        assert -1 <= metrics[model]["seed_agreement"] <= 1
    assert "seed_agreement" not in metrics["spectral"] and metrics["consensus"]["members"] == 2
    assert (one_date / "results/maps/consensus_confidence.tif").stat().st_size > 0
    for model in MODELS:
        assert metrics[model]["n_dates"] == 1 and metrics[model]["k"] == 3
        out = one_date / f"results/evolution/{model}/k3"
        summary = read_json(out / "summary.json")
        assert summary["changed_tiles"] == [] and "one date" in summary["note"]
        assert pd.read_csv(out / "transitions.csv").empty
        with rasterio.open(out / "change.tif") as src:
            assert src.count == 1 and (src.read(1)[src.read_masks(1) > 0] == 0).all()  # no change, no band pair
        labels = pd.read_parquet(out / "labels.parquet")
        assert labels["date"].nunique() == 1 and len(labels) == metrics[model]["n_tiles"]
        for name in ("evolution.png", "transitions.png"):
            assert (out / name).stat().st_size > 1000
        assert (one_date / f"results/analysis/{model}/k3/representatives.png").stat().st_size > 1000


def test_a_plugin_encoder_runs_the_whole_method_on_two_dates(two_dates_toy_encoder: Path) -> None:
    work = two_dates_toy_encoder
    for model in ("geo", "refined"):
        meta = torch.load(work / f"results/models/{model}.pt", weights_only=True)["meta"]
        assert meta["encoder"] == "toy" and meta["z_dim"] == 8
        assert Series(work / f"results/series/{model}.npz").shape[1:] == (2, 8)
        summary = read_json(work / f"results/evolution/{model}/k3/summary.json")
        assert len(summary["changed_tiles"]) == 1
        with rasterio.open(work / f"results/evolution/{model}/k3/change.tif") as src:
            assert src.count == 2
    metrics = json.loads((work / "results/metrics.json").read_text())
    assert [metrics[m]["n_dates"] for m in ("spectral", "means", "geo", "refined")] == [2, 2, 2, 2]
