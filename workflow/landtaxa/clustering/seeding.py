"""k-means++ seeding of the restarts, with the distances it needs worked out once per sample.

Greedy k-means++ (Arthur and Vassilvitskii's seeding with ``2 + int(log k)`` candidates per centre,
keeping the candidate that lowers the potential most) makes the same draws from the same
``RandomState`` as scikit-learn 1.9's ``kmeans_plusplus``, which landtaxa called before: the first
centre by ``rng.choice`` over the series, then per centre ``rng.uniform`` for the candidates,
taken where the float32 running sum of the squared distances to the nearest centre passes them.
A distance is the float64 ``|a|^2 + |b|^2 - 2 a.b`` rounded to float32, as scikit-learn computes it
from float32 input, so the centres are the same ones.

What differs is the cost. scikit-learn converts the whole sample to float64 again for every
candidate batch, ``n_init`` x K times per clustering (about 3 s of a 4-second job on the demo's
1,000 tiles of 8 x 512 features). :class:`SampleDistances` does that work once per sample and
shares it between the restarts: with fewer series than features (the usual case for long series
on a few thousand tiles) it keeps the float64 Gram matrix of the sample, every distance then a
lookup; otherwise a float64 copy of the sample. Either holds ``8 * n * min(n, F)`` bytes, at most
twice the float32 sample (:func:`landtaxa.resources._seeding` counts it).
"""

from __future__ import annotations

import numpy as np

GRAM_BLOCK_BYTES = 16 << 20  # the float64 columns converted at a time when the Gram matrix is built


class SampleDistances:
    """Squared Euclidean distances (float32) from chosen rows of an (n, F) float32 sample to all of it."""

    def __init__(self, x: np.ndarray) -> None:
        n, f = x.shape
        self.n = n
        if n <= f:
            self.gram = np.zeros((n, n), np.float64)
            self.norms = np.zeros(n, np.float64)
            step = max(1, GRAM_BLOCK_BYTES // (8 * n))
            for c0 in range(0, f, step):
                block = x[:, c0:c0 + step].astype(np.float64)
                self.gram += block @ block.T
                self.norms += np.einsum("ij,ij->i", block, block)
            self.x64 = None
        else:
            self.gram = None
            self.x64 = x.astype(np.float64)
            self.norms = np.einsum("ij,ij->i", self.x64, self.x64)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        d = -2 * (self.gram[rows] if self.gram is not None else self.x64[rows] @ self.x64.T)
        d += self.norms[rows, None]
        d += self.norms[None, :]
        out = d.astype(np.float32)
        np.maximum(out, 0, out=out)
        return out


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.RandomState,
                    distances: SampleDistances | None = None) -> np.ndarray:
    """(k, F) float32 centres drawn from the rows of the (n, F) float32 ``x`` (module docstring);
    ``distances``, built once from ``x``, lets several seedings of the same sample share its cost."""
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means++ needs 1 <= k <= {n} series, got k={k}")
    dist = distances if distances is not None else SampleDistances(x)
    weights = np.ones(n, np.float32)
    trials = 2 + int(np.log(k))
    chosen = [int(rng.choice(n, p=weights / weights.sum()))]
    nearest = dist(chosen)
    potential = nearest @ weights
    for _ in range(1, k):
        targets = rng.uniform(size=trials) * potential
        candidates = np.searchsorted(np.cumsum(weights * nearest), targets)
        np.clip(candidates, None, n - 1, out=candidates)
        with_candidate = np.minimum(nearest, dist(candidates))
        potentials = with_candidate @ weights[:, None]
        best = int(np.argmin(potentials))
        potential, nearest = potentials[best], with_candidate[best]
        chosen.append(int(candidates[best]))
    return np.array(x[chosen], np.float32)
