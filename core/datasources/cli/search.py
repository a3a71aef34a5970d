"""``datasources studies``, ``series`` and ``metadata``: search a source and show what it holds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .output import (
    ConfigOpt,
    JsonOpt,
    SourceOpt,
    _escape,
    _fail,
    _host,
    _parse_filters,
    _print_json,
    _run,
    _show,
    _table,
    _text,
    out,
)


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


def series(
    study_uid: Annotated[str, typer.Argument(help="StudyInstanceUID")],
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the series of a study."""
    host = _host(config)
    ds = _run(lambda: host.get_data_source(source))
    rows = _search_series(ds, study_uid)
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


def _search_series(ds: Any, study_uid: str) -> Any:
    """The series of a study; a study the source does not hold is exit 1 on every source.

    Some backends raise ``NotFoundError`` for an unknown study, others (a QIDO-RS server)
    answer no rows: a study always has a series, so both mean "not found".
    """
    from ..errors import NotFoundError

    def search() -> Any:
        try:
            return ds.query.series.search(study_uid)
        except NotFoundError:
            return []

    rows = _run(search)
    if not rows and not getattr(rows, "failures", None):
        raise _fail(_escape(f"study {study_uid!r} was not found in data source {ds.name!r}"))
    return rows


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
        raise _fail(_escape(f"study {study_uid!r} was not found in data source {ds.name!r}"))
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


def register(app: typer.Typer) -> None:
    """Add ``studies``, ``series`` and ``metadata`` to the ``datasources`` command."""
    app.command("studies")(studies)
    app.command("series")(series)
    app.command("metadata")(metadata)
