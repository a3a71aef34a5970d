"""The ``datasources`` command line: list extensions and sources, search, show metadata.

Errors are one clear line on stderr and a non-zero exit (1 for a data-source error,
2 for a usage error), never a traceback. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .errors import DataSourcesError

app = typer.Typer(
    name="datasources",
    help="A plugin host for medical-imaging data sources (OHIF's DataSource contract).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# piped output is not a terminal: rich would squeeze tables into 80 columns, so give it room
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file (JSON, YAML or TOML). Default: the bundled sample."),
]
SourceOpt = Annotated[str | None, typer.Option("--source", "-s", help="Data source name. Default: the default source.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on any broken extension instead of skipping it.")]

T = TypeVar("T")


def _progress_bar() -> Any:
    """A progress bar on stderr, shown only on a terminal (pipes and logs get the summary alone)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _show(rows: Any, json_output: bool, title: str, columns: Iterable[tuple[str, str]]) -> None:
    """Search results as JSON or a table, after a warning for any backend that failed."""
    _note_failures(rows)
    if json_output:
        _print_json(rows)
    else:
        out.print(_table(title, rows, columns))


def _note_failures(rows: Any) -> None:
    """A source over several backends (merge) returns rows with ``failures``: say which, on stderr."""
    from .errors import safe_message

    for member, exc in (getattr(rows, "failures", None) or {}).items():
        err.print(f"warning: {member} failed: {safe_message(exc)}", markup=False, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _run(func: Callable[[], T]) -> T:
    try:
        return func()
    except DataSourcesError as exc:
        raise _fail(_escape(str(exc))) from None
    except OSError as exc:
        raise _fail(_escape(f"{type(exc).__name__}: {exc}")) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _host(config: Path | None, strict: bool = False) -> Any:
    from .host import Host

    return _run(lambda: Host.from_config(config, strict=strict))


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        if "Alphabetic" in value:
            return str(value["Alphabetic"])
        if "BulkDataURI" in value:
            return "<bulk data>"
        if "InlineBinary" in value:
            return "<inline binary>"
        return str(value)
    if isinstance(value, list | tuple):
        return "\\".join(_text(v) for v in value)
    return str(value)


def _table(title: str, rows: Sequence[Mapping[str, Any]], columns: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    cols = list(columns)
    cells = [[_escape(_text(row.get(key))) for key, _ in cols] for row in rows]
    for i, (key, header) in enumerate(cols):
        if key.endswith("UID"):
            # a UID is copied and pasted: never fold or cut it, whatever the terminal width
            width = max([len(header)] + [len(r[i]) for r in cells])
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for row_cells in cells:
        table.add_row(*row_cells)
    return table


def _parse_filters(pairs: list[str] | None) -> dict[str, str]:
    filters: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"filter {pair!r} is not of the form Keyword=value", code=2)
        filters[key] = value
    return filters


# -- commands ----------------------------------------------------------------------------


@app.command()
def plugins(json_output: JsonOpt = False, strict: StrictOpt = False) -> None:
    """List installed extensions, the data-source kinds they provide, and any that failed to load."""
    from .host import Host

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


@app.command()
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


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def studies(
    filters: Annotated[
        list[str] | None, typer.Argument(help="QIDO filters as Keyword=value, e.g. PatientName='LEE*'.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many studies.")] = None,
    offset: Annotated[int | None, typer.Option(help="Skip this many studies.")] = None,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Search studies: QIDO-RS filters as Keyword=value."""
    host = _host(config)
    params: dict[str, Any] = _parse_filters(filters)
    if limit is not None:
        params["limit"] = limit
    if offset is not None:
        params["offset"] = offset
    ds = _run(lambda: host.get_data_source(source))
    rows = _run(lambda: ds.query.studies.search(params))
    _show(
        rows,
        json_output,
        f"Studies in {ds.name} ({len(rows)})",
        [
            ("PatientName", "Patient"),
            ("PatientID", "ID"),
            ("StudyDate", "Date"),
            ("ModalitiesInStudy", "Modalities"),
            ("StudyDescription", "Description"),
            ("AccessionNumber", "Accession"),
            ("NumberOfStudyRelatedInstances", "Instances"),
            ("StudyInstanceUID", "StudyInstanceUID"),
        ],
    )


@app.command()
def series(
    study_uid: Annotated[str, typer.Argument(help="StudyInstanceUID")],
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the series of a study."""
    host = _host(config)
    ds = _run(lambda: host.get_data_source(source))
    rows = _run(lambda: ds.query.series.search(study_uid))
    _show(
        rows,
        json_output,
        f"Series of {study_uid} ({len(rows)})",
        [
            ("SeriesNumber", "#"),
            ("Modality", "Modality"),
            ("SeriesDescription", "Description"),
            ("NumberOfSeriesRelatedInstances", "Instances"),
            ("SeriesInstanceUID", "SeriesInstanceUID"),
        ],
    )


@app.command()
def metadata(
    study_uid: Annotated[str, typer.Argument(help="StudyInstanceUID")],
    series_uid: Annotated[list[str] | None, typer.Option("--series", help="Only these series (repeatable).")] = None,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Retrieve a study's metadata into the store and show it (series and instances)."""
    host = _host(config)
    ds = _run(lambda: host.get_data_source(source))
    _run(lambda: ds.retrieve.series.metadata(study_uid, series_instance_uids=series_uid or None))
    study = host.metadata_store.get_study(study_uid)
    if study is None:
        raise _fail(f"study {study_uid!r} was not found in {ds.name!r}")
    wanted = set(series_uid or ())
    chosen = [s for s in study["series"] if not wanted or s["SeriesInstanceUID"] in wanted]
    if json_output:
        _print_json({"StudyInstanceUID": study_uid, "series": [dict(s) for s in chosen]})
        return
    for s in chosen:
        instances = list(s.get("instances", []))
        out.print(
            _table(
                f"Series {s.get('SeriesNumber', '')} {_text(s.get('Modality'))} "
                f"{_text(s.get('SeriesDescription'))} ({len(instances)} instances)",
                instances,
                [
                    ("InstanceNumber", "#"),
                    ("SOPInstanceUID", "SOPInstanceUID"),
                    ("Rows", "Rows"),
                    ("Columns", "Cols"),
                    ("NumberOfFrames", "Frames"),
                    ("imageId", "imageId"),
                ],
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``datasources`` script; returns the exit code."""
    _register_optional_commands()
    try:
        # with standalone_mode=False, click returns the code of a typer.Exit instead of raising it
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            return result
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 1
    except typer.BadParameter as exc:  # pragma: no cover
        err.print(str(exc))
        return 2
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, DataSourcesError):
            err.print(f"error: {exc}", markup=False, highlight=False)
            return 1
        raise
    return 0


_optional_registered = False


def _register_optional_commands() -> None:
    """Commands whose modules are optional pieces (store, index, serve) join when present."""
    from importlib import import_module

    global _optional_registered
    if _optional_registered:
        return
    _optional_registered = True
    for name in ("cli_store", "cli_index", "cli_serve", "cli_export"):
        try:
            module = import_module(f".{name}", __package__)
        except ModuleNotFoundError:
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
