"""Static WADO: the parsed study list is kept with its validators and reused on a 304."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
from datasources.query import parse_search
from datasources_default.dicomweb.source import DicomWebSource
from support.dicomgen import StudySpec, make_study
from support.statictree import build_static_tree, serve_static_tree

SPECS = [
    StudySpec("sc-lee", patient_name="LEE^ANNA", patient_id="MRN1", n_instances=1),
    StudySpec("sc-okafor", patient_name="OKAFOR^NGOZI", patient_id="MRN2", n_instances=1),
]


def make_source(url: str) -> DicomWebSource:
    return DicomWebSource({"wadoRoot": url, "qidoRoot": url, "staticWado": True, "supportsFuzzyMatching": True})


def search(source: DicomWebSource, **filters: str) -> list[dict]:
    return source.search(parse_search("study", filters))


def list_requests(seen: list[tuple[str, int]]) -> list[int]:
    return [status for path, status in seen if path.split("?")[0].rstrip("/").endswith("/studies")]


def test_second_search_revalidates_and_reuses_the_parsed_list(tmp_path: Path) -> None:
    build_static_tree([ds for spec in SPECS for ds in make_study(spec)], tmp_path)
    seen: list[tuple[str, int]] = []
    with serve_static_tree(tmp_path, validators=True, requests_seen=seen) as url:
        source = make_source(url)
        first = search(source, PatientName="LEE*")
        kept = source.static_list._lists
        assert [r["PatientName"] for r in first] == [{"Alphabetic": "LEE^ANNA"}]
        second = search(source, PatientName="OKAFOR*")
        assert [r["PatientID"] for r in second] == ["MRN2"]
        assert list_requests(seen) == [200, 304]  # asked again, answered "unchanged", not re-sent
        assert len(kept) == 1
        rows = next(iter(kept.values()))[1]
        assert search(source, PatientID="MRN1")[0]["StudyInstanceUID"] == SPECS[0].study_uid
        assert next(iter(kept.values()))[1] is rows  # the very list parsed the first time

        # the list changes on the server: a new ETag, the new list is fetched and parsed
        index = tmp_path / "studies" / "index.json.gz"
        listed = orjson.loads(gzip.decompress(index.read_bytes()))
        index.write_bytes(gzip.compress(orjson.dumps(listed[:1])))
        assert len(search(source)) == 1
        assert list_requests(seen) == [200, 304, 304, 200]


def test_without_validators_nothing_is_kept(tmp_path: Path) -> None:
    build_static_tree([ds for spec in SPECS for ds in make_study(spec)], tmp_path)
    seen: list[tuple[str, int]] = []
    with serve_static_tree(tmp_path, requests_seen=seen) as url:
        source = make_source(url)
        assert len(search(source)) == 2
        assert len(search(source, PatientID="MRN2")) == 1
        assert list_requests(seen) == [200, 200]
        assert source.static_list._lists == {}
