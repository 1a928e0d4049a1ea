"""An offline HTML viewer of the taxonomy: the map, a date slider, the legend, and any tile over time.

``write_viewer`` writes one self-contained page (``results/viewer/index.html``): it opens from
the file system in any current browser, with no server and no network. Everything it shows is
inlined: the cluster map and the kind of every tile on every date as one byte per tile and map
(zlib-compressed, base64; the page inflates it with the browser's ``DecompressionStream``), the
colours and class names of the GeoTIFFs, and optionally small images of some tiles on every
date, packed into one PNG atlas. The maps are drawn one pixel per tile, scaled up by a whole
factor without smoothing, so tiles stay crisp squares in the colour table's exact colours.

Images of every tile on every date would make a large region's page heavy, so thumbnails are
given for a subset of tiles only (``thumb_tile_ids``, e.g. the representatives of each cluster or
a random sample), within a budget of pixels (:mod:`landtaxa.products.page`: smaller thumbnails,
then fewer tiles, so the page stays below :func:`~landtaxa.products.page.page_bytes`); the kind
over time is shown for every tile, and the tiles with images can be marked on the map. The HTML,
CSS and script live in ``viewer_template.html`` beside this module.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from landtaxa.inputs.grid import Grid, tile_areas_km2
from landtaxa.params import ViewerParams
from landtaxa.products.analysis import subsample
from landtaxa.products.figures import tile_images
from landtaxa.products.page import ATLAS_MAX_WIDTH, MAX_THUMB, thumb_layout
from landtaxa.products.rasters import NODATA, label_image
from landtaxa.products.styles import colour_hex
from landtaxa.products.taxonomy import Taxonomy
from landtaxa.storage import atomic_path, get_logger, read_json


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bytes(rgb: np.ndarray) -> bytes:
    """A (H, W, 3) uint8 image as PNG bytes (8-bit RGB, every row "Sub"-filtered, zlib level 9).

    Written here with numpy and zlib so the viewer needs no imaging library; the Sub filter
    (each byte minus the same channel of the pixel to its left) lets zlib pack smooth images well.
    """
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    rows = rgb.reshape(h, w * 3)
    sub = rows.copy()
    sub[:, 3:] = rows[:, 3:] - rows[:, :-3]  # uint8 arithmetic wraps modulo 256, as PNG wants
    scanlines = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1)  # filter type 1 (Sub) per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB), no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
            + chunk(b"IEND", b""))


def stretch_thumbnails(images: np.ndarray, gain: float = 2.5, gamma: float = 0.8) -> np.ndarray:
    """(n, T, s, s, 3) images in [0, 1] (NaN = no data) -> uint8, one common stretch for all.

    Per channel, 0 to ``gain`` times the median of every valid pixel of every image maps to the
    full range (brighter pixels saturate), then a mild ``gamma``: the grid's scaling leaves most
    land dark, and a median-based stretch is not thrown off by a few bright roofs, clouds or snow,
    as a min-max or high-percentile stretch is. One stretch for all images keeps dates and tiles
    comparable (the analysis figures use the same rule). Pixels without data become mid grey.
    """
    images = np.asarray(images, np.float32)
    flat = images.reshape(-1, images.shape[-1])
    finite = np.isfinite(flat).all(axis=1)
    if not finite.any():
        return np.full(images.shape, 128, np.uint8)
    hi = np.minimum(gain * np.median(flat[finite], axis=0), 1.0)
    out = images / np.maximum(hi, 1e-6)  # one float copy, then worked in place (the images may be 100s of MB)
    np.clip(out, 0, 1, out=out)
    np.power(out, gamma, out=out)
    out[~np.isfinite(out)] = 0.5
    out *= 255
    return np.round(out, out=out).astype(np.uint8)


def thumbnail_atlas(images: np.ndarray, thumb_px: int = MAX_THUMB) -> tuple[bytes, dict]:
    """Pack (n, T, s, s, 3) tile images into one PNG: slot ``i * T + t`` holds tile i on date t.

    Tiles larger than ``thumb_px`` are resampled (nearest pixel) to ``thumb_px``. Slots run left to
    right, ``per_row`` to a row, at most ``ATLAS_MAX_WIDTH`` px wide. Returns the PNG bytes and the
    layout (``size``, ``per_row``, ``width``, ``height``).
    """
    n, n_t, s = images.shape[:3]
    p = min(s, thumb_px)
    idx = np.floor((np.arange(p) + 0.5) * s / p).astype(np.int64)
    small = stretch_thumbnails(images[:, :, idx][:, :, :, idx])
    slots = n * n_t
    per_row = max(1, min(slots, ATLAS_MAX_WIDTH // p))
    rows = math.ceil(slots / per_row)
    atlas = np.full((rows * p, per_row * p, 3), 255, np.uint8)
    for i, img in enumerate(small.reshape(slots, p, p, 3)):
        y, x = divmod(i, per_row)
        atlas[y * p:(y + 1) * p, x * p:(x + 1) * p] = img
    return png_bytes(atlas), {"size": p, "per_row": per_row, "width": per_row * p, "height": rows * p}


def viewer_data(grid: Grid, tile_ids: np.ndarray, labels: np.ndarray, kind: np.ndarray, colours: np.ndarray,
                dates: Sequence[str], class_labels: Sequence[str], thumbnails: np.ndarray | None = None,
                thumb_tile_ids: np.ndarray | None = None, title: str = "landtaxa", subtitle: str | None = None,
                thumb_px: int = MAX_THUMB) -> dict:
    """The data the page shows, as a JSON-ready dict (see :func:`write_viewer` for the arguments)."""
    tile_ids = np.asarray(tile_ids, np.int64)
    kind = np.asarray(kind)
    n_t, k = len(dates), len(class_labels)
    if kind.shape != (len(tile_ids), n_t):
        raise ValueError(f"kind has shape {kind.shape}, expected ({len(tile_ids)}, {n_t}) for the tiles and dates")
    if len(labels) != len(tile_ids):
        raise ValueError(f"{len(labels)} cluster labels for {len(tile_ids)} tiles")
    if len(colours) != k:
        raise ValueError(f"{len(colours)} colours for {k} class names")
    if max(int(np.max(labels, initial=0)), int(np.max(kind, initial=0))) >= min(k, NODATA):
        raise ValueError(f"labels or kinds reach beyond the {k} classes")
    layers = [label_image(grid, tile_ids, labels)] + [label_image(grid, tile_ids, kind[:, t]) for t in range(n_t)]
    maps = np.stack(layers).astype(np.uint8)
    km2 = float(tile_areas_km2(grid, tile_ids).sum())
    data = {
        "title": title,
        "subtitle": subtitle if subtitle is not None else (
            f"{len(tile_ids):,} tiles ({km2:,.1f} km2) on a {grid.n_rows} x {grid.n_cols} grid, {k} clusters, "
            f"{n_t} dates"
            + (f" from {dates[0]} to {dates[-1]}" if n_t else "")),
        "footer": ("One square per tile. A cluster groups tiles by their whole series; a tile's kind on a date is the "
                   "cluster whose centroid it is nearest on that date (clusters that look alike then count as one). "
                   "Made by landtaxa; works offline."),
        "n_rows": grid.n_rows, "n_cols": grid.n_cols, "n_clustered": int(len(tile_ids)),
        "dates": [str(d) for d in dates], "labels": list(class_labels), "colours": colour_hex(colours),
        "maps": _b64(zlib.compress(maps.tobytes(), 9)),
        "max_width": 720, "max_height": 620, "max_scale": 64,
        "thumbs": None,
    }
    if thumbnails is not None:
        thumbnails = np.asarray(thumbnails)
        ids = np.asarray(thumb_tile_ids if thumb_tile_ids is not None else tile_ids[: len(thumbnails)], np.int64)
        if thumbnails.ndim != 5 or thumbnails.shape[:2] != (len(ids), n_t) or thumbnails.shape[-1] != 3:
            raise ValueError(f"thumbnails have shape {thumbnails.shape}, expected ({len(ids)}, {n_t}, s, s, 3)")
        if len(ids):
            png, layout = thumbnail_atlas(thumbnails, thumb_px)
            data["thumbs"] = {"atlas": "data:image/png;base64," + _b64(png), "tiles": ids.tolist(), **layout}
    return data


def _json_for_script(obj: dict) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` (so no ``</script>``), no line separators."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def write_viewer(out_html: str | os.PathLike, grid: Grid, tile_ids: np.ndarray, labels: np.ndarray,
                 kind: np.ndarray, colours: np.ndarray, dates: Sequence[str], class_labels: Sequence[str],
                 thumbnails: np.ndarray | None = None, thumb_tile_ids: np.ndarray | None = None,
                 title: str = "landtaxa: land taxonomy viewer", subtitle: str | None = None,
                 thumb_px: int = MAX_THUMB) -> Path:
    """Write the offline viewer page; return its path.

    ``tile_ids`` (N,) the clustered tiles, ``labels`` (N,) their clusters, ``kind`` (N, T) their kind
    on each of the ``dates``, ``colours`` (K, 3) in [0, 1] and ``class_labels`` (K,) as on the maps.
    ``thumbnails`` (n, T, s, s, 3) in [0, 1] (NaN = no data; e.g. from
    :func:`landtaxa.products.figures.tile_images`) are the images of the tiles ``thumb_tile_ids`` (n,) on every
    date, downsampled to at most ``thumb_px`` px; without them the page shows kinds only.
    """
    data = viewer_data(grid, tile_ids, labels, kind, colours, dates, class_labels, thumbnails, thumb_tile_ids,
                       title, subtitle, thumb_px)
    template = resources.files("landtaxa.products").joinpath("viewer_template.html").read_text(encoding="utf-8")
    fill = {"TITLE": html.escape(title), "DATA": _json_for_script(data)}
    page = re.sub(r"__(TITLE|DATA)__", lambda m: fill[m.group(1)], template)
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out_html)


def viewer_step(*, grid: str, clusters: list[str], kinds: list[str], representatives: list[str], aligned: list[str],
                model: list[str], out: str, metrics: str | None = None, params: ViewerParams) -> None:
    """``results/viewer/index.html``: the map of the run's main model with its kinds by date, legend and tiles' images.

    ``model`` lists the models the run may recommend, with their ``clusters``, ``kinds`` and ``representatives``
    in the same order; the page shows the one ``metrics`` (metrics.json) names as ``main`` (the first without).
    Images are shown for the representatives of every cluster and up to ``analysis.viewer_tiles``
    more tiles drawn with the seed (read from the aligned dates, each shrunk as it is read), within the
    page's thumbnail budget (:func:`landtaxa.products.page.thumb_layout`: the representatives first);
    every tile shows its kinds.
    """
    import pandas as pd

    main = read_json(metrics).get("main", {}).get("model", model[0]) if metrics else model[0]
    if main not in model:
        raise ValueError(f"{metrics}: main model {main!r} is none of the viewer's models {', '.join(model)}")
    i = model.index(main)
    model, clusters, kinds, representatives = main, clusters[i], kinds[i], representatives[i]
    t = Taxonomy.load(grid=grid, clusters=clusters, kinds=kinds)
    g, tile_ids, dates = t.grid, t.tile_ids, t.dates
    if len(aligned) != len(dates):
        raise ValueError(f"{len(aligned)} aligned images for the {len(dates)} dates of {kinds}")
    shown = pd.read_csv(representatives)["tile_id"].to_numpy()
    if params.viewer_tiles:
        shown = np.concatenate([shown, tile_ids[subsample(len(tile_ids), params.viewer_tiles, params.seed)]])
    shown = pd.unique(shown)  # the representatives first
    side, kept = thumb_layout(len(shown), len(dates), g.tile_size)
    shown = np.sort(shown[:kept])
    rgb = params.rgb_bands if params.rgb_bands and g.n_bands >= 3 and max(params.rgb_bands) <= g.n_bands else None
    write_viewer(out, g, tile_ids, t.labels, t.kind, t.colours, dates, t.names,
                 thumbnails=tile_images(g, aligned, shown, rgb, size=side), thumb_tile_ids=shown,
                 title=f"landtaxa: {t.title(model)}", thumb_px=side)
    get_logger().info("viewer: %d tiles, images of %d on %d dates at %d px; %.1f MB", len(tile_ids), len(shown),
                      len(dates), side, os.path.getsize(out) / 2**20)
