"""Real DIMSE peers for the dimse source's tests: Orthanc's DICOM port and dcmtk's ``dcmqrscp``.

``OrthancDimse`` is the suite's :class:`OrthancServer` with ``DicomServerEnabled`` on a free
loopback port (the same bind shim keeps it on 127.0.0.1) and ``DicomModalities`` naming the
source's AE (with its storage SCP port, for C-MOVE). ``Dcmqrscp`` writes dcmqrscp's own
configuration file (an AE with a storage area, a host table naming the source for C-MOVE)
and loads data by C-STORE, as a modality would.

Without dcmtk the tests skip, except under ``DATASOURCES_REQUIRE_DCMTK=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .orthanc import OrthancServer, _die_with_parent, build_shim, ensure_debian_packages
from .ports import free_port

__all__ = ["DCMQRSCP", "Dcmqrscp", "OrthancDimse", "SOURCE_AE", "c_store", "dcmtk_available", "wait_for_port"]

DCMQRSCP = shutil.which("dcmqrscp") or "/usr/bin/dcmqrscp"
SOURCE_AE = "DATASOURCES"


def dcmtk_available() -> bool:
    if os.access(DCMQRSCP, os.X_OK):
        return True
    ensure_debian_packages(["dcmtk"])
    return os.access(DCMQRSCP, os.X_OK)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def c_store(port: int, called_ae: str, datasets: list[Any], calling_ae: str = "LOADER") -> list[int]:
    """C-STORE datasets to a peer (how a modality loads a PACS); the status of each."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets})
    for uid, ts in pairs:
        ae.add_requested_context(uid, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"cannot associate with {called_ae}@127.0.0.1:{port}")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


class OrthancDimse(OrthancServer):
    """Orthanc with its DICOM port open on 127.0.0.1 and the source's AE registered."""

    def __init__(self, *, aet: str = "ORTHANC", source_ae: str = SOURCE_AE, storage_port: int | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.aet = aet
        self.dicom_port = free_port()
        self.source_ae = source_ae
        self.storage_port = storage_port or free_port()

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.update(
            {
                "DicomServerEnabled": True,
                "DicomAet": self.aet,
                "DicomPort": self.dicom_port,
                "DicomCheckCalledAet": True,
                "DicomCheckModalityHost": False,
                "DicomAlwaysAllowEcho": True,
                "DicomAlwaysAllowStore": True,
                "DicomScpTimeout": 30,
                "DicomModalities": {
                    "datasources": {
                        "AET": self.source_ae,
                        "Host": "127.0.0.1",
                        "Port": self.storage_port,
                        "AllowEcho": True,
                        "AllowFind": True,
                        "AllowGet": True,
                        "AllowMove": True,
                        "AllowStore": True,
                    },
                    "loader": ["LOADER", "127.0.0.1", 1],
                },
            }
        )
        return config

    def start(self, timeout: float = 30) -> OrthancDimse:
        super().start(timeout)
        wait_for_port(self.dicom_port, timeout)
        return self

    def source_config(self, **extra: Any) -> dict[str, Any]:
        """The dimse source's configuration for this server."""
        return {"host": "127.0.0.1", "port": self.dicom_port, "calledAETitle": self.aet,
                "callingAETitle": self.source_ae, **extra}  # fmt: skip


class Dcmqrscp:
    """One dcmqrscp with its own configuration file and storage area; a context manager."""

    def __init__(self, *, aet: str = "DCMQRSCP", source_ae: str = SOURCE_AE, storage_port: int | None = None) -> None:
        self.aet = aet
        self.source_ae = source_ae
        self.port = free_port()
        self.storage_port = storage_port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="dcmqrscp-"))
        self._process: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        db = self.folder / "db"
        return (
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 65536\nMaxAssociations = 16\n\n"
            f"HostTable BEGIN\nsource = ({self.source_ae}, 127.0.0.1, {self.storage_port})\n"
            f"loader = (LOADER, 127.0.0.1, 1)\nHostTable END\n\n"
            "VendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\n{self.aet} {db} RW (500, 1024mb) ANY\nAETable END\n"
        )

    def start(self, timeout: float = 20) -> Dcmqrscp:
        (self.folder / "db").mkdir(exist_ok=True)
        config = self.folder / "dcmqrscp.cfg"
        config.write_text(self.config_text())
        env = dict(os.environ)
        shim = build_shim(self.folder)
        if shim:
            env["LD_PRELOAD"] = shim  # its wildcard bind becomes 127.0.0.1
        self._log = open(self.folder / "dcmqrscp.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [DCMQRSCP, "-c", str(config), "-XF", "-XM", "-v"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            wait_for_port(self.port, timeout)
        except RuntimeError:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"dcmqrscp did not start:\n{tail}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.folder / "dcmqrscp.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Dcmqrscp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def upload(self, datasets: list[Any]) -> list[int]:
        return c_store(self.port, self.aet, datasets)

    def source_config(self, **extra: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "calledAETitle": self.aet,
                "callingAETitle": self.source_ae, **extra}  # fmt: skip
