"""``datasources index PATH``: build or update the index of a folder of DICOM files.

The folder is indexed by the default extension's ``dicomlocal`` source, created through
the host as any configured source would be, so the command and a ``dicomlocal`` entry in a
configuration share one index (same root, same ``--cache``). A progress bar shows on a
terminal; the summary says what was indexed, updated, removed and skipped (and why).

Exit codes: 0 done (skipped files are reported, not failures), 1 an error (or, with
``--strict``, any skipped file), 2 a usage error (no such folder, a bad option).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import JsonOpt, _escape, _fail, _print_json, _progress_bar, _run, out

__all__ = ["index", "register"]

NAMESPACE = "default.dataSourcesModule.dicomlocal"
_SHOWN_PROBLEMS = 50


def index(
    path: Annotated[
        Path,
        typer.Argument(help="Folder of DICOM files.", exists=True, file_okay=False, dir_okay=True, resolve_path=True),
    ],
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="Folder for the index (or an index .sqlite file). Default: in the folder, "
            "or the user's cache folder when the folder cannot be written.",
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Index sub-folders too.")] = True,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Follow symbolic links that stay inside the folder.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any file was skipped.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="List every file indexed, updated or removed.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Index a folder of DICOM files (headers only; unchanged files are not read again)."""
    from ..host import Host

    configuration: dict[str, Any] = {
        "root": str(path),
        "recursive": recursive,
        "followSymlinks": follow_symlinks,
        "indexOnInitialize": False,  # the pass below does it, with a progress bar
    }
    if cache is not None:
        configuration["cache"] = str(cache)
    host = _run(
        lambda: Host.from_config(
            {"dataSources": [{"namespace": NAMESPACE, "sourceName": "local", "configuration": configuration}]}
        )
    )
    ds = _run(lambda: host.get_data_source("local"))
    # the summary below says what the source's warning would say
    logging.getLogger("datasources.dicomlocal").setLevel(logging.ERROR)

    with _progress_bar() as bar:
        listing = bar.add_task("listing files", total=None)
        reading: list[Any] = []

        def progress(done: int, total: int | None, _path: str) -> None:
            if total is None:
                bar.update(listing, completed=done, description=f"listing files ({done} found)")
                return
            if not reading:
                bar.update(listing, visible=False)
                reading.append(bar.add_task("reading headers", total=total))
            bar.update(reading[0], completed=done)

        report = _run(lambda: ds.helpers.reindex(progress=progress))

    if json_output:
        _print_json(report.to_dict())
    else:
        _summary(report, verbose)
    if strict and report.skipped:
        raise _fail(f"{len(report.skipped)} file(s) skipped (--strict)")


def _summary(report: Any, verbose: bool) -> None:
    out.print(
        f"Indexed {_escape(report.root)} in {report.seconds:.2f} s (index: {_escape(report.index_file)})",
        highlight=False,
    )
    rows = [
        ("new", len(report.indexed)),
        ("updated", len(report.updated)),
        ("removed", len(report.removed)),
        ("unchanged", report.unchanged),
        ("skipped", len(report.skipped)),
    ]
    for label, count in rows:
        out.print(f"  {label:<10} {count}", highlight=False)
    out.print(f"  now {report.studies} studies, {report.instances} instances", highlight=False)
    if verbose:
        for label, paths in (("new", report.indexed), ("updated", report.updated), ("removed", report.removed)):
            for rel in paths:
                out.print(f"  {label}: {_escape(rel)}", highlight=False)
    if report.skipped:
        out.print("Skipped:", highlight=False)
        for item in report.skipped[:_SHOWN_PROBLEMS]:
            out.print(f"  {_escape(item.path)}: {_escape(item.reason)}", highlight=False)
        more = len(report.skipped) - _SHOWN_PROBLEMS
        if more > 0:
            out.print(f"  ... and {more} more (--json lists them all)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``index`` to the ``datasources`` command."""
    app.command("index")(index)
