"""STAC API input: a search of the API, saved as the ItemCollection that the run reads.

``images: {stac_api: URL, collections: [...], datetime: "2023-01-01/.."}`` (optional ``query``,
``filter``, ``filter_lang``, passed through to the API as they are; ``page_size`` items per page)
asks the API for the items over the area of interest's bounds (in longitude/latitude: the
search's ``bbox``) with ``pystac-client``, which follows the API's paging. What comes back is
saved as an ItemCollection, ``results/sources/stac_items.json``: the record of the run, read by
:mod:`landtaxa.inputs.stac` exactly as a file given as ``images`` is (``bands``, ``masks.asset``,
``max_cloud_cover``, the declared offsets...).

The search runs wherever the workflow plans its jobs, so every ``snakemake`` command searches
again and a new acquisition becomes a new date of the plan (the training dates stay as
``results/grid.json`` recorded them). The items are saved in a fixed order (date, then id) and
the file is rewritten only when what the API returns differs from it: with nothing new the file,
and every VRT made from it, keeps its modification time, so nothing reruns. An item that
changed or vanished since the saved search is named in the log; the new search is what the run
uses (a changed item's VRT changes, and so reruns its date; a vanished item's date leaves the
run); the planning process also appends these lines to ``logs/stac_search.log``. The HTTP
settings (``http``: retries, time-outs) and headers (``http_headers``, their ``env:NAME``
values read here) go with every request; an API that cannot be reached stops the run before
any job, naming its URL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landtaxa.inputs.aoi import aoi_bounds
from landtaxa.inputs.datasets import InventoryError
from landtaxa.inputs.vrt import write_text_if_changed
from landtaxa.runtime import HTTP_DEFAULTS
from landtaxa.storage import get_logger

log = get_logger()

#: the saved search, under the run's sources folder
SAVED = "stac_items.json"
#: status codes worth asking again (rate limits, a gateway or a server busy for a moment)
RETRY_STATUS = (429, 500, 502, 503, 504)


@dataclass
class SearchResult:
    """What a search found, against the search saved before (``path``)."""

    path: Path
    items: int
    pages: int
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    written: bool = False


def is_search(images: Any) -> bool:
    """Whether the config's ``images`` asks a STAC API (a mapping with ``stac_api``)."""
    return isinstance(images, dict) and "stac_api" in images


def search_bbox(aoi: str | os.PathLike) -> tuple[float, float, float, float]:
    """The area of interest's bounds in longitude/latitude, the search's ``bbox`` (rounded outwards to 1e-6
    degree, about 0.1 m, so that the same area always asks the same)."""
    west, south, east, north = aoi_bounds(aoi, "EPSG:4326")
    return (math.floor(west * 1e6) / 1e6, math.floor(south * 1e6) / 1e6, math.ceil(east * 1e6) / 1e6,
            math.ceil(north * 1e6) / 1e6)


def _describe(spec: dict, bbox: tuple[float, ...]) -> str:
    parts = [f"collections {', '.join(spec['collections'])}" if spec.get("collections") else "all collections",
             f"datetime {spec.get('datetime') or 'any'}", f"bbox {', '.join(f'{v:g}' for v in bbox)}"]
    parts += [key for key in ("query", "filter") if spec.get(key)]
    return "; ".join(parts)


def _item_key(item: dict) -> tuple[str, str]:
    props = item.get("properties") or {}
    return str(props.get("datetime") or props.get("start_datetime") or ""), str(item.get("id", ""))


def item_collection_text(items: list[dict]) -> str:
    """The saved file's text: items in date, then id order, so that the same items give the same bytes."""
    return json.dumps({"type": "FeatureCollection", "features": sorted(items, key=_item_key)}, indent=1,
                      sort_keys=True) + "\n"


def client(url: str, headers: dict[str, str], http: dict | None = None) -> Any:
    """A ``pystac_client.Client`` of ``url`` sending ``headers``, with the ``http`` retries and time-outs."""
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    http = {**HTTP_DEFAULTS, **(http or {})}
    # at most 2 retries to connect: an API that cannot be reached stops the plan early (a silent host after
    # 3 x connect_timeout), while answers that failed for a moment get all http.retries
    retry = Retry(total=int(http["retries"]), connect=min(int(http["retries"]), 2),
                  backoff_factor=float(http["retry_delay"]) / 2, status_forcelist=RETRY_STATUS, allowed_methods=None,
                  raise_on_status=False)
    stac_io = StacApiIO(headers=headers, timeout=(float(http["connect_timeout"]), float(http["timeout"])),
                        max_retries=retry)
    return Client.open(url, stac_io=stac_io)


def search_parameters(spec: dict, bbox: tuple[float, ...]) -> dict:
    """The keyword arguments of ``Client.search`` for the config's ``images`` mapping and the bbox."""
    kwargs: dict[str, Any] = {"bbox": list(bbox), "limit": int(spec.get("page_size") or 100)}
    for key in ("collections", "datetime", "query", "filter", "filter_lang"):
        if spec.get(key) is not None:
            kwargs[key] = spec[key]
    return kwargs


def search(spec: dict, aoi: str | os.PathLike, out: str | os.PathLike, headers: dict[str, str],
           http: dict | None = None) -> SearchResult:
    """Search the API of ``spec`` (the config's ``images``) over ``aoi``; save the items at ``out``.

    ``headers`` are the resolved ``http_headers``. Raises InventoryError naming the URL when the API
    cannot be reached or refuses the search, and when it finds no item.
    """
    url, out = str(spec["stac_api"]), Path(out)
    bbox = search_bbox(aoi)
    what = _describe(spec, bbox)
    items: list[dict] = []
    pages = 0
    try:
        found = client(url, headers, http).search(**search_parameters(spec, bbox))
        for page in found.pages_as_dicts():
            pages += 1
            items.extend(page.get("features") or [])
    except InventoryError:
        raise
    except Exception as err:  # noqa: BLE001 - requests', urllib3's and pystac-client's errors alike
        status = getattr(err, "status_code", None)  # pystac-client's APIError: the answer's status and body
        reason = (f"HTTP {status}: " if status else "") + (" ".join(str(err).split()) or type(err).__name__)
        raise InventoryError(
            f"config key images.stac_api: the STAC API at {url} cannot be searched ({what}): {reason}; check the URL, "
            "the network and http_headers (config keys http.timeout and http.retries set the patience)"
        ) from err
    log.info("STAC search of %s (%s): %d items in %d page(s)", url, what, len(items), pages)
    if not items:
        raise InventoryError(f"config key images: the STAC API at {url} found no items ({what}); widen the "
                             "datetime, check the collections, or the area of interest (config key aoi)")
    ids = [str(i.get("id")) for i in items]
    if len(set(ids)) < len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise InventoryError(f"config key images: the STAC API at {url} returned items {', '.join(twice[:5])} more "
                             "than once (inconsistent paging?); search again, or narrow it to one collection")
    result = SearchResult(out, len(items), pages)
    before = _saved(out)
    now = {str(i["id"]): json.dumps(i, sort_keys=True) for i in items}
    if before is not None:
        result.new = sorted(set(now) - set(before))
        result.vanished = sorted(set(before) - set(now))
        result.changed = sorted(k for k in set(now) & set(before) if now[k] != before[k])
    text = item_collection_text(items)
    result.written = not (out.is_file() and out.read_text() == text)
    if result.written:
        write_text_if_changed(out, text)
    _log(result, before is None)
    return result


@contextlib.contextmanager
def also_logged_to(path: str | os.PathLike) -> Iterator[None]:
    """Copy the log lines of the block (the search, the items kept and dropped) to ``path`` too, appended:
    the console shows them once, the file keeps every search's."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _saved(path: Path) -> dict[str, str] | None:
    """The items of the search saved before (id -> canonical JSON), None when there is none (or unreadable)."""
    try:
        features = json.loads(path.read_text()).get("features") or []
    except (OSError, ValueError, AttributeError):
        return None
    return {str(f.get("id")): json.dumps(f, sort_keys=True) for f in features if isinstance(f, dict)}


def _log(result: SearchResult, first: bool) -> None:
    path = result.path
    if first:
        log.info("%s: saved the %d items found", path, result.items)
        return
    if result.new:
        log.info("%s: %d new item(s): %s", path, len(result.new), ", ".join(result.new))
    for item in result.changed:
        log.warning("%s: item %s changed since the last search; its new version is used (its date reruns if its "
                    "assets or radiometry changed)", path, item)
    for item in result.vanished:
        log.warning("%s: item %s vanished from the search since the last one; the run goes on without it", path,
                    item)
    if not (result.new or result.changed or result.vanished):
        log.info("%s: nothing new since the last search (%d items)%s", path, result.items,
                 "" if result.written else "; the file is left as it is")
    if result.written:
        log.info("%s: saved the %d items found", path, result.items)
