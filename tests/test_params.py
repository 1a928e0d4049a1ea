"""Tests of the steps' parameter objects (landtaxa.params): each setting written once, in the schema."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import yaml

from landtaxa import params as P
from landtaxa.plan import STEP_PARAMS

CONFIG = P.SCHEMA.parents[2] / "config" / "config.yaml"


@pytest.mark.parametrize("cls", sorted(STEP_PARAMS.values(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_field_is_a_documented_schema_key_with_a_default(cls) -> None:
    for name, key in cls.keys().items():
        prop = P.schema_property(key)
        assert "default" in prop and prop.get("description"), f"{cls.__name__}.{name}: {key}"
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        assert field.default is dataclasses.MISSING, f"{cls.__name__}.{name} restates a default"


@pytest.mark.parametrize("cls", sorted(STEP_PARAMS.values(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_built_from_the_config_and_round_trips_as_json(cls) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    full = P.schema_defaults()
    for section, value in config.items():  # the default run: the config file over the schema's defaults
        full[section] = {**full[section], **value} if isinstance(value, dict) else value
    obj = cls.from_config(full)
    assert cls.from_json(obj.to_json()) == obj
    assert set(json.loads(obj.to_json())) == set(cls.keys())


def test_a_step_reads_only_its_own_keys() -> None:
    """Snakemake reruns a step when its params change: an unrelated setting must leave them as they are."""
    base = P.schema_defaults()
    changed = copy.deepcopy(base)
    changed["analysis"]["merge_overlap"] = 0.4
    for step, cls in STEP_PARAMS.items():
        same = cls.from_config(base).to_json() == cls.from_config(changed).to_json()
        assert same == (step != "evolution"), step
    changed = copy.deepcopy(base)
    changed["cluster"]["n_init"] = 2
    moved = {step for step, cls in STEP_PARAMS.items()
             if cls.from_config(base).to_json() != cls.from_config(changed).to_json()}
    assert moved == {"clusters", "consensus", "stability"}


def test_training_sections_share_one_definition() -> None:
    train, refine = P.TrainParams.keys(), P.RefineParams.keys()
    assert train["margin"] == "train.margin" and refine["margin"] == "refine.margin"
    assert train["seed"] == refine["seed"] == "seed"
    assert set(train) - set(refine) == {"encoder", "z_dim", "radius"}


def test_partial_json_takes_the_schema_defaults_and_unknown_fields_are_refused() -> None:
    p = P.ClusterParams.from_json('{"n_init": 2}', {"gamma": 0.5})
    assert (p.n_init, p.gamma, p.method) == (2, 0.5, P.schema_property("cluster.method")["default"])
    with pytest.raises(ValueError, match="unknown parameter.*colour; ClusterParams has method"):
        P.ClusterParams.from_json('{"colour": 1}')
    with pytest.raises(KeyError, match="config key cluster.method is missing"):
        P.ClusterParams.from_config({"cluster": {}, "seed": 0})
