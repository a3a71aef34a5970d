"""``datasources export static-wado DEST``: any configured source as a static DICOMweb tree (the ``export`` group).

DEST is a folder or an fsspec URL (``file://``, ``memory://``; ``s3://`` and ``gs://`` with
s3fs / gcsfs installed). Progress bars (studies, and the instances of the current study) are
drawn on a terminal only. Exit codes: 0 every study exported or unchanged, 1 any study failed
(the others are exported, each failure is listed) or the export could not start, 2 a usage error.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import DataSourcesError
from .output import (
    ConfigOpt,
    JsonOpt,
    SourceOpt,
    _escape,
    _fail,
    _host,
    _parse_filters,
    _print_json,
    _progress_bar,
    out,
)

__all__ = ["export_app", "register", "static_wado"]

export_app = typer.Typer(
    name="export", help="Export a source to files a static web server can serve.", no_args_is_help=True
)


class _Bars:
    """Rich progress bars behind the export's progress hooks."""

    def __init__(self, bar: Any) -> None:
        from ..export import ExportProgress

        self.hooks = type("Hooks", (ExportProgress,), {})()
        self.bar = bar
        self.studies_task = bar.add_task("studies", total=None)
        self.instances_task: Any = None
        self.hooks.studies = self.studies
        self.hooks.study_started = self.study_started
        self.hooks.instances_done = self.instances_done
        self.hooks.study_finished = self.study_finished

    def studies(self, total: int) -> None:
        self.bar.update(self.studies_task, total=total)

    def study_started(self, uid: str, instances: int | None) -> None:
        if self.instances_task is not None:
            self.bar.remove_task(self.instances_task)
        self.instances_task = self.bar.add_task(f"  {uid}", total=instances)

    def instances_done(self, uid: str, count: int) -> None:
        if self.instances_task is not None:
            self.bar.advance(self.instances_task, count)

    def study_finished(self, outcome: Any) -> None:
        self.bar.advance(self.studies_task, 1)


@export_app.command("static-wado")
def static_wado(
    dest: Annotated[str, typer.Argument(help="A folder or an fsspec URL (file://, memory://, s3://, gs://).")],
    filters: Annotated[
        list[str] | None, typer.Argument(help="QIDO study filters as Keyword=value, e.g. PatientName='LEE*'.")
    ] = None,
    studies: Annotated[
        str | None, typer.Option("--studies", help="Only these StudyInstanceUIDs, comma-separated.")
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove the studies of the tree this run did not select.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Instances read and written at once.")] = 4,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Export studies to a static DICOMweb tree (what a staticWado source and OHIF read)."""
    from ..export import export_static_wado

    params = _parse_filters(filters)
    uids = [u.strip() for u in (studies or "").split(",") if u.strip()] or None
    host = _host(config)
    try:
        with _progress_bar() as bar:
            bars = _Bars(bar)
            report = export_static_wado(
                host, dest, source=source, filters=params, studies=uids, prune=prune, workers=workers,
                progress=bars.hooks,
            )  # fmt: skip
    except DataSourcesError as exc:
        raise _fail(_escape(str(exc))) from None
    except OSError as exc:
        raise _fail(_escape(f"{type(exc).__name__}: {exc}")) from None
    if json_output:
        _print_json(report.to_dict())
    else:
        _summary(report)
    if not report.ok:
        raise _fail(f"{len(report.failed)} of {len(report.studies)} studies failed")


def _summary(report: Any) -> None:
    summary = report.to_dict()
    for outcome in report.studies:
        if outcome.status == "failed":
            out.print(f"[bold red]failed[/] {outcome.uid}: {_escape(outcome.error or '')}", highlight=False)
        for warning in outcome.warnings:
            out.print(f"[yellow]warning[/] {outcome.uid}: {_escape(warning)}", highlight=False)
    out.print(
        f"{summary['written']} written, {summary['unchanged']} unchanged, {summary['failed']} failed, "
        f"{summary['pruned']} pruned; {summary['instances']} instances, {summary['frames']} frames written, "
        f"{summary['bytes']:,} bytes, to {_escape(report.dest)} in {report.seconds:.2f} s",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` to the ``datasources`` command."""
    app.add_typer(export_app, name="export")
