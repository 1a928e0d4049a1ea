"""Command-line entry points, one per workflow step: ``python -m landtaxa <step> ...``.

Each step reads and writes explicit files, so the Snakemake rules stay thin and every
step can also be run by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from landtaxa.storage import get_logger

log = get_logger()


def _floats(text: str | None) -> list[float] | None:
    if text in (None, "", "None", "null"):
        return None
    return [float(v) for v in str(text).split(",")]


def _float_or_none(text: str | None) -> float | None:
    values = _floats(text)
    return None if values is None else values[0]


def _setup_torch(args: argparse.Namespace):
    import torch

    from landtaxa.encoder import pick_device

    torch.set_num_threads(max(1, int(args.threads)))
    torch.backends.cudnn.deterministic = True  # repeatable convolutions on a GPU (see README)
    torch.backends.cudnn.benchmark = False
    device = pick_device(args.device)
    log.info("device: %s (torch %s, %d CPU threads)", device, torch.__version__, torch.get_num_threads())
    return device


def cmd_grid(args: argparse.Namespace) -> None:
    from landtaxa.grid import build_grid

    grid = build_grid(
        args.images,
        tile_size=args.tile_size,
        bands=[int(b) for b in args.bands.split(",")] if args.bands else None,
        crs=args.crs or None,
        resolution=args.resolution or None,
        scale_min=_floats(args.scale_min),
        scale_max=_floats(args.scale_max),
        percentiles=tuple(_floats(args.percentiles)),
        nodata=_float_or_none(args.nodata),
        scale_paths=args.scale_images or None,
    )
    grid.save(args.out)
    log.info(
        "grid: %d x %d px at %.2f, %d x %d tiles of %d px (%.0f units); scaling %s..%s",
        grid.width, grid.height, grid.resolution, grid.n_rows, grid.n_cols, grid.tile_size,
        grid.tile_metres, grid.scale_min, grid.scale_max,
    )


def cmd_align(args: argparse.Namespace) -> None:
    from landtaxa.align import align_date
    from landtaxa.grid import Grid

    grid = Grid.load(args.grid)
    masks = [None if m in ("-", "") else m for m in args.masks] if args.masks else None
    fr = align_date(
        grid, args.images, args.out, args.valid, block_rows=args.block_rows, resampling=args.resampling,
        masks=masks, mask_band=args.mask_band or None, invalid_values=_floats(args.invalid) or (),
        nodata=_float_or_none(args.nodata), keep_empty=args.empty_dates == "keep",
    )
    log.info("aligned %d granule(s); %d of %d tiles hold data", len(args.images),
             int((fr > 0).sum()), fr.size)


def _fractions(paths: list[str]) -> list[np.ndarray]:
    from landtaxa.storage import load_npz

    return [load_npz(p)["fraction"] for p in paths]


def _train_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", required=True)
    p.add_argument("--aligned", nargs="+", required=True)
    p.add_argument("--valid", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--triplets", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--betas", default="0.5,0.999")
    p.add_argument("--margin", type=float, required=True)
    p.add_argument("--l2", type=float, required=True)
    p.add_argument("--min-valid", type=float, default=0.5)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--cache-mb", type=float, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")


def _fit_and_save(args, model, triplets, grid, meta, device) -> None:
    from landtaxa.encoder import save_checkpoint
    from landtaxa.train import extract_triplet_tiles, scratch_dir_for, train_triplets

    tiles = extract_triplet_tiles(grid, args.aligned, triplets, scratch_dir_for(args.out), args.cache_mb)
    t0 = time.perf_counter()
    history = train_triplets(
        model, tiles, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        betas=tuple(_floats(args.betas)), margin=args.margin, l2=args.l2, seed=args.seed,
        device=device, augmentation=not args.no_augment,
    )
    meta.update({"loss_history": history, "train_seconds": time.perf_counter() - t0,
                 "n_triplets": int(len(triplets))})
    save_checkpoint(args.out, model, meta)
    log.info("saved %s", args.out)


def cmd_train(args: argparse.Namespace) -> None:
    from landtaxa.encoder import build_encoder
    from landtaxa.grid import Grid
    from landtaxa.triplets import geographic_triplets

    device = _setup_torch(args)
    grid = Grid.load(args.grid)
    rng = np.random.default_rng(args.seed)
    radius = args.radius if args.radius else grid.tile_size
    triplets = geographic_triplets(grid, _fractions(args.valid), args.triplets, radius, args.min_valid, rng)
    import torch

    torch.manual_seed(args.seed)
    model = build_encoder(args.encoder, grid.n_bands, args.z_dim)
    meta = {"encoder": args.encoder, "in_channels": grid.n_bands, "z_dim": args.z_dim,
            "tile_size": grid.tile_size, "kind": "geographic", "seed": args.seed}
    _fit_and_save(args, model, triplets, grid, meta, device)


def cmd_refine(args: argparse.Namespace) -> None:
    from landtaxa.encoder import load_checkpoint
    from landtaxa.grid import Grid
    from landtaxa.storage import load_npz
    from landtaxa.triplets import cluster_triplets

    device = _setup_torch(args)
    grid = Grid.load(args.grid)
    model, meta = load_checkpoint(args.parent, device)
    clusters = load_npz(args.clusters)
    rng = np.random.default_rng(args.seed)
    triplets = cluster_triplets(grid, clusters["tile_ids"], clusters["labels"], _fractions(args.valid),
                                args.triplets, args.min_valid, rng)
    log.info("sampled %d cluster-guided triplets over %d dates", len(triplets), len(args.valid))
    meta = {**{k: meta[k] for k in ("encoder", "in_channels", "z_dim", "tile_size")},
            "kind": "refined", "parent": os.path.basename(args.parent), "seed": args.seed}
    _fit_and_save(args, model, triplets, grid, meta, device)


def cmd_embed(args: argparse.Namespace) -> None:
    from landtaxa.embed import embed_date
    from landtaxa.encoder import load_checkpoint
    from landtaxa.grid import Grid
    from landtaxa.storage import load_npz

    device = _setup_torch(args)
    grid = Grid.load(args.grid)
    model, _ = load_checkpoint(args.model, device)
    embed_date(model, grid, args.aligned, load_npz(args.valid)["fraction"], args.out,
               min_valid=args.min_valid, batch_size=args.batch_size, device=device,
               block_rows=args.block_rows, compile_model=args.compile)


def cmd_series(args: argparse.Namespace) -> None:
    from landtaxa.series import assemble_series

    assemble_series(args.embeddings, args.dates, args.out, max_missing=args.max_missing)


def cmd_truth(args: argparse.Namespace) -> None:
    from landtaxa.grid import Grid
    from landtaxa.metrics import truth_tiles
    from landtaxa.storage import save_npz

    classes = truth_tiles(Grid.load(args.grid), args.truth)
    save_npz(args.out, classes=classes)
    log.info("truth: %d tiles with a reference class, %d classes",
             int((classes >= 0).sum()), len(np.unique(classes[classes >= 0])))


def cmd_clusters(args: argparse.Namespace) -> None:
    from landtaxa.clusters import kmeans_series
    from landtaxa.grid import Grid
    from landtaxa.metrics import taxonomy_metrics
    from landtaxa.storage import load_npz, save_npz, write_json

    grid = Grid.load(args.grid)
    s = load_npz(args.series)
    if args.k > len(s["series"]):  # valid tiles are known only now; stop before fitting
        raise ValueError(
            f"{args.series}: n_clusters asks for K={args.k} clusters but the series holds only "
            f"{len(s['series'])} valid tiles; lower n_clusters (config key) to at most {len(s['series'])}"
        )
    t0 = time.perf_counter()
    result = kmeans_series(s["series"], args.k, seed=args.seed, n_init=args.n_init, max_iter=args.max_iter,
                           method=args.method, batch_size=args.batch_size, gamma=args.gamma,
                           max_dtw_tiles=args.max_dtw_tiles)
    log.info("K-means (%s), K=%d: inertia %.4g after %d iterations, %.1f s", args.method, args.k, result.inertia,
             result.n_iter, time.perf_counter() - t0)
    truth = load_npz(args.truth)["classes"] if args.truth else None
    metrics = taxonomy_metrics(grid, s["series"], s["tile_ids"], result.labels, result.inertia,
                               truth=truth, seed=args.seed)
    metrics["model"] = args.model
    metrics["dates"] = s["dates"].tolist()
    save_npz(args.out, labels=result.labels, centroids=result.centroids, tile_ids=s["tile_ids"],
             dates=s["dates"])
    write_json(args.metrics, metrics)
    log.info("metrics: %s", {k: v for k, v in metrics.items() if k not in ("dates", "cluster_sizes")})


def cmd_map(args: argparse.Namespace) -> None:
    from landtaxa.grid import Grid
    from landtaxa.maps import pca_colours, plot_cluster_map, write_cluster_map
    from landtaxa.storage import load_npz

    grid = Grid.load(args.grid)
    c = load_npz(args.clusters)
    colours = pca_colours(c["centroids"])
    img = write_cluster_map(grid, c["tile_ids"], c["labels"], colours, args.out_tif)
    plot_cluster_map(img, colours, args.title, args.out_png)


def cmd_coverage(args: argparse.Namespace) -> None:
    from landtaxa.grid import Grid
    from landtaxa.maps import write_coverage_map

    grid = Grid.load(args.grid)
    counts = write_coverage_map(grid, _fractions(args.valid), args.min_valid, args.out)
    log.info("coverage: %d of %d tiles valid on at least one date; %d valid on every date",
             int((counts > 0).sum()), counts.size, int((counts == len(args.valid)).sum()))


def cmd_metrics(args: argparse.Namespace) -> None:
    from landtaxa.storage import read_json, write_json

    out = {}
    for model, path in zip(args.models, args.inputs, strict=True):
        m = read_json(path)
        m.pop("model", None)
        out[model] = m
    write_json(args.out, out)


def _ints(text: str | None) -> list[int] | None:
    values = _floats(text)
    return None if values is None else [int(v) for v in values]


def cmd_analysis(args: argparse.Namespace) -> None:
    import pandas as pd

    from landtaxa import analysis as an
    from landtaxa import figures as fg
    from landtaxa.grid import Grid
    from landtaxa.maps import pca_colours, plot_cluster_map, write_cluster_map, write_rgb_map
    from landtaxa.storage import load_npz, write_json

    grid = Grid.load(args.grid)
    s, c = load_npz(args.series), load_npz(args.clusters)
    series, tile_ids, labels, cen = s["series"], c["tile_ids"], c["labels"], c["centroids"]
    dates = [str(d) for d in s["dates"]]
    if not np.array_equal(tile_ids, s["tile_ids"]):
        raise ValueError(f"{args.clusters} and {args.series} hold different tiles")
    if len(args.aligned) != len(dates):
        raise ValueError(f"{len(args.aligned)} aligned images for the series' {len(dates)} dates")
    k = len(cen)
    name = f"{args.model} model, K={k}"
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    colours = pca_colours(cen)
    sizes = np.bincount(labels, minlength=k)
    t0 = time.perf_counter()

    img = write_cluster_map(grid, tile_ids, labels, colours, f"{out}/clusters.tif")
    plot_cluster_map(img, colours, f"taxonomy: {name}", f"{out}/clusters.png")
    fg.plot_legend(colours, sizes, name, f"{out}/legend.png")
    rgb = an.series_pca_rgb(series, seed=args.seed)
    write_rgb_map(grid, tile_ids, rgb, f"{out}/series_pca.tif")
    rgba = np.zeros((grid.n_tiles, 4))
    rgba[tile_ids, :3], rgba[tile_ids, 3] = rgb, 1.0
    fg.plot_rgb_map(rgba.reshape(grid.n_rows, grid.n_cols, 4), f"PCA colours of every tile's series: {name}",
                    f"{out}/series_pca.png")
    log.info("maps written (%.1f s)", time.perf_counter() - t0)

    rgb_bands = _ints(args.rgb_bands)
    if rgb_bands and grid.n_bands < 3:
        log.info("%d band(s): tiles shown as the first band on a colour ramp", grid.n_bands)
        rgb_bands = None
    if rgb_bands and max(rgb_bands) > grid.n_bands:
        raise ValueError(f"analysis.rgb_bands {rgb_bands} asks for band {max(rgb_bands)} of {grid.n_bands}")
    reps = an.representatives(series, labels, cen, args.representatives)
    flat_reps = np.concatenate(reps)
    images = fg.tile_images(grid, args.aligned, tile_ids[flat_reps], rgb_bands)
    fg.plot_representatives(images, reps, tile_ids, colours, dates, f"representatives: {name}",
                            f"{out}/representatives.png")
    pd.DataFrame({"cluster": np.repeat(np.arange(k), [len(r) for r in reps]), "rank": np.concatenate(
        [np.arange(len(r)) for r in reps]), "tile_id": tile_ids[flat_reps]}).to_csv(
        f"{out}/representatives.csv", index=False)
    log.info("representatives: %d tiles read on %d dates (%.1f s)", len(flat_reps), len(dates),
             time.perf_counter() - t0)

    pair = _ints(args.interpolate) or [0, 1]
    if len(pair) != 2 or max(pair) >= k or min(pair) < 0 or pair[0] == pair[1]:
        raise ValueError(f"analysis.interpolate must name two different clusters of 0..{k - 1}, got {pair}")
    weights = [0.0, *args.weights, 1.0]
    idx, dist = an.closest(series, an.interpolate(cen, pair[0], pair[1], weights))
    images = fg.tile_images(grid, args.aligned, tile_ids[idx], rgb_bands)
    fg.plot_interpolation(images, weights, tile_ids[idx], labels[idx], dist, dates,
                          f"from cluster {pair[0]} (w=0) to cluster {pair[1]} (w=1): {name}",
                          f"{out}/interpolation.png")
    pd.DataFrame({"w": weights, "tile_id": tile_ids[idx], "cluster": labels[idx], "distance": dist}).to_csv(
        f"{out}/interpolation.csv", index=False)

    edges = an.minimum_spanning_tree(cen)
    an.write_graphml(f"{out}/graph.graphml", sizes, colours, edges)
    pd.DataFrame(edges, columns=["source", "target", "distance"]).to_csv(f"{out}/graph_edges.csv", index=False)
    xy = an.centroid_layout(cen, args.seed)
    fg.plot_graph(xy, sizes, colours, edges, f"semantic graph (MST of centroid distances): {name}",
                  f"{out}/graph.png")
    log.info("interpolation and graph done (%.1f s)", time.perf_counter() - t0)

    sub = an.subsample(len(series), args.projection_tiles, args.seed)
    proj = an.projections(series[sub], args.seed)
    fg.plot_projections(proj, labels[sub], colours, f"{len(sub)} of {len(series)} series: {name}",
                        f"{out}/projections.png")
    log.info("projections of %d series done (%.1f s)", len(sub), time.perf_counter() - t0)

    seeds = [args.seed + 1 + i for i in range(args.restarts)]
    st = an.stability(series, labels, k, seeds, n_init=args.n_init, max_iter=args.max_iter, method=args.method,
                      batch_size=args.batch_size, gamma=args.gamma, max_dtw_tiles=args.max_dtw_tiles)
    fg.plot_stability(st["ari"], st["jaccard"], colours, seeds, f"stability over {len(seeds)} re-runs: {name}",
                      f"{out}/stability.png")
    off = st["ari"][np.triu_indices(len(st["ari"]), 1)]
    write_json(f"{out}/stability.json", {
        "seeds": seeds, "ari": st["ari"].tolist(), "mean_ari": float(off.mean()) if len(off) else 1.0,
        "min_ari": float(off.min()) if len(off) else 1.0, "jaccard": st["jaccard"].tolist()})
    log.info("stability over %d re-runs: mean ARI %.3f (%.1f s)", len(seeds), off.mean() if len(off) else 1.0,
             time.perf_counter() - t0)


def cmd_evolution(args: argparse.Namespace) -> None:
    import pandas as pd

    from landtaxa import evolution as ev
    from landtaxa import figures as fg
    from landtaxa.grid import Grid
    from landtaxa.maps import NODATA, label_image, pca_colours, write_change_map, write_cluster_map
    from landtaxa.storage import atomic_path, load_npz, write_json

    grid = Grid.load(args.grid)
    s, c = load_npz(args.series), load_npz(args.clusters)
    series, tile_ids, labels, cen = s["series"], c["tile_ids"], c["labels"], c["centroids"]
    dates = [str(d) for d in s["dates"]]
    k, n_t = len(cen), len(dates)
    out = args.out_dir
    colours = pca_colours(cen)
    cluster, kind = ev.per_date_labels(series, cen, labels, args.merge_overlap)
    maps = np.stack([label_image(grid, tile_ids, kind[:, t]) for t in range(n_t)])
    for t, date in enumerate(dates):
        write_cluster_map(grid, tile_ids, kind[:, t], colours, f"{out}/{date}.tif")
    rows, cols = grid.tile_rowcol(tile_ids)
    table = pd.DataFrame({
        "tile_id": np.repeat(tile_ids, n_t), "row": np.repeat(rows, n_t), "col": np.repeat(cols, n_t),
        "date": np.tile(np.asarray(dates), len(tile_ids)), "cluster": np.repeat(labels, n_t),
        "nearest": cluster.reshape(-1), "kind": kind.reshape(-1)})
    with atomic_path(args.labels) as tmp:
        table.to_parquet(tmp, index=False)
    trans = ev.transitions(kind, k)
    long = [{"date_from": dates[t], "date_to": dates[t + 1], "kind_from": a, "kind_to": b, "tiles": int(trans[t, a, b])}
            for t in range(n_t - 1) for a in range(k) for b in range(k)]
    with atomic_path(f"{out}/transitions.csv") as tmp:
        pd.DataFrame(long).to_csv(tmp, index=False)
    changed, lasting = ev.changes(kind), ev.lasting_changes(kind)
    first = np.where(lasting.any(1), lasting.argmax(1) + 1, 0)  # index of the date the lasting kind starts
    change = np.full((n_t, grid.n_tiles), NODATA, np.uint8)
    change[0, tile_ids] = first
    change[1:, tile_ids] = changed.T
    names = [f"date index (0 = {dates[0]}) on which a lasting change is first seen; 0 = none"]
    names += [f"changed kind {dates[t]} -> {dates[t + 1]}" for t in range(n_t - 1)]
    write_change_map(grid, change.reshape(n_t, grid.n_rows, grid.n_cols), names, f"{out}/change.tif")
    name = f"{args.model} model, K={k}"
    fg.plot_evolution(maps, change.reshape(n_t, grid.n_rows, grid.n_cols), colours, dates,
                      f"kind of every tile on each date: {name}", f"{out}/evolution.png")
    fg.plot_transitions(trans, colours, dates, f"date-to-date transitions: {name}", f"{out}/transitions.png")
    summary = {"dates": dates, "merge_overlap": args.merge_overlap,
               "changed_tiles": changed.sum(0).tolist(), "lasting_changes": lasting.sum(0).tolist(),
               "tiles_ever_changed": int(changed.any(1).sum()),
               "n_tiles": int(len(tile_ids))}
    write_json(f"{out}/summary.json", summary)
    log.info("evolution: tiles changing kind per date pair %s (lasting: %s); %d of %d tiles change at least once",
             summary["changed_tiles"], summary["lasting_changes"], summary["tiles_ever_changed"], len(tile_ids))


def cmd_kchoice(args: argparse.Namespace) -> None:
    import pandas as pd

    from landtaxa.analysis import best_k
    from landtaxa.figures import plot_k_choice
    from landtaxa.storage import atomic_path, read_json

    keys = ["k", "inertia", "silhouette", "geo_silhouette", "calinski_harabasz", "ari", "nmi"]
    table = sorted(({key: m[key] for key in keys if key in m} for m in map(read_json, args.inputs)),
                   key=lambda r: r["k"])
    best = best_k(table)
    for row in table:
        row["silhouette_best"] = row["k"] == best
    with atomic_path(args.out_csv) as tmp:
        pd.DataFrame(table).to_csv(tmp, index=False)
    plot_k_choice(table, best, f"choice of K, {args.model} model", args.out_png)
    log.info("choice of K (%s): the silhouette prefers K=%d of %s", args.model, best, [r["k"] for r in table])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landtaxa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="generate the synthetic demo region (see `landtaxa demo --help`)",
                   add_help=False)

    p = sub.add_parser("grid", help="build the common grid over all granules")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--tile-size", type=int, required=True)
    p.add_argument("--bands", default="")
    p.add_argument("--crs", default="")
    p.add_argument("--resolution", type=float, default=0.0)
    p.add_argument("--scale-min", default=None)
    p.add_argument("--scale-max", default=None)
    p.add_argument("--percentiles", default="1,99")
    p.add_argument("--nodata", default=None, help="nodata value overriding the rasters' own")
    p.add_argument("--scale-images", nargs="*", default=None, help="images sampled for the scaling percentiles")
    p.add_argument("--out", required=True)

    p = sub.add_parser("align", help="mosaic one date's granules onto the grid")
    p.add_argument("--grid", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--block-rows", type=int, default=8)
    p.add_argument("--resampling", default="nearest")
    p.add_argument("--masks", nargs="*", default=None, help="a mask raster per image ('-' for none)")
    p.add_argument("--mask-band", type=int, default=0, help="band of each image holding pixel classes")
    p.add_argument("--invalid", default="", help="comma-separated mask values marking invalid pixels")
    p.add_argument("--nodata", default=None, help="nodata value overriding the rasters' own")
    p.add_argument("--empty-dates", choices=["error", "keep"], default="error",
                   help="a date without any valid pixel: stop with an error, or keep it (all tiles filled)")

    p = sub.add_parser("train", help="train the geographic encoder f^g (Tile2Vec)")
    _train_common(p)
    p.add_argument("--encoder", default="tilenet")
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--radius", type=float, default=0.0)

    p = sub.add_parser("refine", help="fine-tune an encoder on cluster-guided triplets")
    _train_common(p)
    p.add_argument("--parent", required=True)
    p.add_argument("--clusters", required=True)

    p = sub.add_parser("embed", help="embed every tile of one date")
    p.add_argument("--grid", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--aligned", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-valid", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=0, help="tiles per batch (0: 8 on CPU, 512 on CUDA)")
    p.add_argument("--block-rows", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="run the encoder through torch.compile")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("series", help="assemble the N x T x D series")
    p.add_argument("--embeddings", nargs="+", required=True)
    p.add_argument("--dates", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-missing", type=float, default=0.5)

    p = sub.add_parser("truth", help="reference classes per tile by majority vote")
    p.add_argument("--grid", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("clusters", help="time-series K-means and its metrics")
    p.add_argument("--grid", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--method", default="kmeans",
                   help="kmeans (exact Lloyd), minibatch (large N), dtw or softdtw (small N); see landtaxa.clusters")
    p.add_argument("--batch-size", type=int, default=4096, help="series per mini-batch (method minibatch)")
    p.add_argument("--gamma", type=float, default=1.0, help="soft-DTW smoothing (method softdtw)")
    p.add_argument("--max-dtw-tiles", type=int, default=5000, help="refuse dtw/softdtw above this many tiles")
    p.add_argument("--truth", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)

    p = sub.add_parser("map", help="cluster map as a GeoTIFF (COG) and a PNG")
    p.add_argument("--grid", required=True)
    p.add_argument("--clusters", required=True)
    p.add_argument("--title", default="taxonomy")
    p.add_argument("--out-tif", required=True)
    p.add_argument("--out-png", required=True)

    p = sub.add_parser("coverage", help="map of the number of valid dates per tile")
    p.add_argument("--grid", required=True)
    p.add_argument("--valid", nargs="+", required=True)
    p.add_argument("--min-valid", type=float, default=0.5)
    p.add_argument("--out", required=True)

    p = sub.add_parser("metrics", help="gather per-model metrics into one JSON")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("analysis", help="maps, representatives, interpolation, graph, projections, stability")
    p.add_argument("--grid", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--clusters", required=True)
    p.add_argument("--aligned", nargs="+", required=True, help="the aligned image of every date, in date order")
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--representatives", type=int, default=3, help="tiles shown per cluster")
    p.add_argument("--interpolate", default="", help="two cluster numbers a,b ('' = 0,1)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--projection-tiles", type=int, default=1000, help="series subsampled for t-SNE and MDS")
    p.add_argument("--restarts", type=int, default=4, help="K-means re-runs with other seeds for stability")
    p.add_argument("--rgb-bands", default="3,2,1", help="grid bands shown as R,G,B ('' = first band, colour ramp)")
    p.add_argument("--n-init", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--method", default="kmeans")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--max-dtw-tiles", type=int, default=5000)
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("evolution", help="kind of every tile on every date, transitions and changes")
    p.add_argument("--grid", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--clusters", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--merge-overlap", type=float, default=0.25,
                   help="clusters whose members overlap this much on a date are one kind on it")
    p.add_argument("--labels", required=True, help="the tiles-by-date table (Parquet)")
    p.add_argument("--out-dir", required=True)

    p = sub.add_parser("kchoice", help="metrics against K: figure and table")
    p.add_argument("--inputs", nargs="+", required=True, help="the clusters' metrics JSON of every K")
    p.add_argument("--model", required=True)
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-csv", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from landtaxa import demo

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    handler = globals()[f"cmd_{args.command}"]
    try:
        handler(args)
    except (ValueError, FileNotFoundError, MemoryError) as err:
        log.error("%s", err)
        return 1
    return 0
