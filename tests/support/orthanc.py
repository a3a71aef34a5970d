"""A real, throw-away Orthanc with its DICOMweb plugin, on 127.0.0.1, for tests and benchmarks.

Debian's ``orthanc`` (1.10) and ``orthanc-dicomweb``. Orthanc 1.10 cannot be told which address
to bind, so a tiny ``LD_PRELOAD`` shim (compiled here with ``cc``) turns its wildcard bind into
a loopback bind. ``DicomWeb.Host`` is pinned to ``127.0.0.1:PORT``, or the plugin builds its
BulkDataURIs from the request's Host header. Without Orthanc, :func:`ensure_installed` installs
the packages with apt-get when running as root (with a policy-rc.d that keeps the system
service from starting), so the README's test command works on a fresh Debian machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

__all__ = ["OrthancError", "OrthancServer", "ensure_installed", "orthanc_available"]

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)

SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in; memcpy(&in, addr, sizeof in);
        if (in.sin_addr.s_addr == htonl(INADDR_ANY)) {
            in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&in, sizeof in);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6; memcpy(&in6, addr, sizeof in6);
        if (memcmp(&in6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            in6.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
        }
    }
    return real_bind(fd, addr, len);
}
"""


class OrthancError(RuntimeError):
    pass


def _plugin() -> str | None:
    for candidate in PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return None


def orthanc_available() -> bool:
    return os.access(ORTHANC, os.X_OK) and _plugin() is not None


def ensure_installed() -> bool:
    """Install Debian's orthanc + orthanc-dicomweb if missing and we are root; True if available."""
    if orthanc_available():
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None or os.environ.get("DATASOURCES_NO_APT") == "1":
        return False
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "orthanc", "orthanc-dicomweb"]
        if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    finally:
        if created:
            policy.unlink(missing_ok=True)
    return orthanc_available()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shim(folder: Path) -> str | None:
    cache = Path(tempfile.gettempdir()) / "datasources-tests-bind-loopback.so"
    if cache.exists():
        return str(cache)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    source = folder / "bind_loopback.c"
    source.write_text(SHIM_SOURCE)
    built = folder / "bind_loopback.so"
    result = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(built), str(source), "-ldl"], capture_output=True)
    if result.returncode != 0:
        return None
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    shutil.copy(built, tmp)
    os.replace(tmp, cache)
    return str(cache)


class OrthancServer:
    """One Orthanc process with a fresh database; a context manager."""

    def __init__(self, *, user: str | None = None, password: str | None = None, folder: Path | None = None) -> None:
        if not orthanc_available():
            raise OrthancError(
                "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
            )
        self.user = user
        self.password = password
        self._owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="orthanc-")) if folder is None else folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self._process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        if user:
            self.session.auth = (user, password or "")

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password or "") if self.user else None

    def start(self, timeout: float = 30) -> OrthancServer:
        name = f"datasources-tests-{uuid.uuid4().hex[:12]}"
        db = self.folder / "db"
        db.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": name,
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "StorageCompression": False,
            "SyncStorageArea": False,
            "Plugins": [_plugin()],
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.user),
            "SslEnabled": False,
            "HttpDescribeErrors": True,
            "KeepAlive": True,
            "HttpThreadsCount": 20,
            "DicomServerEnabled": False,
            "WebDavEnabled": False,
            "ExecuteLuaEnabled": False,
            "StorageAccessOnFind": "Always",
            "OverwriteInstances": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Host": f"127.0.0.1:{self.port}",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        if self.user:
            config["RegisteredUsers"] = {self.user: self.password or ""}
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        env = dict(os.environ)
        shim = _shim(self.folder)
        if shim:
            env["LD_PRELOAD"] = shim
        self._log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [ORTHANC, str(config_path)], stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise OrthancError(f"Orthanc exited at start:\n{self.log_tail()}")
            try:
                answer = self.session.get(f"{self.url}/system", timeout=2)
                if answer.ok and answer.json().get("Name") == name:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise OrthancError(f"Orthanc not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.folder / "orthanc.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        self._process = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data --------------------------------------------------------------------------------

    def upload(self, items: Iterable[bytes | Path]) -> list[str]:
        """Orthanc's own REST ``POST /instances`` (not STOW): fast loading of test data."""
        ids = []
        for item in items:
            body = item.read_bytes() if isinstance(item, Path) else item
            answer = self.session.post(f"{self.url}/instances", data=body, timeout=60)
            if not answer.ok:
                raise OrthancError(f"upload refused: {answer.status_code} {answer.text[:200]}")
            ids.append(answer.json()["ID"])
        return ids

    def clear(self) -> None:
        """Delete every study (the DICOMweb API has no DELETE; Orthanc's REST API has)."""
        for study_id in self.session.get(f"{self.url}/studies", timeout=30).json():
            self.session.delete(f"{self.url}/studies/{study_id}", timeout=30)

    def study_count(self) -> int:
        return len(self.session.get(f"{self.url}/studies", timeout=30).json())
