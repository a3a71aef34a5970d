"""The metadata store: OHIF's API and events, O(1) look-ups, and 8 threads at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from datasources.errors import DatasetError, NotFoundError, UnknownEventError
from datasources.metadata_store import DicomMetadataStore


def instances(study: str, series: str, n: int, modality: str = "CT", start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "StudyInstanceUID": study,
            "SeriesInstanceUID": series,
            "SOPInstanceUID": f"{series}.{i}",
            "Modality": modality,
            "InstanceNumber": i,
            "imageId": f"wadors:http://x/studies/{study}/series/{series}/instances/{series}.{i}/frames/1",
        }
        for i in range(start, start + n)
    ]


def record_events(store: DicomMetadataStore) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    for name, event in vars(store.EVENTS).items():
        store.subscribe(event, lambda payload, name=name: seen.append((name, payload)))
    return seen


def test_event_names_are_ohifs() -> None:
    events = DicomMetadataStore.EVENTS
    assert events.INSTANCES_ADDED == "event::dicomMetadataStore:instancesAdded"
    assert events.SERIES_ADDED == "event::dicomMetadataStore:seriesAdded"
    assert events.SERIES_UPDATED == "event::dicomMetadataStore:seriesUpdated"
    assert events.STUDY_ADDED == "event::dicomMetadataStore:studyAdded"
    with pytest.raises(UnknownEventError, match="known events"):
        DicomMetadataStore().subscribe("event::nope", print)


def test_add_and_read_with_events() -> None:
    store = DicomMetadataStore()
    seen = record_events(store)
    store.add_series_metadata(
        [
            {"StudyInstanceUID": "1", "SeriesInstanceUID": "1.1", "Modality": "CT", "StudyDescription": "CHEST"},
            {"StudyInstanceUID": "1", "SeriesInstanceUID": "1.2", "Modality": "SR"},
        ]
    )
    store.add_instances(instances("1", "1.1", 3))
    store.add_instances(instances("1", "1.1", 3))  # duplicates: kept once, event still sent (as OHIF)
    assert [name for name, _ in seen] == ["STUDY_ADDED", "SERIES_ADDED", "INSTANCES_ADDED", "INSTANCES_ADDED"]
    assert seen[1][1]["StudyInstanceUID"] == "1" and len(seen[1][1]["seriesSummaryMetadata"]) == 2
    assert seen[2][1] == {"StudyInstanceUID": "1", "SeriesInstanceUID": "1.1", "madeInClient": False}

    study = store.get_study("1")
    assert study is not None
    assert study["ModalitiesInStudy"] == ["CT", "SR"] and study["StudyDescription"] == "CHEST"
    assert [s["SeriesInstanceUID"] for s in study["series"]] == ["1.1", "1.2"]
    assert len(store.get_series("1", "1.1")["instances"]) == 3  # type: ignore[index]
    assert store.get_series(None, "1.2") is study["series"][1]
    assert store.get_instance("1", "1.1", "1.1.2")["InstanceNumber"] == 2  # type: ignore[index]
    assert store.get_instance("1", "1.1", "nope") is None
    image_id = instances("1", "1.1", 3)[1]["imageId"]
    assert store.get_instance_by_image_id(image_id)["SOPInstanceUID"] == "1.1.1"  # type: ignore[index]
    frame_3 = image_id.replace("/frames/1", "/frames/3")
    assert store.get_instance_by_image_id(frame_3)["SOPInstanceUID"] == "1.1.1"  # type: ignore[index]
    assert store.get_study_instance_uids() == ["1"]


def test_study_added_once_per_study_and_add_study_shell() -> None:
    store = DicomMetadataStore()
    seen = record_events(store)
    store.add_study({"StudyInstanceUID": "7", "PatientID": "P7", "StudyDate": "20200101"})
    store.add_study({"StudyInstanceUID": "7", "PatientID": "other"})
    store.add_instances(instances("7", "7.1", 2))
    assert [name for name, _ in seen].count("STUDY_ADDED") == 1
    assert store.get_study("7")["PatientID"] == "P7"  # type: ignore[index]


def test_updates() -> None:
    store = DicomMetadataStore()
    store.add_instances(instances("1", "1.1", 2))
    seen = record_events(store)
    assert store.update_series_metadata({"StudyInstanceUID": "1", "SeriesInstanceUID": "1.1", "SeriesNumber": 4})
    assert not store.update_series_metadata({"StudyInstanceUID": "1", "SeriesInstanceUID": "9", "SeriesNumber": 4})
    assert store.get_series("1", "9") is None
    before = store.get_series("1", "1.1")["instances"]  # type: ignore[index]
    store.update_metadata_for_series("1", "1.1", {"SUVScale": 1.5, "imageId": None})
    after = store.get_series("1", "1.1")
    assert after["SeriesNumber"] == 4  # type: ignore[index]
    assert all(i["SUVScale"] == 1.5 for i in after["instances"])  # type: ignore[index]
    assert "SUVScale" not in before[0]  # copy-on-write: a reader's list is never changed under it
    assert seen == [("SERIES_UPDATED", {"SeriesInstanceUID": "1.1", "StudyInstanceUID": "1", "madeInClient": True})]
    with pytest.raises(NotFoundError):
        store.update_metadata_for_series("1", "9", {})


def test_add_instances_is_all_or_nothing() -> None:
    store = DicomMetadataStore()
    mixed = instances("1", "1.1", 2) + instances("1", "1.2", 1)
    with pytest.raises(DatasetError, match="one series"):
        store.add_instances(mixed)
    bad = instances("1", "1.1", 2)
    del bad[1]["SOPInstanceUID"]
    with pytest.raises(DatasetError, match="SOPInstanceUID"):
        store.add_instances(bad)
    assert store.get_study_instance_uids() == []


def test_remove_and_clear() -> None:
    store = DicomMetadataStore()
    store.add_instances(instances("1", "1.1", 2))
    store.add_instances(instances("2", "2.1", 2))
    seen = record_events(store)
    image_id = instances("1", "1.1", 1)[0]["imageId"]
    assert store.remove_study("1") and not store.remove_study("1")
    assert store.get_study("1") is None and store.get_series(None, "1.1") is None
    assert store.get_instance_by_image_id(image_id) is None
    store.clear()
    assert len(store) == 0
    assert seen == [("STUDY_REMOVED", {"StudyInstanceUID": "1"}), ("STUDY_REMOVED", {"StudyInstanceUID": "2"})]


def test_a_failing_subscriber_does_not_break_the_writer(caplog: pytest.LogCaptureFixture) -> None:
    store = DicomMetadataStore()
    got: list[Any] = []
    store.subscribe(store.EVENTS.INSTANCES_ADDED, lambda p: 1 / 0)
    store.subscribe(store.EVENTS.INSTANCES_ADDED, got.append)
    store.add_instances(instances("1", "1.1", 1))
    assert len(got) == 1 and "ZeroDivisionError" in caplog.text
    sub = store.subscribe(store.EVENTS.INSTANCES_ADDED, got.append)
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    store.add_instances(instances("1", "1.1", 1, start=5))
    assert len(got) == 2


def test_eight_threads_adding_and_reading() -> None:
    store = DicomMetadataStore()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def on_added(payload: dict[str, Any]) -> None:
        with lock:
            counts[payload["SeriesInstanceUID"]] = counts.get(payload["SeriesInstanceUID"], 0) + 1

    store.subscribe(store.EVENTS.INSTANCES_ADDED, on_added)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        barrier.wait()
        for batch in range(25):
            # every writer adds to a shared study and to its own; batches overlap in UIDs across writers
            store.add_instances(instances("shared", f"shared.{batch % 5}", 4, start=k * 2))
            store.add_instances(instances(f"own{k}", f"own{k}.1", 2, start=batch * 2))

    def reader() -> None:
        barrier.wait()
        for _ in range(2000):
            for uid in store.get_study_instance_uids():
                study = store.get_study(uid)
                if study is None:
                    continue
                for series in study["series"]:
                    n = len(series["instances"])
                    assert n == len({i["SOPInstanceUID"] for i in series["instances"]})

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(writer, k)) for k in range(6)]
    threads += [threading.Thread(target=guarded, args=(reader,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    shared = store.get_study("shared")
    assert shared is not None and len(shared["series"]) == 5
    for series in shared["series"]:
        # writers k=0..5 add SOPs start=2k..2k+3: the union is 0..13
        assert sorted(int(i["SOPInstanceUID"].rsplit(".", 1)[1]) for i in series["instances"]) == list(range(14))
    for k in range(6):
        assert len(store.get_series(f"own{k}", f"own{k}.1")["instances"]) == 50  # type: ignore[index]
    assert sum(counts.values()) == 6 * 25 * 2
