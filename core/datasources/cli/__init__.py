"""The ``datasources`` command line: assembles one typer app from the command-group modules.

Each group is a module of this package with a ``register(app)`` function that adds its
commands; ``GROUPS`` lists them in the order ``--help`` shows. To add a group (say
``datasources export``), write ``cli/export.py`` with ``register(app)`` (importing the shared
options, tables, JSON, progress and error helpers from ``cli/output.py``) and add one line,
``"export",``, to ``GROUPS``. A group whose module is missing is skipped.

Every command also gets the global options (``--log-level/-v``, ``--debug``; see
``cli/globalopts.py``), which are accepted before the command too, as is ``--config/-c``.
Errors never show a traceback unless ``--debug`` or ``DATASOURCES_DEBUG=1`` asks for one:
a usage error is one line and exit 2, a data error one line and exit 1 (see ``cli/errors.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from . import errors as _errors
from . import globalopts as _globals

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
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.callback()(_globals.root)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``datasources`` script; returns the exit code."""
    _register_groups()
    args = list(argv) if argv is not None else sys.argv[1:]
    with _globals.session(args) as state:
        return _errors.run(lambda: typer.main.get_command(app), args, state)


_registered = False


def _register_groups() -> None:
    """Every module in ``GROUPS`` adds its commands to ``app``, once; each gets the global options."""
    from importlib import import_module

    global _registered
    if _registered:
        return
    _registered = True
    for name in GROUPS:
        try:
            module = import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise  # the group exists but one of its own imports is missing: a real bug
            continue
        module.register(app)
    _add_global_options(app)


def _add_global_options(typer_app: typer.Typer) -> None:
    """Every command of ``typer_app`` and of its sub-groups (``export static-wado``) gets the global options."""
    for info in typer_app.registered_commands:
        info.callback = _globals.with_global_options(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _add_global_options(group.typer_instance)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
