"""Every run config of the whole-workflow tests passes snakemake's linter and plans its DAG."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from runner import CONFIGS


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_config_lints_and_plans(snakemake, plugin_overlay, tmp_path: Path, config: str) -> None:
    configs = [CONFIGS / config, plugin_overlay]
    proc = snakemake.ok(tmp_path, "--lint", configs=configs, timeout=120)
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr
    jobs = snakemake.planned(tmp_path, configs=configs, timeout=120)
    steps = {"demo", "grid", "align", "train", "embed", "clusters", "metrics"}
    if (yaml.safe_load((CONFIGS / config).read_text()).get("refine") or {}).get("iterations") != 0:
        steps.add("refine")  # a config may leave the refinement out (refine.iterations: 0)
    assert steps <= set(jobs)
    assert not (tmp_path / "results").exists()
