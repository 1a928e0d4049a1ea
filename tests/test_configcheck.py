"""Tests of the config check (landtaxa.configcheck): one line naming the key, defaults, plugins' names."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from landtaxa.configcheck import ConfigError, check_config, effective_schema
from landtaxa.learning.encoders import ENCODERS
from landtaxa.params import SCHEMA, schema_defaults
from landtaxa.runtime import PLUGINS_ENV, inherited_plugins

CONFIG = yaml.safe_load((SCHEMA.parents[2] / "config" / "config.yaml").read_text())


@pytest.mark.parametrize(("change", "message"), [
    ({"n_clusters": 1}, "config key n_clusters: 1 is less than the minimum of 2"),
    ({"tile_size": "abc"}, "config key tile_size: 'abc' is not of type 'integer'"),
    ({"no_such_key": 3}, "config: unknown key(s) no_such_key; valid keys: images,"),
    ({"analysis": {"restarts": 2, "colour": "red"}}, "config key analysis: unknown key(s) colour;"),
    ({"cluster": {"method": "hierarchical"}}, "config key cluster.method: 'hierarchical' is not one of"),
    ({"encoder": {"name": "resnet"}}, "config key encoder.name: 'resnet' is not one of"),
    ({"train": {"dates": "some"}}, "config key train.dates: 'some' is not one of ['all']"),
    ({"images": {"stac_api": "https://x", "colections": ["a"]}}, "config key images: unknown key(s) colections;"),
    ({"images": {"collections": ["a"]}}, "config key images: 'stac_api' is a required property"),
    ({"http_headers": {"Authorization": 3}}, "config key http_headers.Authorization: 3 is not of type 'string'"),
    ({"block_rows": 8}, "unknown key(s) block_rows; valid keys: images,"),
    ({"block_rows": 8}, "; block_rows is now window_px (square windows, their side in pixels"),
    ({"compute": {"gpu": "maybe"}}, "config key compute.gpu: 'maybe' is not one of ['auto', True, False]"),
    ({"train": {"max_hours": 0}}, "config key train.max_hours: 0 is less than or equal to the minimum of 0"),
])
def test_a_bad_config_is_one_line_naming_the_key(change: dict, message: str) -> None:
    config = {**copy.deepcopy(CONFIG), **change}
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_defaults_are_filled_in_nested_sections_too() -> None:
    config = {"images": "demo", "tile_size": 16, "n_clusters": 4, "seed": 0, "cluster": {"n_init": 2}}
    check_config(config, SCHEMA)
    defaults = schema_defaults()
    assert config["cluster"]["n_init"] == 2 and config["cluster"]["method"] == defaults["cluster"]["method"]
    assert config["disk"] == defaults["disk"] and config["demo"]["seed"] == 0


@pytest.fixture(autouse=True)
def _plugins_env_restored(monkeypatch) -> None:
    """check_config hands the plugins to child processes through the environment: undone after each test."""
    monkeypatch.setenv(PLUGINS_ENV, "")


def test_a_plugin_adds_its_encoder_to_the_valid_names(tmp_path: Path) -> None:
    plugin = tmp_path / "my_encoders.py"
    plugin.write_text("from landtaxa.learning.encoders import ENCODERS, EncoderSpec, register_encoder\n"
                      "register_encoder(EncoderSpec('mine', ENCODERS['tilenet'].build))\n")
    config = {**copy.deepcopy(CONFIG), "encoder": {"name": "mine"}}
    with pytest.raises(ConfigError, match="'mine' is not one of"):
        check_config(copy.deepcopy(config), SCHEMA)
    try:
        check_config({**config, "plugins": [str(plugin)]}, SCHEMA)
        assert "mine" in effective_schema(SCHEMA)["properties"]["encoder"]["properties"]["name"]["enum"]
        assert inherited_plugins() == [str(plugin)]  # the workflow's jobs load it too
    finally:
        ENCODERS.pop("mine", None)


def test_a_plugin_that_fails_is_named(tmp_path: Path) -> None:
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('no GPU driver')\n")
    with pytest.raises(ValueError, match=r"broken.py: the plugin cannot be loaded \(config key plugins\): no GPU"):
        check_config({**copy.deepcopy(CONFIG), "plugins": [str(plugin)]}, SCHEMA)
    with pytest.raises(ValueError, match="no_such_module: the plugin cannot be loaded"):
        check_config({**copy.deepcopy(CONFIG), "plugins": ["no_such_module"]}, SCHEMA)
