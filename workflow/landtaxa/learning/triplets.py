"""Triplet sampling: geographic (Tile2Vec) and cluster-guided (the refinement step).

A triplet is three tile positions ``(date index, row px, col px)``: anchor, neighbour and
distant. Positions are the top-left pixel of a ``tile_size`` window on the grid.

- Geographic triplets: the anchor is anywhere valid on a random date; the neighbour's
  centre lies within ``radius`` px of the anchor's centre on the same date; the distant
  tile is anywhere valid on any date, at least ``radius`` px away when on the same date.
- Cluster triplets: on each date t, anchor and neighbour are two grid tiles of the same
  cluster and the distant tile is from another cluster, all on date t. Triplets per
  cluster are proportional to its size, and the other cluster is drawn in proportion to
  its size.
"""

from __future__ import annotations

import numpy as np

from landtaxa.inputs.grid import Grid


def triplet_budget(budget: int | dict, tiles: int, dates: int) -> int:
    """The number of triplets of a budget: a number as it is, or ``{per_tile_date: r, min: a, max: b}`` as
    ``clip(r x tiles x dates, a, b)``, for the grid's tiles and the training dates (the images the
    triplets are drawn from). The paper trains on 100,000 geographic triplets for 48,400 tiles x 20
    dates; the floor keeps a small series trainable, the cap bounds the cost of a vast one."""
    if isinstance(budget, dict):
        return int(min(max(round(budget["per_tile_date"] * tiles * dates), budget["min"]), budget["max"]))
    return int(budget)


def _valid_tile_ids(fractions: np.ndarray, min_valid: float) -> np.ndarray:
    return np.flatnonzero(fractions.reshape(-1) >= min_valid)


def geographic_triplets(
    grid: Grid,
    fractions: list[np.ndarray],
    n: int,
    radius: float,
    min_valid: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sample ``n`` geographic triplets; returns an int64 array (n, 3, 3).

    ``fractions[t]`` is the (n_rows, n_cols) valid fraction of date t's tiles. A window
    counts as valid when the grid tile holding its centre is valid on its date.
    """
    ts = grid.tile_size
    valid = [_valid_tile_ids(f, min_valid) for f in fractions]
    dates = np.array([t for t, v in enumerate(valid) if len(v)])
    if len(dates) == 0:
        raise ValueError("no date has a valid tile: cannot sample training triplets")
    max_r, max_c = grid.height - ts, grid.width - ts
    n_cols = grid.n_cols

    def is_valid(t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        tile = ((r + ts // 2) // ts) * n_cols + (c + ts // 2) // ts
        ok = np.zeros(len(t), bool)
        for d in np.unique(t):
            sel = t == d
            ok[sel] = np.isin(tile[sel], valid[d])
        return ok

    def random_positions(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # a random valid tile of date t, then a random sub-tile offset
        r = np.empty(len(t), np.int64)
        c = np.empty(len(t), np.int64)
        for d in np.unique(t):
            sel = np.flatnonzero(t == d)
            tiles = rng.choice(valid[d], size=len(sel))
            tr, tc = np.divmod(tiles, n_cols)
            r[sel] = np.clip(tr * ts + rng.integers(-(ts // 2), ts - ts // 2, len(sel)), 0, max_r)
            c[sel] = np.clip(tc * ts + rng.integers(-(ts // 2), ts - ts // 2, len(sel)), 0, max_c)
        return r, c

    out = np.empty((0, 3, 3), np.int64)
    for _ in range(100):
        m = max(2 * (n - len(out)), 16)
        ta = rng.choice(dates, size=m)
        ra, ca = random_positions(ta)
        ang = rng.uniform(0, 2 * np.pi, m)
        dist = radius * np.sqrt(rng.uniform(0, 1, m))
        rn = np.clip(np.rint(ra + dist * np.sin(ang)).astype(np.int64), 0, max_r)
        cn = np.clip(np.rint(ca + dist * np.cos(ang)).astype(np.int64), 0, max_c)
        td = rng.choice(dates, size=m)
        rd, cd = random_positions(td)
        far = (td != ta) | (np.hypot(rd - ra, cd - ca) > radius)
        near = np.hypot(rn - ra, cn - ca) <= radius  # rounding to pixels can step past the radius
        ok = is_valid(ta, rn, cn) & near & far
        batch = np.stack(
            [np.stack([ta, ra, ca], 1), np.stack([ta, rn, cn], 1), np.stack([td, rd, cd], 1)], 1
        )[ok]
        out = np.concatenate([out, batch])[:n]
        if len(out) == n:
            return out
    raise ValueError(
        f"could only sample {len(out)} of {n} geographic triplets: too little valid data "
        f"for the neighbourhood radius {radius} px"
    )


def cluster_triplets(
    grid: Grid,
    tile_ids: np.ndarray,
    labels: np.ndarray,
    fractions: list[np.ndarray],
    n: int,
    min_valid: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sample about ``n`` cluster-guided triplets over all dates; returns (m, 3, 3) int64.

    ``n`` is split evenly over the dates; on each date the share of each cluster is
    proportional to its size among the tiles valid that date.
    """
    tile_ids = np.asarray(tile_ids)
    labels = np.asarray(labels)
    n_dates = len(fractions)
    per_date = np.full(n_dates, n // n_dates)
    per_date[: n % n_dates] += 1
    rows_out = []
    for t in range(n_dates):
        ok = fractions[t].reshape(-1)[tile_ids] >= min_valid
        ids, lab = tile_ids[ok], labels[ok]
        clusters, sizes = np.unique(lab, return_counts=True)
        usable = sizes >= 2
        if usable.sum() == 0 or len(clusters) < 2:
            continue
        share = np.where(usable, sizes, 0) / np.where(usable, sizes, 0).sum()
        counts = rng.multinomial(per_date[t], share)
        members = {c: ids[lab == c] for c in clusters}
        for ci, c in enumerate(clusters):
            k = counts[ci]
            if k == 0:
                continue
            pair = np.stack([rng.choice(members[c], 2, replace=False) for _ in range(k)])
            others = np.delete(np.arange(len(clusters)), ci)
            p_other = sizes[others] / sizes[others].sum()
            other = clusters[rng.choice(others, size=k, p=p_other)]
            dist = np.array([rng.choice(members[o]) for o in other])
            for a, b, d in zip(pair[:, 0], pair[:, 1], dist, strict=True):
                rows_out.append([(t, *_topleft(grid, x)) for x in (a, b, d)])
    if not rows_out:
        raise ValueError("no date has two clusters with valid tiles: cannot sample refinement triplets")
    out = np.asarray(rows_out, np.int64)
    return out[rng.permutation(len(out))]


def _topleft(grid: Grid, tile_id: int) -> tuple[int, int]:
    r, c = divmod(int(tile_id), grid.n_cols)
    return r * grid.tile_size, c * grid.tile_size
