"""Tests of the encoder's time model and of the training that fits a time budget (landtaxa.learning.budget)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from landtaxa.learning.budget import device_flops, embedding_seconds, fit_training, training_seconds
from landtaxa.learning.encoders import EncoderCosts, encoder_costs

TILENET = EncoderCosts(12.0, 21_000_000, 4_000, 16_000)
GPU = device_flops(True, 1, 25, 10)
CPU = device_flops(False, 2, 20, 10)


def test_device_throughputs() -> None:
    assert GPU == 25e12 and CPU == 2 * 10e9 and device_flops(False, 0, 20, 10) == 10e9


def test_times_follow_the_flops_the_tiles_and_the_device() -> None:
    one = training_seconds(TILENET, 100, 4, 100_000, 1, GPU)
    fifty = training_seconds(TILENET, 100, 4, 100_000, 50, GPU)
    # the tiles are read once, then each epoch costs the same: 3 tiles forward and backward per triplet
    assert fifty - one == pytest.approx(49 * (training_seconds(TILENET, 100, 4, 100_000, 2, GPU) - one))
    assert 49 * 100_000 * 9 * 12e9 / GPU < fifty - one < 1.5 * 49 * 100_000 * 9 * 12e9 / GPU  # + the host's work
    assert training_seconds(TILENET, 100, 4, 100_000, 3, CPU) > 100 * training_seconds(TILENET, 100, 4, 100_000, 3,
                                                                                          GPU)
    # a 16 px tile is (16/100)^2 of a 100 px one's FLOPs
    big, small = (embedding_seconds(TILENET, ts, 4, 48_400, CPU) for ts in (100, 16))
    assert small < 0.05 * big


def test_a_training_that_fits_is_left_as_it_is() -> None:
    fit = fit_training(TILENET, 100, 4, 100_000, 50, 8, GPU)
    assert (fit.triplets, fit.epochs, fit.note, fit.shrunk) == (100_000, 50, "", False)
    assert fit.seconds < 8 * 3600
    assert fit_training(TILENET, 100, 4, 100_000, 50, None, CPU).epochs == 50  # no budget


def test_the_budget_takes_epochs_first_then_triplets() -> None:
    fewer_epochs = fit_training(TILENET, 100, 4, 100_000, 50, 8, device_flops(True, 1, 5, 10))
    assert fewer_epochs.triplets == 100_000 and 1 <= fewer_epochs.epochs < 50
    assert fewer_epochs.seconds <= 8 * 3600
    # one more epoch would not fit
    assert training_seconds(TILENET, 100, 4, 100_000, fewer_epochs.epochs + 1, device_flops(True, 1, 5, 10)) > 8 * 3600
    assert "train.max_hours 8: 50 epochs of 100,000 triplets" in fewer_epochs.note
    fewer_triplets = fit_training(TILENET, 100, 4, 100_000, 3, 8, CPU, "refine")
    assert fewer_triplets.epochs == 1 and 2 <= fewer_triplets.triplets < 100_000
    assert fewer_triplets.seconds <= 8 * 3600 and fewer_triplets.note.startswith("refine.max_hours 8")


def test_the_training_job_keeps_to_its_budget(tmp_path, caplog) -> None:
    """A real (tiny) training whose budget allows one of its three epochs: it trains one, says so and records it."""
    import rasterio

    from landtaxa.inputs.grid import Grid
    from landtaxa.learning.train import train_step
    from landtaxa.params import TrainParams

    grid = Grid(crs="EPSG:32630", transform=(10.0, 0.0, 400000.0, 0.0, -10.0, 4500000.0), width=128, height=128,
                tile_size=16, bands=[1, 2], dtype="uint16", scale_min=[0.0, 0.0], scale_max=[1000.0, 1000.0])
    grid.save(tmp_path / "grid.json")
    rng = np.random.default_rng(0)
    with rasterio.open(tmp_path / "a.tif", "w", driver="GTiff", width=128, height=128, count=2, dtype="uint16",
                       crs=grid.crs, transform=grid.affine) as dst:
        dst.write(rng.integers(1, 1000, (2, 128, 128), dtype=np.uint16))
    np.savez(tmp_path / "v.npz", fraction=np.ones((8, 8), np.float32))
    costs = encoder_costs("tilenet-lite")
    one, two = (training_seconds(costs, 16, 2, 200, e, device_flops(False, 1, 25, 10)) for e in (1, 2))
    params = TrainParams.from_json('{"encoder": "tilenet-lite", "z_dim": 16, "triplets": 200, "epochs": 3, '
                                   f'"device": "cpu", "cpu_gflops": 10, "max_hours": {(one + two) / 2 / 3600}}}')
    logging.getLogger("landtaxa").addHandler(caplog.handler)  # its own handler writes to stderr, not propagated
    with caplog.at_level(logging.WARNING, logger="landtaxa"):
        train_step(grid=str(tmp_path / "grid.json"), aligned=[str(tmp_path / "a.tif")], valid=[str(tmp_path / "v.npz")],
                   out=str(tmp_path / "m.pt"), params=params)
    import torch

    meta = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]
    assert meta["epochs"] == 1 and len(meta["loss_history"]) == 1 and meta["n_triplets"] == 200
    logging.getLogger("landtaxa").removeHandler(caplog.handler)
    assert meta["budget"].startswith("train.max_hours") and "training 1 epoch(s) of 200 triplets" in caplog.text
