"""paused_gc: the collector is off inside, back on after, and what was built is not traversed on leaving."""

from __future__ import annotations

import gc
import threading
import weakref

import orjson
import pytest
from datasources.naturalize import naturalize_many, paused_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_objects_built_in_a_pause_skip_the_young_generation() -> None:
    body = orjson.dumps([{f"0009{i:04X}": {"vr": "LO", "Value": [f"v{i}", i]} for i in range(40)}] * 5000)
    gc.collect()
    with paused_gc():
        assert not gc.isenabled()
        built = naturalize_many(orjson.loads(body))
    assert gc.isenabled()
    # without the move, the 5000 datasets and their lists would all wait in generation 0 for the
    # next allocation to start a collection over them
    assert gc.get_count()[0] < 100
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert id(built) not in young and id(built[0]) not in young and id(built[-1]["00090001"]) not in young
    assert any(o is built for o in gc.get_objects(generation=2))
    assert built[0]["00090001"] == ["v1", 1]


def test_cycles_made_in_a_pause_are_still_collected() -> None:
    with paused_gc():
        node = Node()
        gone = weakref.ref(node)
        del node
    assert gone() is not None  # not freed by reference counting...
    gc.collect()
    assert gone() is None  # ...but by a full collection, as before


def test_pauses_nest_and_overlap_across_threads() -> None:
    inner_done = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with paused_gc():
            inner_done.set()
            release.wait(5)
            seen.append(gc.isenabled())

    with paused_gc():
        with paused_gc():
            pass
        assert not gc.isenabled()  # the inner pause ending does not turn it back on
        thread = threading.Thread(target=other)
        thread.start()
        inner_done.wait(5)
    assert not gc.isenabled()  # the other thread still parses
    release.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled_and_frozen_objects_stay_frozen() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    keep = [[] for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            more = [[] for _ in range(10)]
        assert gc.get_freeze_count() == frozen  # the application's freeze is not undone
        assert gc.isenabled()
    finally:
        gc.unfreeze()
    assert keep and more


def test_naturalize_many_hands_back_each_datasets_bulk_references() -> None:
    datasets = [
        {
            "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/pixels"},
            "00400275": {"vr": "SQ", "Value": [{"00420011": {"vr": "OB", "BulkDataURI": "bulk/doc"}}]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "LEE^ANNA"}]},
        },
        {"00100020": {"vr": "LO", "Value": ["MRN1"]}},
    ]
    refs: list[list[dict]] = []
    out = naturalize_many(datasets, bulk_refs=refs)
    assert [[r["BulkDataURI"] for r in found] for found in refs] == [["bulk/pixels", "bulk/doc"], []]
    refs[0][1]["BulkDataURI"] = "http://pacs/bulk/doc"  # the very dicts in the output
    assert out[0]["RequestAttributesSequence"][0]["EncapsulatedDocument"] == {"BulkDataURI": "http://pacs/bulk/doc"}
    assert out[0]["PixelData"] is refs[0][0]


@pytest.mark.exclusive
def test_release_later_frees_in_its_own_thread_and_soon() -> None:
    import time

    from datasources.gcpause import release_later

    class Study(dict):  # a dict weakref can reach
        pass

    freed_in: list[str] = []
    done = threading.Event()
    study = Study(series=[{"SOPInstanceUID": str(i)} for i in range(1000)])
    weakref.finalize(study, lambda: (freed_in.append(threading.current_thread().name), done.set()))
    release_later(study)
    del study
    assert done.wait(5), "the released study was not freed"
    assert freed_in == ["datasources-release"]  # not the caller's thread
    started = time.monotonic()
    for _ in range(3):
        release_later([{"x": i} for i in range(100)])
    assert time.monotonic() - started < 1.0  # handing over never waits for the freeing
