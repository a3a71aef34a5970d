"""Read an exported static DICOMweb tree back and compare it with the source it came from.

``static_host(url)`` is the project's dicomweb source in ``staticWado`` mode on a served tree;
``compare_with_source`` checks searches (``SEARCHES``), series lists, metadata, frames and
bulk data, byte for byte, and returns what it compared so a test can assert it was not nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from datasources import Host
from datasources.gateway.frames import call_bulk_data_uri, frame_count, source_frames
from datasources.naturalize import is_tag, tag_for_keyword

__all__ = ["SEARCHES", "comparable", "compare_with_source", "static_host"]

#: Where a static tree and a source may differ: URLs, and what the export adds (counts, the transfer syntax).
VOLATILE = {"imageId", "wadoRoot", "wadoUri", "url", "RetrieveURL", "_vrMap"}
ADDED = {"AvailableTransferSyntaxUID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
         "NumberOfSeriesRelatedInstances", "ModalitiesInStudy"}  # fmt: skip


def static_host(url: str, name: str = "static") -> Host:
    configuration = {
        "name": name,
        "wadoRoot": url,
        "qidoRoot": url,
        "staticWado": True,
        "supportsFuzzyMatching": True,
        "singlepart": "bulkdata,video,pdf,image",
        "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        "requestOptions": {"retries": 0},
    }
    return Host.from_config(
        {"dataSources": [{"namespace": "default.dataSourcesModule.dicomweb", "sourceName": name,
                          "configuration": configuration}]}
    )  # fmt: skip


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _pn(value: Any) -> str:
    value = _first(value)
    return str(value.get("Alphabetic", "")) if isinstance(value, Mapping) else str(value or "")


def searches(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The search table, made from a source's own studies: every kind of study filter a viewer sends."""
    table: list[dict[str, Any]] = [{}]
    for row in rows[:3]:
        table.append({"StudyInstanceUID": row["StudyInstanceUID"]})
        if row.get("PatientID"):
            table.append({"PatientID": _first(row["PatientID"])})
        name = _pn(row.get("PatientName"))
        if len(name) >= 2:
            table.append({"PatientName": f"{name[:2]}*"})
        if row.get("StudyDate"):
            date = str(_first(row["StudyDate"]))
            table += [{"StudyDate": f"{date}-"}, {"StudyDate": f"-{date}"}, {"StudyDate": f"{date}-{date}"}]
        modalities = row.get("ModalitiesInStudy")
        if modalities:
            table.append({"ModalitiesInStudy": _first(modalities)})
    if len(rows) >= 2:
        table.append({"StudyInstanceUID": f"{rows[0]['StudyInstanceUID']}\\{rows[-1]['StudyInstanceUID']}"})
    return table


SEARCHES = searches


def comparable(record: Mapping[str, Any], drop: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """A record without URLs; BulkDataURI values kept as markers (each side has its own)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in VOLATILE or key in drop or key.startswith("_") or not _dicom(key):
            continue  # URLs, and application fields (dicomjson's NumInstances...) that are not DICOM
        if isinstance(value, Mapping) and "BulkDataURI" in value:
            value = {"BulkDataURI": "..."}
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            value = [comparable(v, drop) for v in value]
        out[key] = value
    return out


def _dicom(key: str) -> bool:
    return tag_for_keyword(key) is not None or is_tag(key)


def _bulk_values(instance: Mapping[str, Any], trail: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = []
    for key, value in instance.items():
        if isinstance(value, Mapping) and "BulkDataURI" in value and key != "PixelData":
            found.append(((*trail, key), value))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    found += _bulk_values(item, (*trail, key, i))
    return found


def compare_with_source(original: Host, source: str | None, static: Host) -> dict[str, int]:
    """Assert that the static tree gives what ``source`` of ``original`` gives; counts of what was compared."""
    ds = original.get_data_source(source)
    st = static.get_data_source()
    counts = {"searches": 0, "studies": 0, "series": 0, "instances": 0, "frames": 0, "bulk": 0}
    rows = ds.query.studies.search()
    by_uid = lambda found: sorted(r["StudyInstanceUID"] for r in found)  # noqa: E731
    for query in searches(rows):
        assert by_uid(st.query.studies.search(dict(query))) == by_uid(ds.query.studies.search(dict(query))), query
        counts["searches"] += 1
    static_rows = {r["StudyInstanceUID"]: r for r in st.query.studies.search()}
    assert set(static_rows) == {r["StudyInstanceUID"] for r in rows}
    for row in rows:
        uid = row["StudyInstanceUID"]
        assert comparable(static_rows[uid], ADDED) == comparable(row, ADDED), uid
        counts["studies"] += 1
        source_series = {s["SeriesInstanceUID"]: s for s in ds.query.series.search(uid)}
        static_series = {s["SeriesInstanceUID"]: s for s in st.query.series.search(uid)}
        assert set(static_series) == set(source_series)
        for se, srow in source_series.items():
            assert comparable(static_series[se], ADDED) == comparable(srow, ADDED), se
            counts["series"] += 1
            _compare_series(original, ds, static, st, uid, se, counts)
    return counts


def _instances(host: Host, ds: Any, study: str, series: str) -> dict[str, dict[str, Any]]:
    ds.delete_study_metadata(study)
    host.metadata_store.remove_study(study)
    ds.retrieve.series.metadata(study, series_instance_uids=[series])
    record = host.metadata_store.get_series(study, series)
    assert record is not None
    return {i["SOPInstanceUID"]: i for i in record["instances"]}


def _compare_series(
    original: Host, ds: Any, static: Host, st: Any, study: str, series: str, counts: dict[str, int]
) -> None:
    mine = _instances(original, ds, study, series)
    theirs = _instances(static, st, study, series)
    assert set(theirs) == set(mine)
    for sop, instance in mine.items():
        back = theirs[sop]
        assert comparable(back, ADDED) == comparable(instance, ADDED), sop
        ts = instance.get("TransferSyntaxUID") or instance.get("AvailableTransferSyntaxUID")
        if ts:
            assert back["AvailableTransferSyntaxUID"] == ts
        counts["instances"] += 1
        if instance.get("PixelData") is not None:
            numbers = list(range(1, frame_count(instance) + 1))
            expected = source_frames(ds, study, series, sop, numbers, lambda i=instance: i)
            # a static tree has one file per frame: a viewer asks for them one at a time
            assert [st.retrieve.frames(study, series, sop, [n])[0] for n in numbers] == expected, sop
            counts["frames"] += len(numbers)
        for path, value in _bulk_values(instance):
            keyword = path[-1]
            expected = call_bulk_data_uri(ds, value["BulkDataURI"], tag=keyword, study_instance_uid=study,
                                          series_instance_uid=series)  # fmt: skip
            got = _lookup(back, path)
            assert got is not None and "BulkDataURI" in got, path
            data = st.retrieve.bulk_data_uri(got["BulkDataURI"], study_instance_uid=study)
            assert data == expected, path
            counts["bulk"] += 1
        for path, value in _inline(instance):
            assert _lookup(back, path) == value


def _inline(instance: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [((k,), v) for k, v in instance.items() if isinstance(v, Mapping) and "InlineBinary" in v]


def _lookup(instance: Mapping[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = instance
    for step in path:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else None
        else:
            node = node.get(step) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return node


def decode_inline(value: Mapping[str, Any]) -> bytes:
    return base64.b64decode(value["InlineBinary"])
