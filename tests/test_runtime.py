"""Tests of what every job inherits (landtaxa.runtime): this checkout on PYTHONPATH, and the user's plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from landtaxa import runtime
from landtaxa.learning.encoders import ENCODERS


def test_expose_package_prepends_this_checkout_once(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    runtime.expose_package()
    runtime.expose_package()
    parts = os.environ["PYTHONPATH"].split(os.pathsep)
    assert parts == [runtime.PACKAGE_PARENT, "/elsewhere"]
    assert Path(runtime.PACKAGE_PARENT, "landtaxa", "runtime.py").is_file()


def test_plugins_load_by_file_or_module_and_reach_child_processes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(runtime.PLUGINS_ENV, "")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plugin_by_name.py").write_text(
        "from landtaxa.learning.encoders import ENCODERS, EncoderSpec, register_encoder\n"
        "register_encoder(EncoderSpec('by-name', ENCODERS['tilenet'].build))\n")
    by_file = tmp_path / "plugin_by_file.py"
    by_file.write_text("from landtaxa.learning.encoders import ENCODERS, EncoderSpec, register_encoder\n"
                       "register_encoder(EncoderSpec('by-file', ENCODERS['tilenet'].build))\n")
    try:
        runtime.load_plugins(["plugin_by_name", str(by_file)])
        assert {"by-name", "by-file"} <= set(ENCODERS)
        runtime.export_plugins(["plugin_by_name", str(by_file)])
        assert runtime.inherited_plugins() == ["plugin_by_name", str(by_file.resolve())]
        runtime.export_plugins([])
        assert runtime.inherited_plugins() == []
    finally:
        ENCODERS.pop("by-name", None)
        ENCODERS.pop("by-file", None)
        sys.modules.pop("plugin_by_name", None)


def test_a_plugin_that_cannot_load_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.py: the plugin cannot be loaded \(config key plugins\)"):
        runtime.load_plugins([str(tmp_path / "missing.py")])
