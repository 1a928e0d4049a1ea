"""Shared pytest setup: import ``landtaxa`` from ``<repo>/workflow`` without PYTHONPATH."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT / "workflow", Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from rasters import write_raster  # noqa: E402


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """``make_raster(name, array, crs, transform, nodata=None, dtype=None)`` writes under tmp_path."""

    def make(name: str, *args, **kwargs) -> Path:
        return write_raster(tmp_path / name, *args, **kwargs)

    return make
