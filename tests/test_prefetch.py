"""The background reader of the embedding step: order kept, errors surface, no thread left behind."""

from __future__ import annotations

import threading
import time

import pytest

from landtaxa.embed import prefetch


def test_prefetch_keeps_order_and_reads_ahead() -> None:
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    time.sleep(0.1)
    assert 2 <= len(produced) <= 4  # read ahead, but bounded by the queue depth
    assert [0, *it] == list(range(10))


def test_prefetch_reraises_the_producer_error() -> None:
    def items():
        yield 1
        raise OSError("disk/strip 3: read failed")

    it = prefetch(items())
    assert next(it) == 1
    with pytest.raises(OSError, match="strip 3"):
        next(it)


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    before = threading.active_count()

    def items():
        i = 0
        while True:
            yield i
            i += 1

    for i, _ in enumerate(prefetch(items(), depth=2)):
        if i == 5:
            break
    deadline = time.time() + 2
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
