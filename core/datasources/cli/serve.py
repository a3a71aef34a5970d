"""``datasources serve``: the configured sources as DICOMweb, with a study browser at ``/``.

The bearer token is read from an environment variable named with ``--token-env``, never from
the command line (a command line is visible to every user of the machine in ``ps``) and never
printed or logged. ``--port 0`` picks a free port; the first line printed names the address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from typing import Annotated

import typer

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
LogOpt = Annotated[str, typer.Option("--log-level", help="critical, error, warning, info or debug.")]


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    log_level: LogOpt = "info",
    strict: StrictOpt = False,
) -> None:
    """Serve the configured sources as DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and a study browser."""
    try:
        import uvicorn

        from ..gateway.app import create_app
    except ImportError as exc:
        raise _fail(f"the gateway needs {exc.name}: pip install 'datasources[gateway]'") from None
    level = log_level.lower()
    if level not in ("critical", "error", "warning", "info", "debug"):
        raise _fail(f"--log-level {log_level!r}: use critical, error, warning, info or debug", code=2)
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
    host = _host(config, strict)
    app = _run(
        lambda: create_app(
            host,
            sources=source or None,
            token=token,
            cors_origins=cors or None,
            default_source=default,
            metadata_ttl=metadata_ttl,
            public_url=public_url,
        )
    )
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
    sys.stdout.flush()
    logging.basicConfig(level=level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=level, server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``datasources`` command."""
    app.command("serve")(serve)
