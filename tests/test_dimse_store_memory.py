"""The dimse source's C-STORE of memory-mapped views under tracemalloc, in a module of its own.

It is alone here because tracemalloc traces every thread's allocations: the pooled, idle
associations of test_dimse.py's module host (pynetdicom polls each one every millisecond, in two
threads) made this C-STORE take 25-50 s there, 3 s in a process where only its own host is open.
The instances and the bound are the ones it always had.
"""

from __future__ import annotations

import io
from typing import Any

import pydicom
from support.dimse_fixtures import *  # noqa: F403
from support.dimse_fixtures import dimse_host


def test_store_dicom_takes_memoryviews_one_instance_in_memory_at_a_time(orthanc_pacs: Any, tmp_path: Any) -> None:
    """Views of a mapped file (the gateway's STOW spool) are C-STOREd without a copy of them all."""
    import mmap
    import tracemalloc

    from support.dicomgen import StudySpec, dataset_to_bytes, make_study

    host = dimse_host(orthanc_pacs.server.source_config(cache={"folder": str(tmp_path)}))
    new = make_study(StudySpec("dimse-views", patient_id="PAT7778", n_instances=25, rows=256, cols=256))
    blobs = [dataset_to_bytes(ds) for ds in new]
    host.active_data_source.store.dicom(new.pop(0))  # imports and the first association: not measured
    blobs.pop(0)
    (tmp_path / "spool").write_bytes(b"".join(blobs))
    with open(tmp_path / "spool", "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        whole, views, at = memoryview(mapped), [], 0
        for blob in blobs:
            views.append(whole[at : at + len(blob)])
            at += len(blob)
        tracemalloc.start()
        try:
            result = host.active_data_source.store.dicom(views)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        for view in [*views, whole]:
            view.release()
    assert [o.status for o in result.outcomes] == ["stored"] * len(new), [o.reason for o in result.outcomes]
    assert peak < sum(map(len, blobs)) / 4, (peak, sum(map(len, blobs)))
    server = orthanc_pacs.server
    for ds in new:
        (found,) = server.session.post(f"{server.url}/tools/lookup", data=ds.SOPInstanceUID, timeout=30).json()
        received = pydicom.dcmread(io.BytesIO(server.session.get(f"{server.url}/instances/{found['ID']}/file").content))
        assert received.PixelData == ds.PixelData and received.SOPInstanceUID == ds.SOPInstanceUID
