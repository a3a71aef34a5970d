#!/usr/bin/env python3
"""The dimse source against bare pynetdicom and Orthanc's DICOMweb, in one run.

One real Orthanc (DICOM port and DICOMweb on 127.0.0.1, as the tests start it) holding a
study of 2 series x 100 instances (64x64, 16-bit) and 300 single-instance studies. Interleaved:

- cold metadata: ``retrieve.series.metadata`` on a fresh host with an empty cache folder (C-FIND
  study/series/instances, C-GET, cache writes, naturalize, store) vs the floor for DIMSE: one
  pynetdicom association and one study-level C-GET keeping the instances in memory. Goal <= 1.3x.
- warm metadata: the same on a fresh host whose cache holds the study vs Orthanc's DICOMweb
  ``GET /studies/{uid}/metadata`` + ``orjson.loads``. Goal <= 0.5x.
- study search: ``query.studies.search()`` over every study vs a bare pynetdicom C-FIND with
  the same identifier on an open association. Goal <= 1.2x.

    python bench/bench_dimse.py [--runs 7] [--record]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from datasources.query import parse_search  # noqa: E402
from datasources_default.dimse.find import build_identifier  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation  # noqa: E402
from support.dicomgen import StudySpec, dataset_to_bytes, iter_study  # noqa: E402
from support.dimse_fixtures import dimse_host  # noqa: E402
from support.dimse_peers import OrthancDimse  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
GET = "1.2.840.10008.5.1.4.1.2.2.3"


def run(methods: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    for method in methods.values():
        method()  # warm up: imports, Orthanc's caches
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(runs):
        for name, method in methods.items():
            start = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - start)
    return times


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--search-only", action="store_true", help="only the search measure (fast, more runs)")
    args = parser.parse_args()
    study = StudySpec("bench-dimse", n_series=2, n_instances=100, rows=64, cols=64)
    others = [StudySpec(f"bench-dimse-{i}", patient_name=f"PATIENT^{i:04d}", patient_id=f"P{i:04d}", n_instances=1)
              for i in range(300)]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-dimse-"))
    with OrthancDimse(folder=work / "orthanc") as server:
        batch = [dataset_to_bytes(ds) for spec in [study, *others] for ds in iter_study(spec)]
        for i in range(0, len(batch), 200):
            server.upload(batch[i : i + 200], workers=2)
        config = server.source_config(maxAssociations=4)
        uid = study.study_uid

        def cold() -> None:
            folder = Path(tempfile.mkdtemp(dir=work))
            host = dimse_host({**config, "cache": str(folder)})
            host.active_data_source.retrieve.series.metadata(uid)
            assert sum(len(s["instances"]) for s in host.metadata_store.get_study(uid)["series"]) == 200
            host.active_data_source.helpers.close()
            shutil.rmtree(folder)

        def bare_get() -> None:
            ae = AE(ae_title=server.source_ae)
            ae.add_requested_context(GET)
            ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
            role = SCP_SCU_RoleSelectionNegotiation()
            role.sop_class_uid, role.scu_role, role.scp_role = CT, False, True
            received: list[bytes] = []

            def store(event: object) -> int:
                received.append(event.encoded_dataset())  # type: ignore[attr-defined]
                return 0

            from pydicom import Dataset
            from pynetdicom import evt

            assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet, ext_neg=[role],
                                 evt_handlers=[(evt.EVT_C_STORE, store)])  # fmt: skip
            query = Dataset()
            query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", uid
            for _ in assoc.send_c_get(query, GET):
                pass
            assoc.release()
            assert len(received) == 200

        warm_cache = str(work / "warm")
        if not args.search_only:
            warm_host = dimse_host({**config, "cache": warm_cache})
            warm_host.active_data_source.retrieve.series.metadata(uid)

        def warm() -> None:
            host = dimse_host({**config, "cache": warm_cache})
            host.active_data_source.retrieve.series.metadata(uid)
            assert sum(len(s["instances"]) for s in host.metadata_store.get_study(uid)["series"]) == 200
            host.active_data_source.helpers.close()

        def orthanc_metadata() -> None:
            answer = server.session.get(f"{server.dicomweb_url}/studies/{uid}/metadata", timeout=60)
            assert len(orjson.loads(answer.content)) == 200

        methods = {"cold": cold, "bare C-GET": bare_get, "warm": warm, "Orthanc DICOMweb": orthanc_metadata}
        meta = {} if args.search_only else run(methods, args.runs)

        search_host = dimse_host({**config, "cache": str(work / "search")})
        source = search_host.active_data_source
        identifier, _ = build_identifier(parse_search("study"), "study", {})
        ae = AE(ae_title=server.source_ae)
        ae.add_requested_context(FIND)
        assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)

        def ours_search() -> None:
            assert len(source.query.studies.search()) == 301

        def bare_find() -> None:
            found = [ds for status, ds in assoc.send_c_find(identifier, FIND) if ds is not None]
            assert len(found) == 301

        search = run({"dimse source": ours_search, "bare C-FIND": bare_find}, args.runs)
        assoc.release()

    lines = [
        f"## dimse source vs pynetdicom and Orthanc's DICOMweb, {dt.date.today().isoformat()}",
        "",
        f"`python bench/bench_dimse.py --runs {args.runs}{' --search-only' if args.search_only else ''} --record`, "
        "one Orthanc 1.10 on loopback "
        "(DICOM port and DICOMweb), 2 cores shared by server and client; a study of 2 series x 100 "
        "instances (64x64, 16-bit), 301 studies for search. Medians.",
        "",
        "| measure | ours ms | peer | peer ms | ratio | goal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if meta:
        lines += [
            f"| study metadata, cold (empty cache) | {ms(meta['cold']):.1f} | bare pynetdicom C-GET | "
            f"{ms(meta['bare C-GET']):.1f} | {ms(meta['cold']) / ms(meta['bare C-GET']):.2f}x | <= 1.3x |",
            f"| study metadata, warm (cached) | {ms(meta['warm']):.1f} | Orthanc DICOMweb metadata | "
            f"{ms(meta['Orthanc DICOMweb']):.1f} | {ms(meta['warm']) / ms(meta['Orthanc DICOMweb']):.2f}x | <= 0.5x |",
        ]
    lines += [
        f"| study search, 301 studies | {ms(search['dimse source']):.1f} | bare pynetdicom C-FIND | "
        f"{ms(search['bare C-FIND']):.1f} | {ms(search['dimse source']) / ms(search['bare C-FIND']):.2f}x | <= 1.2x |",
        "",
    ]
    print("\n".join(lines))
    if args.record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write("\n" + "\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
