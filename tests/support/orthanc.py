"""A real, throw-away Orthanc with its DICOMweb plugin, on 127.0.0.1, for tests and benchmarks.

Debian's ``orthanc`` (1.10) and ``orthanc-dicomweb`` (1.7). Orthanc 1.10 cannot be told which
address to bind, so a tiny ``LD_PRELOAD`` shim (compiled once with ``cc`` and cached in a private
folder under the temp dir) turns its wildcard bind into a loopback bind; ``RemoteAccessAllowed``
is off as a second fence. ``DicomWeb.Host`` is pinned to ``127.0.0.1:PORT``, or the plugin builds
RetrieveURLs and BulkDataURIs from the request's Host header. Readiness is a ``Name`` unique to
this start showing up in ``GET /system``, so another server on a recycled port is never mistaken
for ours. Without Orthanc, :func:`ensure_installed` installs the packages with apt-get when
running as root (with a policy-rc.d that keeps the system service from starting).

    with OrthancServer(user="alice", password="pw") as server:
        server.upload([path, raw_bytes, dataset])        # Orthanc REST POST /instances
        requests.get(f"{server.dicomweb_url}/studies", auth=server.auth)
        server.clear()                                   # DELETE /studies/{id} for each study
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .ports import free_port

__all__ = [
    "OrthancError",
    "OrthancServer",
    "Uploadable",
    "ensure_debian_packages",
    "ensure_installed",
    "orthanc_available",
]

ORTHANC = "/usr/sbin/Orthanc"
PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",)

SHIM_SOURCE = r"""
/* LD_PRELOAD shim: wildcard binds (0.0.0.0 / ::) become loopback binds. */
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

# What upload() takes: Part 10 bytes, a path to a .dcm file (str or PathLike), or a pydicom Dataset.
Uploadable = Any

_LIVE: set[OrthancServer] = set()
_LIVE_LOCK = threading.Lock()


class OrthancError(RuntimeError):
    """Orthanc could not be started, or refused a request of the test support."""


def _plugin() -> str | None:
    for candidate in PLUGIN_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return None


def orthanc_available() -> bool:
    """True when ``/usr/sbin/Orthanc`` and the DICOMweb plugin are installed."""
    return os.access(ORTHANC, os.X_OK) and _plugin() is not None


def ensure_debian_packages(packages: list[str]) -> bool:
    """``apt-get install`` the packages when we are root (a fresh Debian machine); False if we cannot.

    A policy-rc.d that forbids service starts is in place meanwhile, so a package's postinst never
    starts a system service (Orthanc's would listen on 0.0.0.0:8042/4242).
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None or os.environ.get("DATASOURCES_NO_APT") == "1":
        return False
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
            return subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode == 0
    finally:
        if created:
            policy.unlink(missing_ok=True)
    return True


def ensure_installed() -> bool:
    """Install Debian's orthanc + orthanc-dicomweb if missing and we are root; True if available."""
    if orthanc_available():
        return True
    ensure_debian_packages(["orthanc", "orthanc-dicomweb"])
    return orthanc_available()


def _private_cache_dir() -> Path | None:
    """``$TMPDIR/datasources-tests-<uid>``, ours alone (0700); None if someone else owns it."""
    folder = Path(tempfile.gettempdir()) / f"datasources-tests-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return folder


def build_shim(folder: Path) -> str | None:
    """The bind shim ``.so``: from the cache if built before (keyed by the source), else with cc."""
    digest = hashlib.sha256(SHIM_SOURCE.encode()).hexdigest()[:16]
    cache_dir = _private_cache_dir()
    cached = cache_dir / f"bind_loopback-{digest}.so" if cache_dir else None
    if cached is not None and cached.is_file():
        return str(cached)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    source = folder / "bind_loopback.c"
    source.write_text(SHIM_SOURCE)
    built = folder / "bind_loopback.so"
    cmd = [cc, "-shared", "-fPIC", "-O2", "-o", str(built), str(source), "-ldl"]
    if subprocess.run(cmd, capture_output=True, timeout=120).returncode != 0:
        return None
    if cached is None:
        return str(built)
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.copy(built, tmp)
    os.replace(tmp, cached)  # atomic: a parallel session sees the old state or the whole file
    return str(cached)


def listening_addresses(port: int) -> set[str]:
    """``"127.0.0.1"``, ``"0.0.0.0"``, ``"::1"``... listening on TCP ``port`` (from /proc/net)."""
    found: set[str] = set()
    for name, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux ``PR_SET_PDEATHSIG``: Orthanc gets SIGKILL if the test process dies without cleanup."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


atexit.register(_kill_leftovers)


class OrthancServer:
    """One Orthanc process with a fresh, private database; a context manager (``start``/``stop``).

    ``url`` is Orthanc's REST root, ``dicomweb_url`` the DICOMweb root (``url + "/dicom-web"``),
    ``auth`` the ``(user, password)`` tuple for requests or None, ``session`` a requests session
    already carrying that auth (and ignoring proxy variables: the traffic is loopback only).
    """

    def __init__(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        folder: Path | str | None = None,
        port: int | None = None,
        die_with_parent: bool = True,
    ) -> None:
        if not orthanc_available():
            raise OrthancError(
                "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
            )
        self.user = user
        self.password = password if user else None
        self.die_with_parent = die_with_parent and os.name == "posix"
        self._owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="orthanc-")) if folder is None else Path(folder)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.name = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.session = requests.Session()
        self.session.trust_env = False  # no HTTP(S)_PROXY detour for loopback traffic
        if user:
            self.session.auth = (user, password or "")

    def __repr__(self) -> str:  # never the password
        state = "running" if self.running else "stopped"
        return f"<OrthancServer {self.url} user={self.user!r} {state}>"

    @property
    def auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for ``requests(..., auth=...)``, or None without basic auth."""
        return (self.user, self.password or "") if self.user else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config(self) -> dict[str, Any]:
        """The configuration written for this start (``Name`` is set by :meth:`start`)."""
        db = self.folder / "db"
        config: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "StorageCompression": False,
            "SyncStorageArea": False,
            "Plugins": [_plugin()],
            "ConcurrentJobs": 2,
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.user),
            "SslEnabled": False,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": True,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "HttpThreadsCount": 20,
            "HttpRequestTimeout": 60,
            "DicomServerEnabled": False,
            "WebDavEnabled": False,
            "ExecuteLuaEnabled": False,
            "StorageAccessOnFind": "Always",
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
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
        return config

    def start(self, timeout: float = 30) -> OrthancServer:
        """Write the config, start Orthanc, wait until *this* server answers /system and QIDO."""
        if self.running:
            return self
        self.name = f"datasources-tests-{uuid.uuid4().hex[:12]}"
        db = self.folder / "db"
        shutil.rmtree(db, ignore_errors=True)
        db.mkdir(parents=True)
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        env = dict(os.environ)
        shim = build_shim(self.folder)
        if shim:
            env["LD_PRELOAD"] = shim
        self._log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [ORTHANC, str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            # The signal follows the *thread* that started it: start from a long-lived thread.
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = time.monotonic() + timeout
        while not self._answers_as_ours():
            if self._process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise OrthancError(f"Orthanc exited at start:\n{tail}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise OrthancError(f"Orthanc not ready after {timeout}s:\n{tail}")
            time.sleep(0.05)
        answer = self.session.get(f"{self.dicomweb_url}/studies?limit=1", timeout=10)
        if answer.status_code != 200:
            self.stop()
            raise OrthancError(f"the DICOMweb plugin does not answer: HTTP {answer.status_code}")
        return self

    def _answers_as_ours(self) -> bool:
        try:
            answer = self.session.get(f"{self.url}/system", timeout=2)
            return answer.status_code == 200 and answer.json().get("Name") == self.name
        except (requests.RequestException, ValueError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.folder / "orthanc.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL (the database is throw-away), then remove the folder if we made it. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only Orthanc is in it
            process.wait(timeout=30)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.session.close()
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Orthanc's own REST API ----------------------------------------------------------------

    def get(self, path: str) -> Any:
        """JSON of ``GET {url}{path}`` on Orthanc's REST API (not DICOMweb); OrthancError if not 200."""
        answer = self.session.get(f"{self.url}{path}", timeout=60)
        if answer.status_code != 200:
            raise OrthancError(f"GET {path}: HTTP {answer.status_code} {answer.text[:200]}")
        return answer.json()

    def upload(self, items: Uploadable | Iterable[Uploadable], *, workers: int = 1) -> list[str]:
        """Store instances with Orthanc's REST ``POST /instances`` (fast test loading, not STOW).

        ``items``: one or many of Part 10 bytes, a file path, or a pydicom Dataset (encoded with
        preamble and ``DICM``). Returns the Orthanc instance IDs, in order. ``workers > 1``
        uploads in parallel threads.
        """
        if isinstance(items, (bytes, bytearray, memoryview, str, os.PathLike)) or hasattr(items, "SOPInstanceUID"):
            items = [items]
        local = threading.local()

        def one(item: Uploadable) -> str:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.trust_env = False
                session.auth = self.session.auth
            answer = session.post(f"{self.url}/instances", data=_as_bytes(item), timeout=60)
            if answer.status_code != 200:
                raise OrthancError(f"upload refused: HTTP {answer.status_code} {answer.text[:200]}")
            return str(answer.json()["ID"])

        if workers <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, items))

    def clear(self) -> None:
        """Delete every study (DICOMweb has no DELETE; Orthanc's REST ``DELETE /studies/{id}`` has)."""
        for study_id in self.get("/studies"):
            self.delete_study(study_id)

    def delete_study(self, orthanc_id: str) -> None:
        answer = self.session.delete(f"{self.url}/studies/{orthanc_id}", timeout=60)
        if answer.status_code not in (200, 404):
            raise OrthancError(f"DELETE /studies/{orthanc_id}: HTTP {answer.status_code}")

    def study_count(self) -> int:
        return len(self.get("/studies"))

    def instance_count(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def study_uids(self) -> set[str]:
        """StudyInstanceUIDs stored, from Orthanc's REST API (independent of the DICOMweb plugin)."""
        studies = self.get("/studies?expand")
        return {s["MainDicomTags"]["StudyInstanceUID"] for s in studies}


def _as_bytes(item: Uploadable) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        return Path(item).read_bytes()
    if hasattr(item, "SOPInstanceUID"):
        from .dicomgen import dataset_to_bytes

        return dataset_to_bytes(item)
    raise TypeError(f"cannot upload a {type(item).__name__}: give bytes, a path or a pydicom Dataset")
