"""How a run of ``datasources`` ends: its exit code and at most one line on stderr, never a traceback.

Usage errors are whatever click raises, and typer may use the ``click`` package or its own
vendored copy (``typer._click``, typer >= 0.25): the classes are found from
``typer.BadParameter``'s bases, so ``click`` is never imported. Exit codes follow click's
convention: 2 a usage error, 1 a data error (any :class:`~datasources.errors.DataSourcesError`,
an ``OSError``, or a bug), 141 output cut short by a closed pipe (``| head``), said nowhere.
``--debug`` or ``DATASOURCES_DEBUG=1`` lets the traceback through instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from ..errors import DataSourcesError, InvalidQueryError, safe_message
from .globalopts import State
from .output import PipeClosed

__all__ = ["BROKEN_PIPE", "ClickException", "UsageError", "run"]

BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _base(cls: type, name: str) -> type[Exception]:
    for klass in cls.__mro__:
        if klass.__name__ == name:
            return klass
    raise RuntimeError(f"typer's click has no {name}")  # pragma: no cover


UsageError = _base(typer.BadParameter, "UsageError")
ClickException = _base(typer.BadParameter, "ClickException")


def _say(text: str) -> None:
    from .output import err

    err.print(" ".join(text.split()), markup=False, highlight=False, soft_wrap=True)


def _usage_line(exc: Any) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, UsageError) and ctx is not None:
        return f"error: {message} (see '{ctx.command_path} -h')"
    return f"error: {message}"


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout is not a real file (tests)
        pass


def run(build: Callable[[], Any], args: list[str], state: State) -> int:
    """Run the click command ``build()`` makes over ``args``; the exit code."""
    try:
        try:
            command = build()
            result = command.main(args=args, prog_name="datasources", standalone_mode=False)
            sys.stdout.flush()
        except (typer.Exit, typer.Abort, KeyboardInterrupt, BrokenPipeError, PipeClosed):
            raise
        except Exception as exc:
            if state.debug:
                raise
            return _report(exc)
    except typer.Exit as exc:
        code = exc.exit_code
        return code if isinstance(code, int) else 1
    except typer.Abort:
        _say("aborted")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (BrokenPipeError, PipeClosed):
        _quiet_stdout()
        return BROKEN_PIPE
    if isinstance(result, int) and not isinstance(result, bool):
        return result  # click returns the code of a typer.Exit it caught under standalone_mode=False
    return 0


def _report(exc: Exception) -> int:
    if isinstance(exc, ClickException):
        if exc.format_message().strip():
            _say(_usage_line(exc))
        # else: a group given no command (click >= 8.2) has already printed its help
        return int(getattr(exc, "exit_code", 2))
    if isinstance(exc, DataSourcesError):
        _say(f"error: {exc}")
        return 2 if isinstance(exc, InvalidQueryError) else 1
    if isinstance(exc, OSError):
        _say(f"error: {type(exc).__name__}: {exc}")
        return 1
    _say(f"error: internal error: {safe_message(exc)} (run with --debug to see the traceback)")
    return 1
