"""The ``datasources`` command line: assembles one typer app from the command-group modules.

Each group is a module of this package with a ``register(app)`` function that adds its
commands; ``GROUPS`` lists them in the order ``--help`` shows. To add a group (say
``datasources export``), write ``cli/export.py`` with ``register(app)`` (importing the shared
options, tables, JSON, progress and error helpers from ``cli/output.py``) and add one line,
``"export",``, to ``GROUPS``. A group whose module is missing is skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from ..errors import DataSourcesError
from .output import err

__all__ = ["GROUPS", "app", "main"]

GROUPS: tuple[str, ...] = (
    "plugins",
    "search",
    "store",
    "index",
    "serve",
    "export",
)

app = typer.Typer(
    name="datasources",
    help="A plugin host for medical-imaging data sources (OHIF's DataSource contract).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``datasources`` script; returns the exit code."""
    _register_groups()
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


_registered = False


def _register_groups() -> None:
    """Every module in ``GROUPS`` adds its commands to ``app``, once."""
    from importlib import import_module

    global _registered
    if _registered:
        return
    _registered = True
    for name in GROUPS:
        try:
            module = import_module(f".{name}", __package__)
        except ModuleNotFoundError:
            continue
        module.register(app)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
