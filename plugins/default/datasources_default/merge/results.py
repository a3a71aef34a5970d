"""What the merge source hands back: plain lists and dicts that also say which member failed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from datasources.errors import BackendError, redact_url

__all__ = ["AllMembersFailedError", "MergedMapping", "MergedResults", "safe_message"]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def safe_message(exc: BaseException) -> str:
    """``Type: message`` with every URL in it redacted (a member's own message should be clean; be sure)."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe(failures: Mapping[str, BaseException]) -> str:
    return "; ".join(f"{name!r}: {safe_message(exc)}" for name, exc in failures.items())


class MergedResults(list):  # type: ignore[type-arg]
    """A list of merged results that also carries the members that failed.

    ``failures`` maps member name -> the exception it raised (empty when all answered);
    ``sources`` maps each UID in the list to the members that returned it, the winner first.
    Code that only wants a list can ignore both.
    """

    failures: dict[str, BaseException]
    sources: dict[str, tuple[str, ...]]

    def __init__(
        self,
        items: Iterable[Any] = (),
        failures: Mapping[str, BaseException] | None = None,
        sources: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__(items)
        self.failures = dict(failures or {})
        self.sources = dict(sources or {})

    @property
    def ok(self) -> bool:
        """True when every member answered."""
        return not self.failures

    def __repr__(self) -> str:
        failed = f", failures={sorted(self.failures)}" if self.failures else ""
        return f"MergedResults({list.__repr__(self)}{failed})"


class MergedMapping(dict):  # type: ignore[type-arg]
    """A dict of merged results (``retrieve.series.metadata``'s series UID -> summary) with ``failures``."""

    failures: dict[str, BaseException]
    sources: dict[str, tuple[str, ...]]

    def __init__(
        self,
        items: Mapping[Any, Any] | None = None,
        failures: Mapping[str, BaseException] | None = None,
        sources: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__(items or {})
        self.failures = dict(failures or {})
        self.sources = dict(sources or {})

    @property
    def ok(self) -> bool:
        return not self.failures

    def __repr__(self) -> str:
        failed = f", failures={sorted(self.failures)}" if self.failures else ""
        return f"MergedMapping({dict.__repr__(self)}{failed})"


class AllMembersFailedError(BackendError):
    """Every member of a merge source failed the operation; ``failures`` says how each did."""

    def __init__(self, source: str | None, operation: str, failures: Mapping[str, BaseException]) -> None:
        self.source = source
        self.operation = operation
        self.failures = dict(failures)
        owner = f"merge source {source!r}" if source else "the merge source"
        super().__init__(f"{operation}: every member of {owner} failed: {_describe(self.failures)}")
