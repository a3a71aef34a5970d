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
AllowedHostsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-hosts",
        help="A Host header this gateway answers (repeatable; * for any; others get 400, against DNS rebinding). "
        "Default: the --host address, localhost and --public-url's host.",
    ),
]
MaxStowBytesOpt = Annotated[
    int, typer.Option("--max-stow-bytes", help="Largest STOW-RS body taken, in bytes (413 past it).", min=1)
]
MaxStowPartsOpt = Annotated[
    int, typer.Option("--max-stow-parts", help="Most parts a STOW-RS body may hold (413 past it).", min=1)
]
SpoolOpt = Annotated[
    int,
    typer.Option(
        "--stow-spool-bytes", help="A STOW-RS body past this many bytes is spooled to a temporary file.", min=0
    ),
]
LogOpt = Annotated[
    str | None, typer.Option("--log-level", "-v", help="critical, error, warning, info or debug. Default: info.")
]


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


def default_allowed_hosts(listen_host: str, public_url: str | None) -> list[str]:
    """The Host headers answered by default: the bind address, localhost (and the loopback
    literals when bound to loopback), and the public URL's host."""
    from urllib.parse import urlsplit

    hosts = [listen_host.strip("[]"), "localhost"]
    if _is_loopback(listen_host):
        hosts += ["127.0.0.1", "::1"]
    if public_url:
        name = urlsplit(public_url).hostname
        if name:
            hosts.append(name)
    return list(dict.fromkeys(hosts))


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
    allowed_hosts: AllowedHostsOpt = None,
    max_stow_bytes: MaxStowBytesOpt = 1 << 30,
    max_stow_parts: MaxStowPartsOpt = 10_000,
    stow_spool_bytes: SpoolOpt = 16 << 20,
    log_level: LogOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Serve the configured sources as DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and a study browser."""
    try:
        import uvicorn

        from ..gateway.app import create_app
    except ImportError as exc:
        raise _fail(
            _escape(
                f"the gateway needs {exc.name}, from the gateway extra: pip install 'datasources[gateway]' "
                "(from a checkout of the repository: pip install -e '.[gateway]')"
            )
        ) from None
    level = parse_level(log_level) or STATE.log_level or "info"
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
            allowed_hosts=allowed_hosts or default_allowed_hosts(listen_host, public_url),
            max_stow_bytes=max_stow_bytes,
            max_stow_parts=max_stow_parts,
            stow_spool_bytes=stow_spool_bytes,
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
    logging.getLogger().setLevel(level.upper())
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
