"""The caller's own ``Authorization``, for sources that may pass it on (the gateway's ``forwardAuthorization``).

The gateway sets it for the duration of one client request; a source configured with
``requestOptions.forwardAuthorization: true`` sends it to its backend instead of its own
credentials. It is a context variable, so it follows the request into worker threads that copy
the context (Starlette's threadpool, :func:`run_in_context`) and never leaks to another request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["ContextThreadPoolExecutor", "current_authorization", "forwarded_authorization", "run_in_context"]

T = TypeVar("T")

_AUTHORIZATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("forwarded_authorization", default=None)


def current_authorization() -> str | None:
    """The forwarded ``Authorization`` value of the request being served, or None."""
    return _AUTHORIZATION.get()


@contextmanager
def forwarded_authorization(value: str | None) -> Iterator[None]:
    """Make ``value`` the forwarded ``Authorization`` inside the block (None: nothing forwarded)."""
    token = _AUTHORIZATION.set(value or None)
    try:
        yield
    finally:
        _AUTHORIZATION.reset(token)


def run_in_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to the current context: for work handed to a thread pool that does not copy it."""
    context = contextvars.copy_context()

    def call(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(fn, *args, **kwargs)  # a copy per call: one context can't be entered twice

    return call


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context (so forwarded credentials follow them)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(run_in_context(fn), *args, **kwargs)
