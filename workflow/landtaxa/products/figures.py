"""The analysis figures (PNG, matplotlib's Agg backend) and the tile images they show.

Cluster colours are always the map's (:func:`landtaxa.products.rasters.pca_colours`), so a cluster has
one colour in the map, the legend, the graph, the projections and the evolution maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from landtaxa.inputs.grid import Grid  # noqa: E402
from landtaxa.products.rasters import NODATA  # noqa: E402
from landtaxa.storage import atomic_path  # noqa: E402


def _save(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)


def tile_images(grid: Grid, aligned: Sequence[str | os.PathLike], tile_ids: Sequence[int],
                rgb_bands: Sequence[int] | None, size: int | None = None) -> np.ndarray:
    """(n, T, s, s, 3) images in [0, 1] of the tiles on every date.

    ``rgb_bands`` are 1-based positions in the grid's bands shown as red, green, blue (true
    colour); with None, or fewer than 3 bands, the first band is shown on a colour ramp.
    Pixels without data are NaN (drawn mid grey). The scaling is the grid's (the encoder's input).
    ``size`` shrinks each tile to that side (nearest pixel) as it is read: the array is then that size.
    """
    ts = grid.tile_size
    s = min(size or ts, ts)
    idx = np.floor((np.arange(s) + 0.5) * ts / s).astype(np.int64)
    out = np.full((len(tile_ids), len(aligned), s, s, 3), np.nan, np.float32)
    ramp = matplotlib.colormaps["viridis"]
    single = rgb_bands is None or grid.n_bands < 3
    for t, path in enumerate(aligned):
        with rasterio.open(path) as src:
            for i, tid in enumerate(tile_ids):
                win = grid.tile_window(int(tid))
                data = grid.scale(src.read(window=win)[:, idx][:, :, idx])
                ok = (src.read_masks(1, window=win) > 0)[idx][:, idx]
                if single:
                    rgb = ramp(data[0])[..., :3]
                else:
                    rgb = np.moveaxis(data[[b - 1 for b in rgb_bands]], 0, -1)
                out[i, t][ok] = rgb[ok]
    return out


def _brighten(images: np.ndarray) -> np.ndarray:
    """One common stretch for every image of a figure, so dates and tiles compare fairly: per channel,
    0 to 2.5 times its median (robust to bright snow or roofs filling part of the figure, which
    saturate), then a mild gamma. Pixels without data (NaN) become mid grey."""
    flat = images.reshape(-1, images.shape[-1])
    if np.isnan(flat).all():
        return np.full_like(images, 0.5)
    hi = np.minimum(2.5 * np.nanmedian(flat, axis=0), 1.0)
    out = np.clip(images / np.maximum(hi, 1e-6), 0, 1) ** 0.8
    return np.where(np.isnan(out), 0.5, out)


def label_rgba(img: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A label image (NODATA where no tile) as RGBA in [0, 1], clusters in their map colours."""
    rgba = np.zeros((*img.shape, 4))
    has = img != NODATA
    rgba[has, :3] = colours[img[has]]
    rgba[has, 3] = 1.0
    return rgba


def plot_cluster_map(
    img: np.ndarray, colours: np.ndarray, title: str, out_png: str | os.PathLike
) -> None:
    """A PNG of the map with a legend of cluster numbers and sizes."""
    k = len(colours)
    sizes = np.bincount(img[img != NODATA], minlength=k)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(label_rgba(img, colours), interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("tile column")
    ax.set_ylabel("tile row")
    handles = [Patch(color=colours[i], label=f"{i}: {sizes[i]} tiles") for i in range(k)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def plot_legend(colours: np.ndarray, names: Sequence[str], title: str, out_png: str | os.PathLike) -> None:
    """The map's colour table as a legend: one swatch per cluster with its name (size, area, changes)."""
    k = len(colours)
    width = 2.0 + 0.065 * max(len(n) for n in names)
    fig, ax = plt.subplots(figsize=(width, 0.24 * k + 0.5))
    handles = [Patch(facecolor=colours[i], edgecolor="k", label=names[i]) for i in range(k)]
    ax.legend(handles=handles, loc="center", frameon=False, title=title, fontsize=9, title_fontsize=9)
    ax.axis("off")
    _save(fig, out_png)


def plot_rgb_map(rgb: np.ndarray, title: str, out_png: str | os.PathLike) -> None:
    """A (rows, cols, 4) RGBA map."""
    fig, ax = plt.subplots(figsize=(6, 5.6))
    ax.imshow(rgb, interpolation="nearest")
    ax.set(title=title, xlabel="tile column", ylabel="tile row")
    fig.tight_layout()
    _save(fig, out_png)


def _mosaic(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """(rows, cols, s, s, 3) images -> one (rows*(s+gap), cols*(s+gap), 3) white-separated picture."""
    rows, cols, s = images.shape[:3]
    out = np.ones((rows * (s + gap) - gap, cols * (s + gap) - gap, 3), np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (s + gap): r * (s + gap) + s, c * (s + gap): c * (s + gap) + s] = images[r, c]
    return out


def _image_grid(images: np.ndarray, row_labels: list[str], row_colours: list | None, dates: Sequence[str],
                title: str, out_png: str | os.PathLike) -> None:
    """Tiles (rows) by dates (columns) drawn as one picture, with row labels and, left of each row,
    an optional colour swatch (the cluster's map colour)."""
    images = _brighten(images)
    rows, cols, s = images.shape[:3]
    step = s + 2
    picture = _mosaic(images)
    x0 = 0
    if row_colours is not None:
        x0 = s // 2 + 3
        stripe = np.ones((picture.shape[0], x0, 3), np.float32)
        for r, colour in enumerate(row_colours):
            stripe[r * step: r * step + s, : s // 2] = colour
        picture = np.concatenate([stripe, picture], axis=1)
    cell = 0.8  # inches per tile
    width = cell * picture.shape[1] / step
    fig_w, fig_h = width + 1.7, cell * rows + 0.8
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((1.6 / fig_w, 0.1 / fig_h, width / fig_w, cell * rows / fig_h))
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([x0 + c * step + s / 2 for c in range(cols)], dates, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([r * step + s / 2 for r in range(rows)], row_labels, fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.text(0.5, 1 - 0.12 / fig_h, title, fontsize=10, ha="center", va="top")
    _save(fig, out_png)


def plot_representatives(images: np.ndarray, reps: list[np.ndarray], tile_ids: np.ndarray, colours: np.ndarray,
                         dates: Sequence[str], title: str, out_png: str | os.PathLike) -> None:
    """One row per representative tile (grouped by cluster, colour swatch = map colour), one column per date."""
    labels, swatches = [], []
    for k, idx in enumerate(reps):
        labels += [f"c{k} tile {tile_ids[i]}" for i in idx]
        swatches += [colours[k]] * len(idx)
    _image_grid(images, labels, swatches, dates, title, out_png)


def plot_interpolation(images: np.ndarray, weights: Sequence[float], tiles: np.ndarray, labels: np.ndarray,
                       distances: np.ndarray, dates: Sequence[str], title: str, out_png: str | os.PathLike) -> None:
    """One row per weight w: the real sequence closest to (1 - w) a + w b, date by date."""
    rows = [f"w={w:g}: tile {t} (c{c}), d={d:.3g}" for w, t, c, d in zip(weights, tiles, labels, distances,
                                                                        strict=True)]
    _image_grid(images, rows, None, dates, title, out_png)


def plot_graph(xy: np.ndarray, sizes: np.ndarray, colours: np.ndarray, edges: list[tuple[int, int, float]],
               title: str, out_png: str | os.PathLike) -> None:
    """The semantic graph: nodes at ``xy`` (a 2-D layout of the centroids), area ~ cluster size."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for i, j, w in edges:
        ax.plot(*xy[[i, j]].T, color="0.45", lw=1.5, zorder=1)
        ax.annotate(f"{w:.3g}", xy[[i, j]].mean(0), fontsize=7, color="0.2", ha="center", va="center",
                    xytext=(0, 7), textcoords="offset points", zorder=2,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.3})
    area = np.maximum(1500 * sizes / sizes.max(), 50)
    ax.scatter(*xy.T, s=area, c=colours, edgecolors="k", zorder=3)
    for k, (x, y) in enumerate(xy):
        ax.annotate(f"c{k} ({sizes[k]})", (x, y), xytext=(0.6 * np.sqrt(area[k]) + 2, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=8, zorder=4,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 0.5})
    ax.margins(0.2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("layout: MDS of sqrt(centroid distance); edge labels: distance", fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def plot_projections(proj: dict[str, np.ndarray], labels: np.ndarray, colours: np.ndarray, title: str,
                     out_png: str | os.PathLike) -> None:
    """t-SNE and MDS side by side, points coloured by cluster."""
    fig, axes = plt.subplots(1, len(proj), figsize=(5.2 * len(proj), 5.0), squeeze=False)
    for ax, (name, xy) in zip(axes[0], proj.items(), strict=True):
        ax.scatter(*xy.T, s=7, c=colours[labels], linewidths=0)
        ax.set_title({"tsne": "t-SNE", "mds": "MDS"}.get(name, name), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    k = len(colours)
    handles = [Patch(color=colours[i], label=f"c{i}") for i in range(k)]
    axes[0, -1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def plot_stability(ari: np.ndarray, jaccard: np.ndarray, colours: np.ndarray, seeds: Sequence[int], title: str,
                   out_png: str | os.PathLike) -> None:
    """Pairwise ARI between runs, and per-cluster Jaccard reproducibility."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.2]})
    names = ["main"] + [f"seed {s}" for s in seeds]
    im = a1.imshow(ari, vmin=0, vmax=1, cmap="viridis")
    a1.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    a1.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            a1.text(j, i, f"{ari[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="k" if ari[i, j] > 0.6 else "w")
    a1.set_title("ARI between K-means runs", fontsize=9)
    fig.colorbar(im, ax=a1, fraction=0.046)
    k = len(jaccard)
    a2.bar(range(k), jaccard, color=colours, edgecolor="k")
    a2.axhline(0.5, color="0.4", ls="--", lw=1)
    a2.set(ylim=(0, 1.02), xlabel="cluster", ylabel="mean best Jaccard over re-runs")
    a2.set_xticks(range(k), [f"c{i}" for i in range(k)])
    a2.set_title("how reproducible each cluster is", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def plot_k_choice(table: list[dict], best: int, title: str, out_png: str | os.PathLike) -> None:
    """Inertia (elbow), silhouettes, Calinski-Harabasz and ARI/NMI against K."""
    ks = [r["k"] for r in table]
    panels = [("inertia", "inertia (elbow)"), ("silhouette", "silhouette, embedding space"),
              ("geo_silhouette", "silhouette, geographic space"),
              ("calinski_harabasz", "Calinski-Harabasz, geographic")]
    if all("ari" in r for r in table):
        panels.append(("ari", "ARI / NMI against the truth"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.2))
    for ax, (key, name) in zip(axes, panels, strict=True):
        ax.plot(ks, [r[key] for r in table], "o-", label=key)
        if key == "ari":
            ax.plot(ks, [r["nmi"] for r in table], "s--", label="nmi")
            ax.legend(fontsize=7)
        ax.axvline(best, color="C3", ls=":", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: the silhouette prefers K={best} (dotted)", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def plot_evolution(maps: np.ndarray, change: np.ndarray, colours: np.ndarray, dates: Sequence[str], title: str,
                   out_png: str | os.PathLike, counts: Sequence[tuple[int, int]] | None = None) -> None:
    """Top row: the kind of every tile on each date. Bottom row: tiles whose kind changed since the
    date before (orange), and those among them whose change lasts (dark red). ``change`` is the
    change map's bands: first lasting-change date index, then one 0/1 band per pair of dates.
    ``counts`` (changed, lasting) per date, when the maps show only every few tiles (default: counted on them)."""
    n_t = len(dates)
    fig, axes = plt.subplots(2, n_t, figsize=(1.9 * n_t, 4.5), squeeze=False)
    for t in range(n_t):
        axes[0, t].imshow(label_rgba(maps[t], colours), interpolation="nearest")
        axes[0, t].set_title(dates[t], fontsize=8)
        if t == 0:
            axes[1, t].set_visible(False)
            continue
        grey = np.where(maps[t] == NODATA, 1.0, 0.85)
        rgb = np.repeat(grey[..., None], 3, -1)
        any_change, lasting = change[t] == 1, change[0] == t
        rgb[any_change] = (1.0, 0.6, 0.1)
        rgb[lasting] = (0.6, 0.0, 0.0)
        axes[1, t].imshow(rgb, interpolation="nearest")
        changed, lasts = counts[t] if counts is not None else (int(any_change.sum()), int(lasting.sum()))
        axes[1, t].set_title(f"changed {changed}, lasting {lasts}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("kind", fontsize=9)
    if n_t > 1:
        axes[1, 1].set_ylabel("change since the date before", fontsize=7)
    k = len(colours)
    handles = [Patch(color=colours[i], label=f"c{i}") for i in range(k)]
    handles += [Patch(color=(1.0, 0.6, 0.1), label="changed"), Patch(color=(0.6, 0, 0), label="lasting change")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 12), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, out_png)


def plot_transitions(trans: np.ndarray, colours: np.ndarray, dates: Sequence[str], title: str,
                     out_png: str | os.PathLike) -> None:
    """One heat map per pair of consecutive dates: tiles of kind a (row) then kind b (column)."""
    n = len(trans)
    if n == 0:  # a single date: nothing to move between
        fig, ax = plt.subplots(figsize=(5, 1.6))
        ax.text(0.5, 0.5, f"one date ({dates[0]}): no transitions between dates", ha="center", va="center")
        ax.axis("off")
        fig.suptitle(title, fontsize=9)
        _save(fig, out_png)
        return
    k = trans.shape[1]
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
    for p, ax in enumerate(axes.ravel()):
        if p >= n:
            ax.set_visible(False)
            continue
        m = trans[p]
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, vmin=0, vmax=1, cmap="Greys")
        for a in range(k):
            for b in range(k):
                if m[a, b]:
                    ax.text(b, a, str(m[a, b]), ha="center", va="center", fontsize=6,
                            color="w" if share[a, b] > 0.5 else "k")
        ax.set_xticks(range(k), [f"c{i}" for i in range(k)], fontsize=6)
        ax.set_yticks(range(k), [f"c{i}" for i in range(k)], fontsize=6)
        for i, lab in enumerate(ax.get_xticklabels()):
            lab.set_color(colours[i] * 0.8)
        ax.set_title(f"{dates[p]} -> {dates[p + 1]}", fontsize=8)
    fig.suptitle(f"{title} (row: kind before, column: kind after; shade = share of the row)", fontsize=9)
    fig.tight_layout()
    _save(fig, out_png)
