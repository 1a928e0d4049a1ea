"""Shared pytest setup: import ``landtaxa`` from ``<repo>/workflow`` without PYTHONPATH."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The suite runs two test processes (pyproject.toml), each starting workflow runs whose jobs use two threads,
# on two CPUs. OpenMP's threads then spin at every barrier while their partner waits for a CPU: a small torch
# training took 11x longer beside two busy processes, 2.7x with passive waiting (set before torch loads; the
# workflow runs inherit it). A run on its own cores is not oversubscribed and keeps OpenMP's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT / "workflow", Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import logging  # noqa: E402

# The whole-workflow modules, longest first (minutes each on 2 cores). Started first, they overlap the rest of
# the suite in the two test processes (pyproject.toml's addopts) instead of running alone at its end.
LONGEST_FIRST = ("test_run_demo.py", "test_run_slurm.py", "test_run_real_data.py", "test_run_stac_api.py",
                 "test_run_short_series.py", "test_run_stac.py", "test_run_faults.py")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order

from rasters import write_raster  # noqa: E402


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """``make_raster(name, array, crs, transform, nodata=None, dtype=None)`` writes under tmp_path."""

    def make(name: str, *args, **kwargs) -> Path:
        return write_raster(tmp_path / name, *args, **kwargs)

    return make


@pytest.fixture(scope="module")
def quiet_one_thread():
    """Tiny models run fastest (and steadiest on a busy machine) on one thread; logs kept quiet."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    logger = logging.getLogger("landtaxa")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
    torch.set_num_threads(before)
