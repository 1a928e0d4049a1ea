"""How large the products that must stay small may grow: the offline viewer page, the evolution figure.

The page (:mod:`landtaxa.products.viewer`) holds the map of every tile on every date, one byte per tile
and map, compressed, and thumbnails of a few tiles on every date in one PNG atlas. The maps are the
whole region by design; the thumbnails are what would grow without bound with tiles x dates x tile
pixels, so their pixels are capped at :data:`THUMB_PIXELS`: each thumbnail shrinks (down to
:data:`MIN_THUMB` px) and, past that, fewer tiles get one. :func:`page_bytes` bounds the page from the
run's sizes, before it is made, for the plan's disk and memory estimates; it imports nothing heavy.
The evolution figure draws each date's map at most :data:`FIGURE_PX` on a side (every few tiles beyond).
"""

from __future__ import annotations

import math

THUMB_PIXELS = 8_000_000  # pixels of every thumbnail together (24 MB as 8-bit RGB before compression)
MAX_THUMB = 64  # px: a thumbnail's side at most (a tile's, when smaller)
MIN_THUMB = 8  # px: below this a thumbnail shows nothing; fewer tiles get one instead
ATLAS_MAX_WIDTH = 4096  # px of the thumbnails' atlas: within every browser's limits
FIGURE_PX = 400  # px: the evolution figure's map of a date at most (its panels are about 190 px wide at 100 dpi)
TEMPLATE_BYTES = 64 * 1024  # the page's HTML, CSS and script, and its small JSON fields


def thumb_layout(n_tiles: int, n_dates: int, tile_size: int) -> tuple[int, int]:
    """(side in px of each thumbnail, how many of the ``n_tiles`` get one) for thumbnails on ``n_dates`` dates."""
    slots = max(1, n_tiles * n_dates)
    side = max(MIN_THUMB, min(MAX_THUMB, tile_size, math.isqrt(THUMB_PIXELS // slots)))
    side = min(side, tile_size)
    return side, min(n_tiles, THUMB_PIXELS // max(1, n_dates * side * side))


def page_bytes(n_tiles: int, n_dates: int, n_thumbs: int, tile_size: int) -> int:
    """The viewer page's bytes at most: the maps of ``n_tiles`` on every date (one byte per tile and map; zlib
    never grows data by more than 0.1% and 6 bytes) and the thumbnails (an incompressible PNG is its raw RGB plus
    a filter byte per row), both in base64 (4/3), the thumbnails' ids in JSON, and the template."""
    side, kept = thumb_layout(n_thumbs, n_dates, tile_size)
    maps = (n_dates + 1) * n_tiles * 1.001 + 6
    slots = kept * n_dates
    per_row = max(1, min(slots, ATLAS_MAX_WIDTH // side))
    atlas = math.ceil(slots / per_row) * side * (per_row * side * 3 + 1) * 1.001 + 1024 if slots else 0
    return int((maps + atlas) * 4 / 3 + kept * 8 + TEMPLATE_BYTES)
