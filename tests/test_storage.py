"""Tests of landtaxa.storage: atomic writes, npz without pickles, and the background reader (prefetch)."""

from __future__ import annotations

import threading
import time

import pytest

from landtaxa.storage import prefetch


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


def test_atomic_path_moves_a_complete_file_into_place_and_leaves_nothing_on_failure(tmp_path) -> None:
    from landtaxa.storage import atomic_path

    out = tmp_path / "sub" / "a.json"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.suffix == ".json" and tmp.name.startswith(".a.tmp")
        tmp.write_text("{}")
        assert not out.exists()
    assert out.read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert out.read_text() == "{}" and sorted(p.name for p in out.parent.iterdir()) == ["a.json"]


def test_npz_never_loads_pickled_objects(tmp_path) -> None:
    import numpy as np

    from landtaxa.storage import load_npz, save_npz

    save_npz(tmp_path / "ok.npz", a=np.arange(3))
    assert load_npz(tmp_path / "ok.npz")["a"].tolist() == [0, 1, 2]
    np.savez(tmp_path / "bad.npz", a=np.array([{"code": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_npz(tmp_path / "bad.npz")
