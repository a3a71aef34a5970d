"""``datasources plugins`` and ``datasources sources``: the installed extensions and the configured sources."""

from __future__ import annotations

from typing import Any

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
    health = {i.source_name: _health(host, i.source_name) for i in infos if not i.error}
    health = {name: state for name, state in health.items() if state is not None}
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
                    "health": health.get(i.source_name),
                }
                for i in infos
            ]
        )
        return
    table = Table(title="Data sources", title_justify="left", header_style="bold")
    headers = ["", "sourceName", "friendlyName", "namespace", "type"] + (["health"] if health else [])
    for header in headers:
        table.add_column(header)
    for i in infos:
        marker = "*" if i.active else ("!" if i.error else "")
        row = [marker, i.source_name, i.friendly_name, i.namespace, i.type or ""]
        if health:
            state = health.get(i.source_name)
            row.append("" if state is None else _escape(_health_text(state)))
        table.add_row(*row)
    out.print(table)


def _health(host: Any, name: str) -> dict[str, Any] | None:
    """A source's own health check (its ``health`` helper, e.g. the dimse source's C-ECHO), or None."""
    from ..errors import DataSourcesError, safe_message

    try:
        data_source = host.get_data_source(name)
        if "health" not in data_source.helpers:
            return None
        return dict(data_source.helpers.health())
    except DataSourcesError as exc:  # a peer that is down already fails the source's initialize
        return {"ok": False, "error": safe_message(exc)}


def _health_text(state: dict[str, Any]) -> str:
    if state.get("ok"):
        latency = state.get("latencyMs")
        return "healthy" + (f" ({latency} ms)" if latency is not None else "")
    return f"unhealthy: {state.get('error') or 'no answer'}"


def register(app: typer.Typer) -> None:
    """Add ``plugins`` and ``sources`` to the ``datasources`` command."""
    app.command("plugins")(plugins)
    app.command("sources")(sources)
