"""One clustering as the product steps read it: :class:`Taxonomy`, loaded once by :meth:`Taxonomy.load`.

Every product of a clustering (the map, the viewer, the kinds table, the analysis figures) shows its
clusters in the same colours (:func:`landtaxa.products.rasters.pca_colours` of the centroids) and under
the same names (:func:`landtaxa.products.evolution.class_names`, from the evolution's kinds): the steps
load those here, so a cluster looks and reads the same in every file. The evolution step itself, which
writes the kinds, sits below this module and loads its inputs on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landtaxa.clustering.series import Series
from landtaxa.inputs.grid import Grid
from landtaxa.products.evolution import class_names, read_kinds
from landtaxa.products.rasters import pca_colours
from landtaxa.storage import load_npz


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """One clustering and what its products share.

    ``tile_ids`` (N,), ``labels`` (N,) and ``centroids`` (K, T, D) come from the clusters file, ``colours``
    (K, 3) in [0, 1] from the centroids. The rest is there when :meth:`load` was given its file: ``grid``,
    ``series`` (opened, not read: its index, tiles, dates and valid dates), ``kind`` (N, T) (every tile's
    kind on every date, from the evolution's table) and ``names`` (K,) (the class names, which need the
    kinds and the grid). ``dates`` are the kinds' dates, else the series' (as text), else None.
    """

    tile_ids: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    colours: np.ndarray
    grid: Grid | None = None
    series: Series | None = None
    kind: np.ndarray | None = None
    dates: list[str] | None = None
    names: list[str] | None = None

    @property
    def k(self) -> int:
        """The number of clusters."""
        return len(self.centroids)

    def title(self, model: str) -> str:
        """``"<model> model, K=<k>"``, as the products' titles name the clustering."""
        return f"{model} model, K={self.k}"

    @classmethod
    def load(cls, *, clusters: str, grid: str | None = None, series: str | None = None,
             kinds: str | None = None) -> Taxonomy:
        """The clustering in ``clusters`` (npz: tile_ids, labels, centroids) with its colours, and what is given of
        the ``grid`` (JSON), the ``series`` (its index; it must hold the clustering's tiles, in the same order)
        and the evolution's ``kinds`` table (Parquet; with them the class names, which need the grid too)."""
        if kinds is not None and grid is None:
            raise ValueError(f"Taxonomy.load: the class names of {kinds} need the grid (they count km2)")
        c = load_npz(clusters)
        tile_ids, labels, centroids = c["tile_ids"], c["labels"], c["centroids"]
        g = Grid.load(grid) if grid is not None else None
        s = Series(series) if series is not None else None
        if s is not None and not np.array_equal(tile_ids, s.tile_ids):
            raise ValueError(f"{clusters} and {series} hold different tiles")
        kind = names = None
        dates = [str(d) for d in s.dates] if s is not None else None
        if kinds is not None:
            kind, dates = read_kinds(kinds, tile_ids)
            names = class_names(g, tile_ids, labels, len(centroids), kind, dates)
        return cls(tile_ids=tile_ids, labels=labels, centroids=centroids, colours=pca_colours(centroids), grid=g,
                   series=s, kind=kind, dates=dates, names=names)
