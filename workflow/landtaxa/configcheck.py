"""The config checked against the workflow's schema, with one line per problem that names the key.

Used where the workflow starts (``workflow/rules/common.smk``), never inside a rule's job:
:func:`check_config` loads the user's plugins (config key ``plugins``), whose encoders and
clustering methods then join the schema's lists of valid names, validates the config
(``jsonschema`` comes with snakemake) and fills in the schema's defaults.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from landtaxa.runtime import export_plugins, load_plugins

# config keys whose valid values are a registry's names: (schema path, registry)
REGISTRY_ENUMS = {
    ("encoder", "name"): ("landtaxa.learning.encoders", "ENCODERS"),
    ("demo", "encoder"): ("landtaxa.learning.encoders", "ENCODERS"),
    ("cluster", "method"): ("landtaxa.clustering.clusters", "METHODS"),
}


# keys that were renamed: the old name -> what to write instead
RENAMED = {"block_rows": "window_px (square windows, their side in pixels: 8 tile rows of 100 px are 800)"}


class ConfigError(ValueError):
    """The config does not follow the schema."""


def effective_schema(schema_path: str | os.PathLike) -> dict:
    """The schema, with every registry enum extended by the names plugins registered."""
    import importlib

    schema = copy.deepcopy(yaml.safe_load(Path(schema_path).read_text()))
    for path, (module, name) in REGISTRY_ENUMS.items():
        node = schema
        for part in path:
            node = node["properties"][part]
        names = getattr(importlib.import_module(module), name)
        node["enum"] = [*node["enum"], *(n for n in names if n not in node["enum"])]
    return schema


def first_config_error(config: dict, schema: dict) -> str | None:
    """The most relevant schema violation of ``config`` as one line naming its key, or None."""
    err = best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if err is None:
        return None
    key = ".".join(str(part) for part in err.absolute_path)
    message = err.message
    if err.validator == "additionalProperties":
        known = list(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(known))
        message = f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}"
        message += "".join(f"; {old} is now {RENAMED[old]}" for old in unknown if old in RENAMED)
    return f"config key {key}: {message}" if key else f"config: {message}"


def fill_defaults(config: dict, schema: dict) -> None:
    """Give every key the config leaves out the schema's default, nested sections included."""
    for name, prop in schema.get("properties", {}).items():
        if name not in config and "default" in prop:
            config[name] = copy.deepcopy(prop["default"])
        if prop.get("type") == "object" and "properties" in prop:
            fill_defaults(config.setdefault(name, {}), prop)


def check_config(config: dict, schema_path: str | os.PathLike) -> None:
    """Load the plugins, validate ``config`` and fill in its defaults (in place); ConfigError on a problem."""

    plugins = config.get("plugins") or []
    if not isinstance(plugins, list):
        raise ConfigError(f"config key plugins: {plugins!r} is not a list of modules or .py files")
    load_plugins(plugins)
    export_plugins(plugins)
    schema = effective_schema(schema_path)
    problem = first_config_error(config, schema)
    if problem is not None:
        raise ConfigError(f"{problem} (config/config.yaml documents every key)")
    fill_defaults(config, schema)
