"""The package's floors read one way: import-linter's contracts (pyproject.toml) hold, and they catch
an import that climbs a floor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=package_parent)


def test_every_contract_is_kept() -> None:
    result = lint(REPO / "workflow", REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_an_import_that_climbs_a_floor_breaks_a_contract(tmp_path: Path) -> None:
    """The same contracts on a copy of the package where the grid (inputs) imports a product."""
    shutil.copytree(REPO / "workflow" / "landtaxa", tmp_path / "landtaxa")
    grid = tmp_path / "landtaxa" / "inputs" / "grid.py"
    climbing = "from landtaxa.products import rasters  # noqa: F401\n"
    grid.write_text(grid.read_text().replace("from landtaxa.params", climbing + "from landtaxa.params", 1))
    result = lint(tmp_path, REPO / "pyproject.toml")
    assert result.returncode != 0
    assert "landtaxa.inputs.grid -> landtaxa.products.rasters" in result.stdout
