"""Whole-workflow tests: the runner fixture, and the run configs in ``configs/``.

Each config in ``configs/`` is an overlay over ``config/config.yaml`` (snakemake merges it, nested
keys included); ``test_run_configs.py`` passes every one through ``snakemake --lint`` and a dry run.
Runs happen in temporary folders; a test that needs the user's own files writes them and a second
overlay naming them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runner import Snakemake


@pytest.fixture(scope="session")
def snakemake() -> Snakemake:
    """The runner every whole-workflow test uses."""
    return Snakemake()


@pytest.fixture(scope="session")
def plugin_overlay(tmp_path_factory) -> Path:
    """The overlay naming the toy encoder's plugin file (configs/plugin.yaml uses it)."""
    path = tmp_path_factory.mktemp("plugin") / "plugins.yaml"
    path.write_text(f"plugins: [{Path(__file__).with_name('toy_encoder.py')}]\n")
    return path
