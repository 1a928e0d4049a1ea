"""The parameters of every workflow step, one frozen dataclass per step.

Each field names the config key it comes from (``setting("cluster.n_init")``); nothing
else is written about a setting here: its type, default and description live in the
config schema (``workflow/schemas/config.schema.yaml``) and its comment in
``config/config.yaml``. A step's object is built from the validated config and reads only
the keys that step uses, so Snakemake reruns a step exactly when one of its own settings
changes. The workflow hands the object to the step whole, as JSON
(``python -m landtaxa <step> ... --params '{...}'``); by hand, any field left out takes the
schema's default (:func:`schema_defaults`).

Keys are dotted paths into the config; ``{section}`` stands for the class's ``section``,
so the geographic training (``train.*``) and the refinement (``refine.*``) share one
definition of the training settings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, ClassVar

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


def setting(key: str) -> Any:
    """A dataclass field read from the config key ``key`` (dotted; ``{section}`` allowed)."""
    return dataclasses.field(metadata={"key": key})


def lookup(config: dict, key: str) -> Any:
    """The value at dotted ``key`` in a nested config; KeyError naming the key if absent."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"config key {key} is missing")
        value = value[part]
    return value


@dataclasses.dataclass(frozen=True)
class StepParams:
    """Base of the parameter objects: building from a config, and the JSON round trip."""

    section: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Field name -> the config key it reads."""
        return {f.name: f.metadata["key"].format(section=cls.section) for f in dataclasses.fields(cls)}

    @classmethod
    def from_config(cls, config: dict) -> StepParams:
        return cls(**{name: lookup(config, key) for name, key in cls.keys().items()})

    @classmethod
    def from_json(cls, text: str, overrides: dict | None = None) -> StepParams:
        """Fields from JSON text (a partial object is completed with the schema's defaults)."""
        given = {**json.loads(text or "{}"), **(overrides or {})}
        unknown = sorted(set(given) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(cls.keys())}")
        missing = [name for name in cls.keys() if name not in given]
        if missing:
            defaults = cls.from_config(schema_defaults())
            given.update({name: getattr(defaults, name) for name in missing})
        return cls(**given)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@functools.cache
def schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA.read_text())


def schema_defaults(node: dict | None = None) -> dict:
    """The config every key of which holds the schema's default (what a run without config uses)."""
    node = schema() if node is None else node
    out = {}
    for name, prop in node.get("properties", {}).items():
        if prop.get("type") == "object" and "properties" in prop:
            out[name] = schema_defaults(prop)
        elif "default" in prop:
            out[name] = prop["default"]
    return out


def schema_property(key: str) -> dict:
    """The schema's entry for dotted ``key`` (its type, default and description)."""
    node = schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node


# --------------------------------------------------------------------------- the steps


@dataclasses.dataclass(frozen=True)
class DemoParams(StepParams):
    """The synthetic demo region (its own seed: the region stays put while the method's seed varies)."""

    size: int = setting("demo.size")
    n_dates: int = setting("demo.n_dates")
    year: int = setting("demo.year")
    granules: int = setting("demo.granules")
    overlap: float = setting("demo.overlap")
    pixel_size: float = setting("demo.pixel_size")
    bands: int = setting("demo.bands")
    change_date: int | None = setting("demo.change_date")
    seed: int = setting("demo.seed")


@dataclasses.dataclass(frozen=True)
class GridParams(StepParams):
    tile_size: int = setting("tile_size")
    bands: list[int] | list[str] | None = setting("bands")
    crs: str | None = setting("crs")
    resolution: float | None = setting("resolution")
    scale_min: float | list[float] | None = setting("scale.min")
    scale_max: float | list[float] | None = setting("scale.max")
    percentiles: list[float] = setting("scale.percentiles")
    nodata: float | None = setting("nodata")
    aoi: str | None = setting("aoi")


@dataclasses.dataclass(frozen=True)
class AlignParams(StepParams):
    window_px: int = setting("window_px")
    gdal_cache_mb: int = setting("gdal_cache_mb")
    resampling: str = setting("resampling")
    mask_band: int | None = setting("masks.band")
    invalid: list[float] = setting("masks.invalid")
    nodata: float | None = setting("nodata")
    empty_dates: str = setting("empty_dates")


@dataclasses.dataclass(frozen=True)
class TrainingParams(StepParams):
    """Settings shared by the geographic training and the refinement (keys under ``section``)."""

    triplets: int | dict = setting("{section}.triplets")  # see landtaxa.learning.triplets.triplet_budget
    epochs: int = setting("{section}.epochs")
    batch_size: int = setting("{section}.batch_size")
    lr: float = setting("{section}.lr")
    betas: list[float] = setting("{section}.betas")
    margin: float = setting("{section}.margin")
    l2: float = setting("{section}.l2")
    augment: bool = setting("{section}.augment")
    cache_mb: float = setting("{section}.cache_mb")
    max_hours: float | None = setting("{section}.max_hours")  # see landtaxa.learning.budget.fit_training
    gpu_tflops: float = setting("compute.gpu_tflops")  # the throughputs the time budget is fitted at
    cpu_gflops: float = setting("compute.cpu_gflops")
    gdal_cache_mb: int = setting("gdal_cache_mb")  # reading the triplets' tiles
    min_valid: float = setting("min_valid")
    seed: int = setting("seed")
    device: str = setting("device")


@dataclasses.dataclass(frozen=True)
class TrainParams(TrainingParams):
    section: ClassVar[str] = "train"
    encoder: str = setting("encoder.name")
    z_dim: int = setting("encoder.z_dim")
    radius: float | None = setting("train.radius")


@dataclasses.dataclass(frozen=True)
class RefineParams(TrainingParams):
    section: ClassVar[str] = "refine"


@dataclasses.dataclass(frozen=True)
class EmbedParams(StepParams):
    batch_size: int | None = setting("embed.batch_size")
    compile: bool = setting("embed.compile")
    dtype: str = setting("embed.dtype")
    window_px: int = setting("window_px")
    gdal_cache_mb: int = setting("gdal_cache_mb")
    min_valid: float = setting("min_valid")
    device: str = setting("device")


@dataclasses.dataclass(frozen=True)
class SeriesParams(StepParams):
    max_missing: float = setting("max_missing")
    standardise: str = setting("cluster.standardise")


@dataclasses.dataclass(frozen=True)
class ClusterParams(StepParams):
    method: str = setting("cluster.method")
    n_init: int = setting("cluster.n_init")
    max_iter: int = setting("cluster.max_iter")
    stop_moved: float = setting("cluster.stop_moved")
    sample_rows: int = setting("cluster.sample_rows")
    full_passes: int = setting("cluster.full_passes")
    batch_size: int = setting("cluster.batch_size")
    gamma: float = setting("cluster.gamma")
    max_dtw_tiles: int = setting("cluster.max_dtw_tiles")
    seed: int = setting("seed")


@dataclasses.dataclass(frozen=True)
class MetricsParams(StepParams):
    min_agreement: float = setting("members.min_agreement")


@dataclasses.dataclass(frozen=True)
class StabilityParams(ClusterParams):
    restarts: int = setting("analysis.restarts")


@dataclasses.dataclass(frozen=True)
class TruthParams(StepParams):
    window_px: int = setting("window_px")


@dataclasses.dataclass(frozen=True)
class CoverageParams(StepParams):
    min_valid: float = setting("min_valid")


@dataclasses.dataclass(frozen=True)
class AnalysisParams(StepParams):
    projection_tiles: int = setting("analysis.projection_tiles")
    seed: int = setting("seed")


@dataclasses.dataclass(frozen=True)
class RepresentativesParams(StepParams):
    representatives: int = setting("analysis.representatives")
    interpolate: list[int] | None = setting("analysis.interpolate")
    weights: list[float] = setting("analysis.weights")
    rgb_bands: list[int] | None = setting("analysis.rgb_bands")


@dataclasses.dataclass(frozen=True)
class EvolutionParams(StepParams):
    merge_overlap: float = setting("analysis.merge_overlap")


@dataclasses.dataclass(frozen=True)
class ViewerParams(StepParams):
    viewer_tiles: int = setting("analysis.viewer_tiles")
    gdal_cache_mb: int = setting("gdal_cache_mb")
    rgb_bands: list[int] | None = setting("analysis.rgb_bands")
    seed: int = setting("seed")


@dataclasses.dataclass(frozen=True)
class ComputeParams(StepParams):
    """Where the jobs run and how long they may take: what the requests are estimated from (no step reads it)."""

    gpu: bool | str = setting("compute.gpu")
    gpu_tflops: float = setting("compute.gpu_tflops")
    cpu_gflops: float = setting("compute.cpu_gflops")
    max_hours: float = setting("compute.max_hours")


# the parameter object of every step that has settings (steps not listed have none)
STEP_PARAMS: dict[str, type[StepParams]] = {
    "demo": DemoParams, "grid": GridParams, "align": AlignParams, "train": TrainParams, "refine": RefineParams,
    "embed": EmbedParams, "embed_baseline": EmbedParams, "series": SeriesParams, "clusters": ClusterParams,
    "consensus": ClusterParams, "truth": TruthParams,
    "coverage": CoverageParams, "analysis": AnalysisParams, "representatives": RepresentativesParams,
    "stability": StabilityParams, "metrics": MetricsParams, "evolution": EvolutionParams,
    "viewer": ViewerParams,
}
