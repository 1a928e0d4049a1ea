"""Checks run before the long steps: the region against the tile size, K and the truth raster,
and the disk space the run's outputs need.

Everything here reads raster headers only (no pixel data), so it runs when the workflow's
DAG is built and a bad run stops before its first job. Each problem raises
:class:`~landtaxa.inputs.inventory.InventoryError` (or :class:`RunCheckError` for config and
disk problems) with a message that names the file or config key, the problem, and what
to do about it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.warp import transform_bounds

from landtaxa.inputs.datasets import InventoryError, open_georeferenced
from landtaxa.inputs.grid import Region, footprint
from landtaxa.learning.encoders import encoder_values


class RunCheckError(ValueError):
    """A config value or the machine cannot carry the run (K, disk space)."""


def image_region(
    paths: Sequence[str], tile_size: int, crs: str | None = None, resolution: float | None = None,
    bands: Sequence[int] | None = None,
) -> Region:
    """The region the grid will cover; refuse a region, then a raster, smaller than one tile.

    The same footprint as :func:`landtaxa.inputs.grid.build_grid` (:func:`landtaxa.inputs.grid.footprint`).
    """
    try:
        fp = footprint(paths, crs, resolution, bands)
    except ValueError as err:
        raise InventoryError(str(err)) from err
    region = Region(fp.crs, fp.bounds, fp.resolution, len(fp.bands), np.dtype(fp.dtype).itemsize)
    check_tile_size(region, tile_size)
    for path, box in zip(paths, fp.boxes, strict=True):
        w, h = fp.box_pixels(box)
        if w < tile_size or h < tile_size:
            raise InventoryError(
                f"{path}: the raster covers {w} x {h} px of the grid, smaller than one tile "
                f"({tile_size} px, config key tile_size); use a smaller tile_size or leave this file out"
            )
    return region


def check_tile_size(region: Region, tile_size: int) -> None:
    """Refuse a tile larger than the whole region (the grid would have no tile)."""
    if region.width < tile_size or region.height < tile_size:
        raise RunCheckError(
            f"config key tile_size: {tile_size} px is larger than the region "
            f"({region.width} x {region.height} px); choose a tile_size of at most "
            f"{min(region.width, region.height)}"
        )


def check_k(ks: Iterable[int], n_tiles: int, where: str) -> None:
    """Refuse a K below 2 or above the number of tiles that can be clustered."""
    ks = list(ks)
    if min(ks) < 2:
        raise RunCheckError(f"config key n_clusters: K must be at least 2, got {min(ks)}")
    if max(ks) > n_tiles:
        raise RunCheckError(
            f"{where}: n_clusters asks for K={max(ks)} clusters but there are only {n_tiles} tiles "
            f"to cluster; lower n_clusters (config key) below {n_tiles + 1}"
        )


def check_truth_overlap(truth: str, region: Region) -> None:
    """Refuse a truth raster that is not a readable, georeferenced raster over the region."""
    with open_georeferenced(truth, "truth raster (config key truth)") as src:
        b = transform_bounds(src.crs, region.crs, *src.bounds, densify_pts=21)
    r = region.bounds
    if b[0] >= r[2] or b[2] <= r[0] or b[1] >= r[3] or b[3] <= r[1]:
        raise InventoryError(
            f"{truth}: the truth raster does not overlap the region (truth bounds "
            f"{_fmt(b)}, region {_fmt(r)} in the grid's CRS); check its CRS and extent (config key truth)"
        )


def _fmt(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in b) + ")"


# --------------------------------------------------------------------------- disk space


@dataclass
class RunShape:
    """What sets the size of a run's outputs."""

    width: int
    height: int
    n_bands: int
    itemsize: int
    tile_size: int
    dates: Sequence[str]
    models: Sequence[str]
    z_dim: int
    ks: Sequence[int] = (2,)
    model_bytes: int = 0
    scratch_bytes: int = 0


def output_estimates(shape: RunShape, results: str = "results") -> dict[str, int]:
    """Upper-bound bytes of every output of the run, by path (relative to the run's folder).

    Aligned mosaics are counted uncompressed (deflate usually saves half or more);
    ``scratch_bytes`` is the largest temporary file (the training tiles' memory map).
    """
    w = math.ceil(shape.width / shape.tile_size) * shape.tile_size
    h = math.ceil(shape.height / shape.tile_size) * shape.tile_size
    n = (w // shape.tile_size) * (h // shape.tile_size)
    t = len(shape.dates)
    npz = 1024  # header and member names of one .npz
    out = {}
    for d in shape.dates:
        out[f"{results}/aligned/{d}.tif"] = w * h * (shape.n_bands * shape.itemsize + 1) + 64 * 1024
        out[f"{results}/aligned/{d}_valid.npz"] = n * 4 + npz
    for m in shape.models:
        out[f"{results}/models/{m}.pt"] = shape.model_bytes
        for d in shape.dates:  # a Zarr store per date (float32 counted: an upper bound for float16)
            out[f"{results}/embeddings/{m}/{d}.zarr"] = n * (shape.z_dim * 4 + 1 + 4) + 64 * 1024
        # the series: its index (the cube beside it links the per-date stores: a few kB)
        # (valid, source, ids; dates; the moments of a standardised series; six members' headers)
        out[f"{results}/series/{m}.npz"] = n * (t * 3 + 8) + t * (40 + 2 * shape.z_dim * 8) + 6 * 256 + npz
        out[f"{results}/embeddings/{m}.zarr"] = 64 * 1024
        for k in shape.ks:
            out[f"{results}/clusters/{m}/k{k}.npz"] = n * 16 + k * shape.z_dim * t * 4 + t * 64 + npz
            out[f"{results}/clusters/{m}/k{k}.json"] = 64 * 1024 + k * 64
            out[f"{results}/clusters/{m}/k{k}_distances.npz"] = n * k * 4 + npz
        out[f"{results}/maps/{m}_clusters.tif"] = n + 64 * 1024
        out[f"{results}/maps/{m}_clusters.png"] = n * 64 + 512 * 1024
    out[f"{results}/maps/coverage.tif"] = n * 2 + 64 * 1024
    out[f"{results}/metrics.json"] = 64 * 1024
    return out


def bytes_needed(shape: RunShape, workdir: str | os.PathLike = ".", results: str = "results") -> int:
    """Bytes still to write: outputs that do not exist yet, plus the largest scratch file."""
    todo = {
        p: b for p, b in output_estimates(shape, results).items() if not (Path(workdir) / p).exists()
    }
    return sum(todo.values()) + (shape.scratch_bytes if todo else 0)


def free_bytes(path: str | os.PathLike) -> tuple[Path, int]:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return p, shutil.disk_usage(p).free


def check_disk(needed: int, folder: str | os.PathLike, margin_gb: float) -> str:
    """Return a line stating the need and the free space; raise when they do not fit.

    ``margin_gb`` is kept free on top of the estimate (logs, other users of the disk).
    """
    where, free = free_bytes(folder)
    line = (f"the outputs still to write need about {_gb(needed)} under {Path(folder).absolute()} "
            f"({_gb(free)} free on {where})")
    if needed + margin_gb * 1e9 > free:
        raise RunCheckError(
            f"{Path(folder).absolute()}: not enough disk space: the outputs still to write need about "
            f"{_gb(needed)} plus the {margin_gb:g} GB margin (config key disk.margin_gb), but only "
            f"{_gb(free)} is free; free some space or run in a folder on a larger disk (--directory)"
        )
    return line


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.2f} MB"


def encoder_bytes(name: str, in_channels: int, z_dim: int) -> int:
    """Size of a saved encoder: its parameters and buffers in float32 (:func:`encoder_values`), plus the file's
    framing. A plugin encoder that declares no ``values`` is counted on its network, which needs torch: where
    snakemake itself runs without it (rules in conda envs), a bound for the paper's TileNet is used instead,
    its stages up to 512 channels, then the last stage of ``z_dim``.
    """
    try:
        n = encoder_values(name, in_channels, z_dim)
    except ImportError:
        return 4 * (12_000_000 + 9 * (512 * z_dim + 3 * z_dim * z_dim)) + 64 * 1024
    return 4 * n + 64 * 1024
