"""Shared output of the ``datasources`` command: consoles, options, tables, JSON, progress, errors, the host.

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

from ..errors import DataSourcesError


class PipeClosed(Exception):
    """stdout's reader went away (``| head``): ``main`` exits quietly.

    Not an ``OSError``: click would turn one with ``EPIPE`` into ``sys.exit(1)``.
    """


class _Console(Console):
    """A rich console that lets a broken pipe reach ``main`` (rich's own exits 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise PipeClosed


# piped output is not a terminal: rich would squeeze tables into 80 columns, so give it room
out = _Console(soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err = _Console(stderr=True, soft_wrap=True)

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
    """Search results as JSON or a table.

    A backend of a source over several (merge) that failed is said once, by the source's own
    warning on the ``datasources.merge`` logger, shown on stderr as ``warning: ...``.
    """
    if json_output:
        _print_json(rows)
    else:
        out.print(_table(title, rows, columns))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _run(func: Callable[[], T]) -> T:
    """``func()``; a data-source error is one line and exit 1 (a bad query, typed by the user: exit 2)."""
    from ..errors import InvalidQueryError

    try:
        return func()
    except InvalidQueryError as exc:
        raise _fail(_escape(str(exc)), code=2) from None
    except DataSourcesError as exc:
        raise _fail(_escape(str(exc))) from None
    except OSError as exc:
        raise _fail(_escape(f"{type(exc).__name__}: {exc}")) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _host(config: Path | None, strict: bool = False) -> Any:
    """The host of ``--config`` given after the command, else before it, else the bundled sample."""
    from ..host import Host
    from .globalopts import STATE

    chosen = config if config is not None else STATE.config
    return _run(lambda: Host.from_config(chosen, strict=strict))


def _print_json(data: Any) -> None:
    import orjson

    try:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise PipeClosed from None


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
