"""What the merge source hands back: plain lists and dicts that also say which member failed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from datasources.errors import AllMembersFailedError, safe_message

__all__ = ["AllMembersFailedError", "MergedMapping", "MergedResults", "safe_message"]


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
