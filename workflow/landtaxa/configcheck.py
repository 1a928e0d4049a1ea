"""The config checked against the workflow's schema, with one line per problem that names the key.

Used where the workflow starts (``workflow/rules/common.smk``), before snakemake's own
validation, whose message is the schema's multi-line dump. Runs in snakemake's own
environment (``jsonschema`` is a dependency of snakemake), never inside a rule's job.
"""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import yaml
from jsonschema.exceptions import best_match


def first_config_error(config: dict, schema_path: str | os.PathLike) -> str | None:
    """The most relevant schema violation of ``config`` as one line naming its key, or None."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    err = best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if err is None:
        return None
    key = ".".join(str(part) for part in err.absolute_path)
    message = err.message
    if err.validator == "additionalProperties":
        known = list(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(known))
        message = f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}"
    return f"config key {key}: {message}" if key else f"config: {message}"
