# Glue: config validation, the image inventory, model names and input functions.
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from landtaxa.checks import (  # noqa: E402
    Region,
    RunCheckError,
    RunShape,
    bytes_needed,
    check_disk,
    check_k,
    check_tile_size,
    check_truth_overlap,
    encoder_bytes,
    image_region,
)
from landtaxa.configcheck import first_config_error  # noqa: E402
from landtaxa.demo import DemoSpec, demo_inventory, truth_path  # noqa: E402
from landtaxa.inventory import InventoryError, check_images, read_inventory  # noqa: E402
from landtaxa.runtime import expose_package  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

# One line that names the key first; snakemake's validation (which also fills in the
# defaults) then runs on a config known to be valid.
if (config_error := first_config_error(config, CONFIG_SCHEMA)) is not None:
    raise WorkflowError(f"landtaxa: {config_error} (config/config.yaml documents every key)")
validate(config, schema=str(CONFIG_SCHEMA))

RESULTS = "results"
DEMO_DIR = f"{RESULTS}/demo"
# Jobs inherit the environment, so `python -m landtaxa` finds this checkout's package in
# every job, inside a rule's conda env too.
expose_package()


def demo_spec():
    d = config["demo"]
    return DemoSpec(
        size=d["size"],
        n_dates=d["n_dates"],
        year=d["year"],
        granules=d["granules"],
        overlap=d["overlap"],
        pixel_size=d["pixel_size"],
        bands=d["bands"],
        change_date=d["change_date"],
        seed=config["seed"],
    )


IS_DEMO = config["images"] == "demo"
if IS_DEMO:
    INVENTORY = pd.DataFrame(
        [
            {"date": d, "granule": g, "path": str(p), "mask": ""}
            for d, g, p in demo_inventory(demo_spec(), DEMO_DIR)
        ]
    )
else:
    try:
        INVENTORY = read_inventory(config["images"], config["date_pattern"])
        check_images(INVENTORY, config["bands"], config["masks"]["band"])
        REGION = image_region(
            INVENTORY["path"].tolist(), config["tile_size"], config["crs"], config["resolution"], config["bands"]
        )
    except (InventoryError, RunCheckError) as err:
        raise WorkflowError(f"landtaxa: {err}")
if IS_DEMO:
    _spec = demo_spec()
    _x0, _y0 = _spec.origin
    _side = _spec.size * _spec.pixel_size
    REGION = Region(CRS.from_user_input(_spec.crs), (_x0, _y0 - _side, _x0 + _side, _y0), _spec.pixel_size,
                    _spec.bands, 2)

DATES = sorted(INVENTORY["date"].unique())
if config["train"]["dates"]:
    TRAIN_DATES = [str(d) for d in config["train"]["dates"]]
    unknown = sorted(set(TRAIN_DATES) - set(DATES))
    if unknown:
        raise WorkflowError(f"landtaxa: train.dates lists {', '.join(unknown)}, not in the inventory")
else:
    TRAIN_DATES = DATES

# truth: "demo" is the demo's own ground truth, and means no truth for other images.
if config["truth"] == "demo":
    TRUTH = str(truth_path(DEMO_DIR)) if IS_DEMO else None
else:
    TRUTH = config["truth"]
    if TRUTH and not os.path.isfile(TRUTH):
        raise WorkflowError(f"landtaxa: {TRUTH}: truth raster not found (config key truth)")
K_LIST = config["n_clusters"] if isinstance(config["n_clusters"], list) else [config["n_clusters"]]
K_MAIN = K_LIST[0]
try:
    check_tile_size(REGION, config["tile_size"])
    check_k(K_LIST, REGION.n_tiles(config["tile_size"]), f"the region's grid ({config['images']})")
    if TRUTH and not IS_DEMO:
        check_truth_overlap(TRUTH, REGION)
except (InventoryError, RunCheckError) as err:
    raise WorkflowError(f"landtaxa: {err}")

# The encoders: geo (f^g), then one refined model per iteration; the last is "refined".
N_REFINE = config["refine"]["iterations"]
REFINED = [f"refined{i}" for i in range(1, N_REFINE)] + (["refined"] if N_REFINE > 0 else [])
MODELS = ["geo"] + REFINED
PARENT = dict(zip(REFINED, MODELS[:-1]))


def check_disk_space():
    """Print the space the outputs still to write need; stop when the disk has less (config disk)."""
    ts = config["tile_size"]
    models_missing = any(not os.path.exists(f"{RESULTS}/models/{m}.pt") for m in MODELS)
    tile_bytes = 3 * REGION.n_bands * ts * ts * 2
    scratch = [config[s]["triplets"] * tile_bytes for s in ("train", "refine")]
    scratch = [b for b, s in zip(scratch, ("train", "refine")) if b > config[s]["cache_mb"] * 2**20]
    shape = RunShape(
        width=REGION.width, height=REGION.height, n_bands=REGION.n_bands, itemsize=REGION.itemsize, tile_size=ts,
        dates=DATES, models=MODELS, z_dim=config["encoder"]["z_dim"], ks=K_LIST,
        model_bytes=encoder_bytes(config["encoder"]["name"], REGION.n_bands, config["encoder"]["z_dim"])
        if models_missing else 0,
        scratch_bytes=max(scratch, default=0),
    )
    needed = bytes_needed(shape, ".", RESULTS)
    if IS_DEMO and not os.path.exists(truth_path(DEMO_DIR)):
        needed += int(REGION.width * REGION.height * REGION.n_bands * 2 * len(DATES) * (1 + config["demo"]["overlap"]) ** 2)
    try:
        line = check_disk(needed, RESULTS, config["disk"]["margin_gb"] if config["disk"]["check"] else -float("inf"))
    except RunCheckError as err:
        raise WorkflowError(f"landtaxa: {err}")
    print(f"landtaxa: {line}", file=sys.stderr)


check_disk_space()


wildcard_constraints:
    date=r"\d{4}-\d{2}-\d{2}",
    model="|".join(MODELS),
    refined="|".join(REFINED) if REFINED else "__none__",
    k=r"\d+",


def refine_clusters(parent):
    """The clustering that guides a refinement: of the training dates when they are fixed.

    With train.dates set, adding new dates changes neither the training images nor the
    clusters the refinement learns from, so no model is retrained.
    """
    if config["train"]["dates"]:
        return f"{RESULTS}/clusters/train/{parent}/k{K_MAIN}.npz"
    return f"{RESULTS}/clusters/{parent}/k{K_MAIN}.npz"


def images_of(date):
    return INVENTORY.loc[INVENTORY["date"] == date, "path"].tolist()


def masks_of(date):
    """The mask raster of each image of a date, '-' where an image has none."""
    return [m or "-" for m in INVENTORY.loc[INVENTORY["date"] == date, "mask"]]


def has_masks(date):
    return any(m != "-" for m in masks_of(date))


def grid_images():
    """One file per granule (its earliest date): the grid does not change when dates are added."""
    first = INVENTORY.drop_duplicates("granule", keep="first")
    return first["path"].tolist()


def scale_images(max_images=16):
    """Images sampled for the radiometric scaling: spread evenly over the training dates.

    Tied to the training dates, like the encoders, so new dates change neither.
    """
    rows = INVENTORY[INVENTORY["date"].isin(TRAIN_DATES)]
    if len(rows) > max_images:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, max_images).round().astype(int)]
    return rows["path"].tolist()


def aligned(dates):
    return [f"{RESULTS}/aligned/{d}.tif" for d in dates]


def valid_fractions(dates):
    return [f"{RESULTS}/aligned/{d}_valid.npz" for d in dates]


def opt(value):
    """A config value as one shell word ('' for null)."""
    if value is None:
        return "''"
    if isinstance(value, (list, tuple)):
        return shlex.quote(",".join(str(v) for v in value))
    return shlex.quote(str(value))


def final_outputs():
    out = [f"{RESULTS}/metrics.json", f"{RESULTS}/maps/coverage.tif"]
    for model in MODELS:
        out += [f"{RESULTS}/maps/{model}_clusters.tif", f"{RESULTS}/maps/{model}_clusters.png"]
        out += analysis_outputs(model)
    return out


def analysis_outputs(model):
    """One file of each analysis job of a model: per K (the main K unless analysis.all_k), and the K sweep."""
    out = []
    for k in K_LIST if config["analysis"]["all_k"] else [K_MAIN]:
        out += [f"{RESULTS}/analysis/{model}/k{k}/stability.json", f"{RESULTS}/evolution/{model}/k{k}/summary.json"]
    if len(K_LIST) > 1:
        out.append(f"{RESULTS}/analysis/{model}/k_choice.csv")
    return out


def train_args(section):
    c = config[section]
    return (
        f"--triplets {c['triplets']} --epochs {c['epochs']} --batch-size {c['batch_size']}"
        f" --lr {c['lr']} --betas {c['betas'][0]},{c['betas'][1]} --margin {c['margin']}"
        f" --l2 {c['l2']} --min-valid {config['min_valid']} --seed {config['seed']}"
        f" --cache-mb {c['cache_mb']} --device {config['device']}"
        + ("" if c["augment"] else " --no-augment")
    )
