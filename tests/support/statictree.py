"""A static DICOMweb tree, laid out as static-wado writes it, and a plain HTTP server for it.

Layout (all JSON gzip-compressed, as static-wado writes it)::

    studies/index.json.gz                                  the study list (QIDO rows)
    studies/{st}/index.json.gz                             the study's own row
    studies/{st}/metadata.gz                               WADO-RS metadata of the whole study
    studies/{st}/series/index.json.gz                      the series list
    studies/{st}/series/{se}/metadata.gz                   WADO-RS metadata of one series
    studies/{st}/series/{se}/instances/index.json.gz       the instance list
    studies/{st}/series/{se}/instances/{sop}/frames/{n}    one frame, raw bytes
    studies/{st}/bulkdata/{sop}-{tag}.raw                  bulk data, referenced as ``bulkdata/...``
                                                           (``relativeResolution: studies``)

The server maps DICOMweb paths onto these files and ignores query strings, as a static host
does; it can send the gzip files with ``Content-Encoding: gzip`` or as they are (a client
must then recognise gzip itself).
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

__all__ = ["build_static_tree", "serve_static_tree"]

STUDY_TAGS = [
    "00080020",
    "00080030",
    "00080050",
    "00080061",
    "00080090",
    "00081030",
    "00100010",
    "00100020",
    "00100030",
    "00100040",
    "0020000D",
    "00200010",
    "00201206",
    "00201208",
]
SERIES_TAGS = ["00080060", "0008103E", "00080021", "00080031", "0020000E", "00200011", "00201209", "0020000D"]
INSTANCE_TAGS = ["00080016", "00080018", "00200013", "00280008", "00280010", "00280011", "0020000E", "0020000D"]


def _write_gz(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same data gives the same bytes
    path.write_bytes(gzip.compress(orjson.dumps(value), mtime=0))


def _pick(ds_json: dict[str, Any], tags: Iterable[str]) -> dict[str, Any]:
    return {t: ds_json[t] for t in tags if t in ds_json}


def _frames(ds: Any) -> list[bytes]:
    if "PixelData" not in ds:
        return []
    data = bytes(ds.PixelData)
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    size = len(data) // count
    return [data[i * size : (i + 1) * size] for i in range(count)]


def build_static_tree(datasets: Iterable[Any], root: Path) -> dict[str, Any]:
    """Write pydicom datasets (uncompressed pixel data) as a static DICOMweb tree under ``root``.

    Returns ``{"studies": {uid: row}, "series": {uid: row}, "metadata": {sop: json}}`` for tests.
    """
    by_study: dict[str, dict[str, list[Any]]] = {}
    for ds in datasets:
        by_study.setdefault(ds.StudyInstanceUID, {}).setdefault(ds.SeriesInstanceUID, []).append(ds)
    out: dict[str, Any] = {"studies": {}, "series": {}, "metadata": {}}
    study_rows = []
    for st, series_map in by_study.items():
        study_dir = root / "studies" / st
        series_rows = []
        study_metadata = []
        modalities: list[str] = []
        for se, instances in series_map.items():
            series_dir = study_dir / "series" / se
            metadata = []
            instance_rows = []
            for ds in instances:

                def bulk(element: Any, ds: Any = ds, study_dir: Path = study_dir) -> str:
                    name = f"{ds.SOPInstanceUID}-{element.tag:08X}.raw"
                    target = study_dir / "bulkdata" / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(bytes(element.value))
                    return f"bulkdata/{name}"

                ds_json = ds.to_json_dict(bulk_data_threshold=256, bulk_data_element_handler=bulk)
                metadata.append(ds_json)
                out["metadata"][ds.SOPInstanceUID] = ds_json
                instance_rows.append(_pick(ds_json, INSTANCE_TAGS))
                for n, frame in enumerate(_frames(ds), start=1):
                    frame_path = series_dir / "instances" / ds.SOPInstanceUID / "frames" / str(n)
                    frame_path.parent.mkdir(parents=True, exist_ok=True)
                    frame_path.write_bytes(frame)
                if ds.Modality not in modalities:
                    modalities.append(ds.Modality)
            _write_gz(series_dir / "metadata.gz", metadata)
            _write_gz(series_dir / "instances" / "index.json.gz", instance_rows)
            study_metadata += metadata
            row = _pick(metadata[0], SERIES_TAGS)
            row["00201209"] = {"vr": "IS", "Value": [len(metadata)]}
            series_rows.append(row)
            out["series"][se] = row
        _write_gz(study_dir / "series" / "index.json.gz", series_rows)
        _write_gz(study_dir / "metadata.gz", study_metadata)
        row = _pick(study_metadata[0], STUDY_TAGS)
        row["00080061"] = {"vr": "CS", "Value": modalities}
        row["00201206"] = {"vr": "IS", "Value": [len(series_rows)]}
        row["00201208"] = {"vr": "IS", "Value": [len(study_metadata)]}
        _write_gz(study_dir / "index.json.gz", [row])
        study_rows.append(row)
        out["studies"][st] = row
    _write_gz(root / "studies" / "index.json.gz", study_rows)
    return out


def _file_for(root: Path, path: str, prefix: str = "") -> Path | None:
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    head = [p for p in prefix.split("/") if p]
    if head:
        if parts[: len(head)] != head:
            return None
        parts = parts[len(head) :]
    elif "dicom-web" in parts:
        parts = parts[parts.index("dicom-web") + 1 :]
    if not parts or parts[0] != "studies" or ".." in parts:
        return None
    base = root.joinpath(*parts)
    last = parts[-1]
    if last in ("studies", "series", "instances") or (last != "metadata" and len(parts) == 2):
        candidate = base / "index.json.gz"
    elif last == "metadata":
        candidate = base.with_name("metadata.gz")
    else:
        candidate = base
    return candidate if candidate.is_file() else None


@contextmanager
def serve_static_tree(
    root: Path, *, content_encoding: bool = True, prefix: str = "", validators: bool = False,
    requests_seen: list[tuple[str, int]] | None = None,
) -> Iterator[str]:  # fmt: skip
    """Serve ``root`` on 127.0.0.1; yields the DICOMweb root URL (``http://127.0.0.1:PORT/dicom-web``).

    With ``prefix`` (``/cdn/archive``) the tree is served under that path instead and only there.
    With ``validators`` each file is sent with an ETag (of its bytes) and Last-Modified (its
    mtime), and a matching ``If-None-Match`` gets a 304, as nginx or S3 answer. Each request's
    path and status is appended to ``requests_seen``.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            target = _file_for(root, self.path, prefix)
            if target is None:
                self.send_error(404)
                return
            body = target.read_bytes()
            if validators:
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                if self.headers.get("If-None-Match") == etag:
                    if requests_seen is not None:  # before answering: the client may look right after
                        requests_seen.append((self.path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
            if requests_seen is not None:
                requests_seen.append((self.path, 200))
            self.send_response(200)
            if validators:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", email.utils.formatdate(target.stat().st_mtime, usegmt=True))
            if target.suffix == ".gz":
                self.send_header("Content-Type", "application/dicom+json")
                if content_encoding:
                    self.send_header("Content-Encoding", "gzip")
            else:
                self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}" + (prefix.rstrip("/") if prefix else "/dicom-web")
        yield url
    finally:
        server.shutdown()
        server.server_close()
