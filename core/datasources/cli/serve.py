"""``datasources serve``: the configured sources as DICOMweb, with a study browser at ``/``.

The bearer token is read from an environment variable named with ``--token-env``, never from
the command line (a command line is visible to every user of the machine in ``ps``) and never
printed or logged. ``--port 0`` picks a free port; the first line printed names the address.

``--workers N`` runs N uvicorn worker processes on the one listening socket; each builds its
own app through the factory (:mod:`datasources.gateway.factory`) from the same configuration
and options, passed in the environment, and Prometheus metrics are kept in files they share.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Annotated

import orjson
import typer

from .globalopts import STATE, parse_level
from .output import ConfigOpt, StrictOpt, _escape, _fail, _host, _run, err, out

__all__ = ["register", "serve"]

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on. Default: loopback only.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).", min=0, max=65535)]
SourcesOpt = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Serve only this source (repeatable). Default: every configured source."),
]
DefaultOpt = Annotated[
    str | None, typer.Option("--default", help="The source answering at /dicom-web. Default: the default source.")
]
TokenEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--token-env",
        help="Name of the environment variable that holds the bearer token clients must send. Default: no token.",
    ),
]
CorsOpt = Annotated[
    list[str] | None,
    typer.Option("--cors", help="Origin a browser viewer may call from, e.g. http://localhost:3000 (repeatable; *)."),
]
TtlOpt = Annotated[
    float,
    typer.Option("--metadata-ttl", help="Seconds a study's metadata is reused before it is fetched again.", min=0),
]
PublicOpt = Annotated[
    str | None,
    typer.Option(
        "--public-url", help="The gateway's URL as clients see it, behind a reverse proxy (for URLs in answers)."
    ),
]
LogOpt = Annotated[
    str | None, typer.Option("--log-level", "-v", help="critical, error, warning, info or debug. Default: info.")
]
LogFormatOpt = Annotated[str, typer.Option("--log-format", help="text, or json: one JSON object a line.")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Worker processes on the one socket.", min=1, max=64)]
CacheOpt = Annotated[
    str | None,
    typer.Option("--cache", help="redis://host:port/db: a metadata and QIDO cache shared by workers and machines."),
]
PublicHealthOpt = Annotated[
    bool, typer.Option("--public-health", help="Answer /healthz and /readyz without the token (for load balancers).")
]
GraceOpt = Annotated[
    float,
    typer.Option("--graceful-timeout", help="Seconds requests in flight may take to finish at shutdown.", min=0),
]


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(address: str, port: int) -> socket.socket:
    """The listening socket, made as TCP (``IPPROTO_TCP``) with ``TCP_NODELAY``.

    asyncio sets ``TCP_NODELAY`` on accepted connections only when the socket's ``proto`` is
    ``IPPROTO_TCP``; a socket made with ``socket(family, SOCK_STREAM)`` has proto 0, and then
    every answer after the first on a kept-alive connection waited ~40 ms (Nagle's algorithm
    against the client's delayed ACK). Linux copies ``TCP_NODELAY`` from the listening socket
    to the accepted ones too, so both ways hold.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((address.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise _fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    config: ConfigOpt = None,
    listen_host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    source: SourcesOpt = None,
    default: DefaultOpt = None,
    token_env: TokenEnvOpt = None,
    cors: CorsOpt = None,
    metadata_ttl: TtlOpt = 30.0,
    public_url: PublicOpt = None,
    log_level: LogOpt = None,
    strict: StrictOpt = False,
    workers: WorkersOpt = 1,
    cache: CacheOpt = None,
    public_health: PublicHealthOpt = False,
    log_format: LogFormatOpt = "text",
    graceful_timeout: GraceOpt = 10.0,
) -> None:
    """Serve the configured sources as DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and a study browser."""
    try:
        import uvicorn

        from ..gateway.access_log import configure_logging
        from ..gateway.app import create_app
        from ..gateway.factory import CONFIG_VARIABLE, OPTIONS_VARIABLE
    except ImportError as exc:
        raise _fail(
            _escape(
                f"the gateway needs {exc.name}, from the gateway extra: pip install 'datasources[gateway]' "
                "(from a checkout of the repository: pip install -e '.[gateway]')"
            )
        ) from None
    level = parse_level(log_level) or STATE.log_level or "info"
    if log_format not in ("text", "json"):
        raise _fail(f"--log-format {log_format!r}: use text or json", code=2)
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise _fail(f"--token-env {token_env}: that environment variable is not set or is empty", code=2)
    elif not _is_loopback(listen_host):
        err.print(
            f"[yellow]warning:[/] listening on {_escape(listen_host)} without a token: anyone who can reach "
            "this address can read (and store into) the served sources; see --token-env",
            highlight=False,
        )
    options = {
        "sources": source or None,
        "cors_origins": cors or None,
        "default_source": default,
        "metadata_ttl": metadata_ttl,
        "public_url": public_url,
        "cache": cache,
        "public_health": public_health,
    }
    host = _host(config, strict)
    app = _run(lambda: create_app(host, token=token, **options))  # checks everything before any worker starts
    gateway = app.state.gateway
    sock = _listen(listen_host, port)
    bound = sock.getsockname()[1]
    shown = f"[{listen_host.strip('[]')}]" if ":" in listen_host else listen_host
    base = f"http://{shown}:{bound}"
    out.print(f"datasources gateway on {base}  (study browser: {base}/)", highlight=False)
    for name in gateway.sources:
        marker = "  (default, also at /dicom-web)" if name == gateway.default_source else ""
        out.print(f"  {name}: {base}/{name}/dicom-web{marker}", highlight=False)
    if token is not None:
        out.print(f"  clients must send Authorization: Bearer <the value of ${token_env}>", highlight=False)
    if workers > 1:
        out.print(f"  {workers} worker processes", highlight=False)
    sys.stdout.flush()
    configure_logging(log_format, level)
    logging.getLogger().setLevel(level.upper())
    common = {
        "log_level": level,
        "log_config": None,  # the gateway's handlers (configure_logging), not uvicorn's dictConfig
        "access_log": False,  # ours masks secret query values; uvicorn's prints them
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": graceful_timeout,
    }
    try:
        if workers == 1:
            uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        # each worker imports the factory and reads these (the token stays in its own variable)
        metrics_dir = tempfile.mkdtemp(prefix="datasources-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ[CONFIG_VARIABLE] = str(config.resolve()) if config is not None else ""
        os.environ[OPTIONS_VARIABLE] = orjson.dumps(
            {**options, "token_env": token_env, "log_format": log_format, "log_level": level, "strict": strict}
        ).decode()
        try:
            server_config = uvicorn.Config("datasources.gateway:create_app", factory=True, workers=workers, **common)
            Multiprocess(server_config, sockets=[sock]).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``datasources`` command."""
    app.command("serve")(serve)
