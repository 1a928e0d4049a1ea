"""The map steps: the taxonomy of one model and K as a styled COG with its picture and legend, the
coverage map (how many dates each tile holds valid data) and the consensus's confidence map (how many
members agree with it on each tile)."""

from __future__ import annotations

from landtaxa.inputs.grid import Grid
from landtaxa.params import CoverageParams
from landtaxa.products import figures
from landtaxa.products.rasters import write_cluster_map, write_confidence_map, write_coverage_map
from landtaxa.products.styles import write_map_styles
from landtaxa.products.taxonomy import Taxonomy
from landtaxa.storage import get_logger, load_npz

log = get_logger()


def map_step(*, grid: str, clusters: str, kinds: str, model: str, tif: str, png: str, legend: str) -> None:
    """The cluster map of one model and K: COG with colour table, the class names (GDAL's ``.aux.xml``)
    and a QGIS style (``.qml``) beside it, its picture and its legend. ``kinds`` is the evolution's
    table of every tile's kind on every date (the names say on which dates a cluster changes)."""
    t = Taxonomy.load(grid=grid, clusters=clusters, kinds=kinds)
    img = write_cluster_map(t.grid, t.tile_ids, t.labels, t.colours, tif)
    write_map_styles(tif, t.colours, t.names)
    figures.plot_cluster_map(img, t.colours, f"landtaxa taxonomy: {t.title(model)}", png)
    figures.plot_legend(t.colours, t.names, t.title(model), legend)


def coverage_step(*, grid: str, valid: list[str], out: str, params: CoverageParams) -> None:
    """Per tile, on how many dates it holds enough valid pixels."""
    g = Grid.load(grid)
    counts = write_coverage_map(g, [load_npz(p)["fraction"] for p in valid], params.min_valid, out)
    log.info("coverage: %d of %d tiles valid on at least one date; %d valid on every date",
             int((counts > 0).sum()), counts.size, int((counts == len(valid)).sum()))


def confidence_step(*, grid: str, confidence: str, out: str) -> None:
    """Per tile, the share of the members that put it in its consensus cluster (%, a COG beside the maps)."""
    c = load_npz(confidence)
    write_confidence_map(Grid.load(grid), c["tile_ids"], c["confidence"], out)
    log.info("confidence: mean %.3f; %d of %d tiles where every member agrees", float(c["confidence"].mean()),
             int((c["confidence"] >= 1).sum()), len(c["tile_ids"]))
