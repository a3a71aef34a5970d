"""The options every ``datasources`` command takes: ``--config/-c``, ``--log-level/-v``, ``--debug``, ``--version``.

``--config``, ``--log-level`` and ``--debug`` are accepted before the command (on the root
callback) and after it (added to each command by :func:`with_global_options`); the value
given after the command wins. They land in :data:`STATE`, which :func:`session` resets for
each run so that ``main()`` called twice in one process starts afresh.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

__all__ = ["LEVELS", "STATE", "State", "parse_level", "root", "session", "with_global_options"]

LEVELS = ("critical", "error", "warning", "info", "debug")


@attrs.define
class State:
    """What the global options said for this run."""

    config: Path | None = None
    log_level: str | None = None
    debug: bool = False


STATE = State()


def parse_level(value: str | None, option: str = "--log-level") -> str | None:
    """A log level name in lower case; a usage error (exit 2) naming the option otherwise."""
    if value is None:
        return None
    level = value.strip().lower()
    if level not in LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LEVELS)}", param_hint=f"'{option}'")
    return level


def _apply_level(level: str | None) -> None:
    if level is not None:
        STATE.log_level = level
        logging.getLogger().setLevel(level.upper())


LogLevelOpt = Annotated[
    str | None,
    typer.Option("--log-level", "-v", help=f"Log messages from this level on, on stderr: {', '.join(LEVELS)}."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error (also: DATASOURCES_DEBUG=1).")]
RootConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Configuration file (JSON, YAML or TOML). Default: the bundled sample."),
]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("datasources")
        except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
            from .. import __version__ as number
        typer.echo(f"datasources {number}")
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool,
    typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_show_version),
]


def root(
    ctx: typer.Context,
    config: RootConfigOpt = None,
    log_level: LogLevelOpt = None,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    """A plugin host for medical-imaging data sources (OHIF's DataSource contract)."""
    STATE.config = config
    STATE.debug = STATE.debug or debug
    _apply_level(parse_level(log_level))
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)  # a command is required: a usage error, as click >= 8.2 says


def with_global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``--log-level/-v`` and ``--debug`` added, unless it declares options of those names."""
    signature = inspect.signature(func, eval_str=True)
    hints = typing.get_type_hints(func, include_extras=True)
    added: dict[str, tuple[Any, Any]] = {}
    for name, annotation, default in (("log_level", LogLevelOpt, None), ("debug", DebugOpt, False)):
        if name not in signature.parameters:
            added[name] = (annotation, default)
    if not added:
        return func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "debug" in added:
            asked = bool(kwargs.pop("debug", False))
            STATE.debug = STATE.debug or asked
        if "log_level" in added:
            _apply_level(parse_level(kwargs.pop("log_level", None)))
        return func(*args, **kwargs)

    params = list(signature.parameters.values())
    for name, (annotation, default) in added.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, **{name: annotation for name, (annotation, _) in added.items()}}
    del wrapper.__wrapped__  # typer must read the signature above, not the function's own
    return wrapper


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """A warning as one line (``warning: ...``), not ``host.py:323: UserWarning: ...`` and a source line."""
    from .output import err

    err.print(f"warning: {message}", markup=False, highlight=False)


class _OneLine(logging.Formatter):
    """``warning: message`` (the logger's name too from ``--log-level info`` on)."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        if record.levelno < logging.WARNING:
            text = f"{record.name}: {text}"
        if record.exc_info and STATE.debug:
            text += "\n" + self.formatException(record.exc_info)
        return f"{record.levelname.lower()}: {text}"


@contextlib.contextmanager
def session(args: list[str]) -> Iterator[State]:
    """Fresh global state, warnings as one line and log records on stderr, for one run; restored after."""
    from .output import err, out

    out.quiet = err.quiet = False  # a broken pipe in an earlier run (same process) silenced them
    STATE.config = None
    STATE.log_level = None
    STATE.debug = "--debug" in args or os.environ.get("DATASOURCES_DEBUG", "").strip().lower() in ("1", "true", "yes")
    root_logger = logging.getLogger()
    previous_level = root_logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.WARNING)
    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield STATE
    finally:
        warnings.showwarning = previous_show
        root_logger.removeHandler(handler)
        root_logger.setLevel(previous_level)
