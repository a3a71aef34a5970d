"""``datasources plugins`` and ``datasources sources``: the installed extensions and the configured sources."""

from __future__ import annotations

import typer
from rich.table import Table

from .output import (
    ConfigOpt,
    JsonOpt,
    StrictOpt,
    _escape,
    _host,
    _print_json,
    _run,
    out,
)


def plugins(json_output: JsonOpt = False, strict: StrictOpt = False) -> None:
    """List installed extensions, the data-source kinds they provide, and any that failed to load."""
    from ..host import Host

    host = _run(lambda: Host(config={"dataSources": []}, strict=strict))
    modules = host.registry.modules
    failures = host.load_errors
    if json_output:
        _print_json(
            {
                "extensions": [
                    {
                        "name": e.name,
                        "version": e.version,
                        "source": e.source,
                        "dataSources": [{"namespace": ns, "type": modules[ns].definition.type} for ns in e.namespaces],
                    }
                    for e in host.registry.extensions
                ],
                "errors": [
                    {"extension": f.extension, "version": f.version, "stage": f.stage, "error": f.message}
                    for f in failures
                ],
            }
        )
    else:
        table = Table(title="Extensions", title_justify="left", header_style="bold")
        for header in ("extension", "version", "namespace", "type"):
            table.add_column(header)
        for ext in host.registry.extensions:
            if not ext.namespaces:
                table.add_row(ext.name, ext.version or "", "", "")
            for ns in ext.namespaces:
                table.add_row(ext.name, ext.version or "", ns, modules[ns].definition.type)
        out.print(table)
        if failures:
            bad = Table(title="Extensions that failed to load", title_justify="left", header_style="bold red")
            for header in ("extension", "version", "stage", "error"):
                bad.add_column(header, overflow="fold")
            for f in failures:
                bad.add_row(f.extension, f.version or "", f.stage, _escape(f.message))
            out.print(bad)
    if failures:
        raise typer.Exit(1)


def sources(config: ConfigOpt = None, json_output: JsonOpt = False, strict: StrictOpt = False) -> None:
    """List the configured data sources."""
    host = _host(config, strict)
    infos = host.data_sources
    if json_output:
        _print_json(
            [
                {
                    "sourceName": i.source_name,
                    "namespace": i.namespace,
                    "friendlyName": i.friendly_name,
                    "type": i.type,
                    "active": i.active,
                    "error": i.error,
                }
                for i in infos
            ]
        )
        return
    table = Table(title="Data sources", title_justify="left", header_style="bold")
    for header in ("", "sourceName", "friendlyName", "namespace", "type"):
        table.add_column(header)
    for i in infos:
        marker = "*" if i.active else ("!" if i.error else "")
        table.add_row(marker, i.source_name, i.friendly_name, i.namespace, i.type or "")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``plugins`` and ``sources`` to the ``datasources`` command."""
    app.command("plugins")(plugins)
    app.command("sources")(sources)
