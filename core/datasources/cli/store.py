"""``datasources store FILES...``: send DICOM files to a data source (STOW-RS for dicomweb).

Files and folders (walked recursively, hidden names skipped) are sent through the source's
``store.dicom`` in batches of ``--batch-size``, one call per batch, so memory stays bounded
and the progress bar moves with every batch whatever the source. The summary lists each
instance with what the backend said (stored, stored with a warning, refused and why).

Each file is read and checked first (``cli/dicomfiles.py``): Part-10 files without preamble
and bare datasets are accepted (the summary says how they were read), a file that does not
parse is refused by name and never sent, and a SOP Instance UID seen twice in one run is
refused the second time, naming the first file.

Exit codes: 0 every instance stored (warnings included), 1 any instance refused or an error
(the instances sent before the error are still listed), 2 a usage error.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from ..errors import DataSourcesError
from ..results import InstanceOutcome
from .dicomfiles import Prepared, prepare, refuse_duplicates
from .output import ConfigOpt, JsonOpt, SourceOpt, _escape, _fail, _host, _print_json, _progress_bar, _run, out

__all__ = ["collect_files", "register", "store"]

_STYLE = {"stored": "green", "warning": "yellow", "failed": "bold red"}


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files to send: files as given, folders walked (sorted, hidden names and links to folders skipped).

    A file named twice (or reached twice) is sent once; paths keep the form the user gave,
    so the summary names them as typed.
    """
    found: list[Path] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)

    for path in paths:
        if not path.is_dir():
            add(path)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    candidate = Path(folder, name)
                    if candidate.is_file():
                        add(candidate)
    return found


def _accepted_options(func: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options ``store.dicom`` takes: every one if it has ``**kwargs``, else those it names."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return options
    names = {p.name for p in parameters}
    return {k: v for k, v in options.items() if k in names}


def _send_batch(send: Callable[..., Any], options: dict[str, Any], batch: list[Prepared]) -> list[Any]:
    """Send the files of ``batch`` that can be sent; every file's outcome, in the batch's order.

    A file read another way than as Part-10 goes as a Dataset, so the source names it by
    position: its outcome is given back its path, and how it was read is added to the reason.
    """
    refused = [
        InstanceOutcome("failed", p.sop_instance_uid, p.sop_class_uid, p.error, origin=p.origin)
        for p in batch
        if p.error is not None
    ]
    sendable = [p for p in batch if p.error is None]
    sent: list[Any] = []
    if sendable:
        by_uid = {p.sop_instance_uid: p for p in sendable}
        for outcome in send([p.item for p in sendable], **options).outcomes:
            known = by_uid.get(outcome.sop_instance_uid)
            if known is not None:
                reason = "; ".join(r for r in (known.note, outcome.reason) if r) or None
                outcome = attrs.evolve(outcome, origin=known.origin, reason=reason)
            sent.append(outcome)
    order = {p.origin: i for i, p in enumerate(batch)}
    return sorted(refused + sent, key=lambda o: order.get(o.origin or "", len(order)))


def _row(outcome: Any) -> dict[str, Any]:
    return {
        "file": outcome.origin,
        "SOPInstanceUID": outcome.sop_instance_uid,
        "SOPClassUID": outcome.sop_class_uid,
        "status": outcome.status,
        "reason": outcome.reason,
        "retrieveURL": outcome.retrieve_url,
    }


def store(
    files: Annotated[
        list[Path],
        typer.Argument(help="DICOM files, or folders to walk (hidden names skipped).", exists=True, show_default=False),
    ],
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Instances per request (one STOW-RS call each).")
    ] = 50,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="List only the instances refused or stored with a warning.")
    ] = False,
    config: ConfigOpt = None,
    source: SourceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Store DICOM files in a data source and report what happened to each instance."""
    paths = collect_files(files)
    if not paths:
        raise _fail("no files to store (the folders hold no files)", code=2)
    host = _host(config)
    ds = _run(lambda: host.get_data_source(source))
    send = ds.store.dicom
    options = _accepted_options(send, {"batch_size": batch_size})

    outcomes: list[Any] = []
    problem: str | None = None
    seen: dict[str, str] = {}
    started = time.perf_counter()
    with _progress_bar() as bar:
        task = bar.add_task(f"storing in {ds.name}", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            try:
                outcomes.extend(_send_batch(send, options, refuse_duplicates([prepare(p) for p in chunk], seen)))
            except DataSourcesError as exc:
                problem = str(exc)
                break
            bar.update(task, completed=min(len(paths), start + len(chunk)))
    seconds = time.perf_counter() - started

    counts = {status: sum(o.status == status for o in outcomes) for status in _STYLE}
    not_sent = len(paths) - len(outcomes) if problem else 0
    if json_output:
        _print_json(
            {
                "source": ds.name,
                "files": len(paths),
                "stored": counts["stored"],
                "warnings": counts["warning"],
                "failed": counts["failed"],
                "notSent": not_sent,
                "error": problem,
                "instances": [_row(o) for o in outcomes],
            }
        )
    elif outcomes or problem is None:
        _summary(ds.name, outcomes, counts, len(paths), seconds, quiet)
    if problem is not None:
        more = f" ({not_sent} of {len(paths)} files not sent)" if not_sent else ""
        raise _fail(_escape(problem) + more)
    if counts["failed"]:
        raise _fail(f"{counts['failed']} of {len(outcomes)} instances were not stored")


def _summary(
    name: str | None, outcomes: Sequence[Any], counts: dict[str, int], files: int, seconds: float, quiet: bool
) -> None:
    from rich.table import Table

    shown = [o for o in outcomes if not quiet or o.status != "stored"]
    if shown:
        table = Table(title=f"Instances sent to {name}", title_justify="left", header_style="bold")
        table.add_column("file", overflow="fold")
        uid_width = max([len("SOPInstanceUID")] + [len(o.sop_instance_uid or "") for o in shown])
        table.add_column("SOPInstanceUID", no_wrap=True, min_width=uid_width)  # copied and pasted: never folded
        table.add_column("status")
        table.add_column("reason", overflow="fold")
        for o in shown:
            style = _STYLE[o.status]
            table.add_row(
                _escape(o.origin or ""),
                o.sop_instance_uid or "",
                f"[{style}]{o.status}[/]",
                _escape(o.reason or ""),
            )
        out.print(table)
    out.print(
        f"{counts['stored'] + counts['warning']} of {files} instances stored in {_escape(str(name))} "
        f"({counts['warning']} with a warning, {counts['failed']} failed) in {seconds:.2f} s",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``store`` to the ``datasources`` command."""
    app.command("store")(store)
