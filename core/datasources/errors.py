"""Every exception the host and its sources raise, in one place.

All derive from :class:`DataSourcesError`, so ``except DataSourcesError`` catches
anything this library raises on purpose. Where a builtin exception has the same
meaning (``KeyError``, ``ValueError``, ``TimeoutError``...) it is a second base, so
code written against the builtin keeps working.

No message built here ever contains a secret: HTTP errors carry the URL with its
credentials removed (see :func:`redact_url`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "AllMembersFailedError",
    "AuthenticationError",
    "BackendDataError",
    "BackendError",
    "BackendTimeoutError",
    "ConfigurationError",
    "ClientInputError",
    "ConnectionFailedError",
    "CorruptFileError",
    "DataSourceUnavailableError",
    "DataSourcesError",
    "DatasetError",
    "PayloadTooLargeError",
    "ExportError",
    "ExtensionLoadError",
    "HTTPError",
    "HelperNotFoundError",
    "InterfaceError",
    "InvalidQueryError",
    "InvalidQueryValueError",
    "MalformedResponseError",
    "NotFoundError",
    "NotSupportedError",
    "RedirectRefusedError",
    "StoreError",
    "UnknownDataSourceError",
    "UnknownEventError",
    "UnknownNamespaceError",
    "UnsafePathError",
    "is_secret_param",
    "redact_text",
    "redact_url",
    "safe_message",
    "strip_query",
]


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(repr(n) for n in listed) if listed else "none"


# Patterns as text, compiled on first use through re's own cache: compiling them at import
# would cost a host's start a millisecond for errors it may never format.
_SECRET_KEY = r"(?i)token|key|secret|passw|pwd|sig|auth|credential|session|code"
# a query parameter whose name looks secret, anywhere in a text (a log line, a request line)
_SECRET_PARAM = r"([?&;]([^=&;\s\"'#?]*)=)([^&;\s\"'#]*)"


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential (``access_token``, ``key``, ``sig``...)."""
    return re.search(_SECRET_KEY, name) is not None


def redact_text(text: str) -> str:
    """``text`` with the value of every secret-looking query parameter (``?access_token=...``) masked."""
    if "=" not in text:
        return text
    return re.sub(_SECRET_PARAM, lambda m: f"{m.group(1)}***" if is_secret_param(m.group(2)) else m.group(0), text)


def redact_url(url: str) -> str:
    """Return ``url`` without ``user:password@`` and with secret-looking query values masked."""
    from urllib.parse import urlsplit, urlunsplit  # not at import: a host's start needs no URL parsing

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        masked = []
        for pair in query.split("&"):
            key, sep, _value = pair.partition("=")
            masked.append(f"{key}=***" if sep and is_secret_param(key) else pair)
        query = "&".join(masked)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def strip_query(url: str) -> str:
    """``url`` without user-info, query string or fragment: what an authentication error names."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


class DataSourcesError(Exception):
    """Base of every error raised by ``datasources`` and its extensions."""


# Whose fault: a service that answers for this library (the gateway) maps by these two bases.
# ClientInputError: what the caller gave is wrong (HTTP 400). BackendDataError: what a backend
# sent is wrong (HTTP 502). Errors under neither are about the setup (configuration, extensions).


class ClientInputError(DataSourcesError, ValueError):
    """The caller's input is malformed: a query, a dataset, a request body (a gateway answers 400)."""


# -- configuration and plugins ---------------------------------------------------------


class ConfigurationError(DataSourcesError, ValueError):
    """A configuration is malformed, inconsistent or refers to something that does not exist."""


class UnknownNamespaceError(ConfigurationError, LookupError):
    """A ``dataSources`` entry names a namespace no loaded extension provides."""

    def __init__(self, namespace: str, known: Iterable[str]) -> None:
        self.namespace = namespace
        self.known = sorted(known)
        super().__init__(f"unknown data source namespace {namespace!r}; known namespaces: {_known(self.known)}")


class ExtensionLoadError(DataSourcesError):
    """An extension could not be loaded: import failure, hook error, malformed definitions."""

    def __init__(self, extension: str, message: str, *, version: str | None = None) -> None:
        self.extension = extension
        self.version = version
        self.reason = message
        where = f"{extension} {version}" if version else extension
        super().__init__(f"extension {where!r}: {message}")


class InterfaceError(DataSourcesError, TypeError):
    """A data-source implementation does not provide the interface (a member missing or not callable)."""


# -- routing and lookups ---------------------------------------------------------------


class NotFoundError(DataSourcesError, LookupError):
    """Something asked for does not exist: a study, a series, an instance, a file."""


class UnknownDataSourceError(NotFoundError, KeyError):
    """No data source is configured under that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"no data source named {name!r}; configured sources: {_known(self.known)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class HelperNotFoundError(NotFoundError, AttributeError):
    """A data source has no helper method of that name."""

    def __init__(self, name: str, available: Iterable[str], source: str | None = None) -> None:
        self.name = name
        self.available = sorted(available)
        owner = f" on data source {source!r}" if source else ""
        super().__init__(f"no helper {name!r}{owner}; available helpers: {_known(self.available)}")


class UnknownEventError(DataSourcesError, ValueError):
    """A subscription names an event the publisher does not send."""

    def __init__(self, event: str, known: Iterable[str]) -> None:
        self.event = event
        super().__init__(f"unknown event {event!r}; known events: {_known(known)}")


# -- operations ------------------------------------------------------------------------


class NotSupportedError(DataSourcesError, NotImplementedError):
    """The data source cannot perform this operation (its backend has no such capability)."""

    def __init__(self, operation: str, source: str | None = None, reason: str | None = None) -> None:
        self.operation = operation
        self.source = source
        self.reason = reason
        owner = f"data source {source!r}" if source else "this data source"
        text = f"{operation} is not supported by {owner}"
        super().__init__(f"{text}: {reason}" if reason else text)


class InvalidQueryError(ClientInputError):
    """A search filter is not a DICOM keyword or tag, or its value is malformed."""


class InvalidQueryValueError(InvalidQueryError):
    """A filter's value is not a valid date, time, UID or number for its key; names the key as given."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        shown = repr(value)
        shown = shown if len(shown) <= 120 else f"{shown[:100]}... ({len(shown)} characters)"
        super().__init__(f"{key}: {shown} is not {expected}")


class DatasetError(ClientInputError):
    """A dataset given to the library cannot be converted: an unknown keyword, a value of the wrong shape.

    Raised on the caller's data. Where the data came from a backend, callers raise (or pass
    ``error=``) :class:`MalformedResponseError` instead."""


class PayloadTooLargeError(DatasetError):
    """A request body is over a configured bound (its size, its number of parts, a part's headers)."""


class UnsafePathError(DataSourcesError, PermissionError):
    """A path would read or write outside a source's root folder."""


class ExportError(DataSourcesError):
    """An export cannot start: its destination is unusable (unknown protocol, not writable, a file)."""


class DataSourceUnavailableError(DataSourcesError):
    """A configured data source could not be created (its extension's factory failed)."""


class StoreError(DataSourcesError):
    """Storing instances failed as a whole (per-instance outcomes are reported, not raised)."""


# -- backends --------------------------------------------------------------------------


class BackendError(DataSourcesError):
    """The backend (a server, a file, a database) failed to answer as it should."""


class HTTPError(BackendError):
    """A server answered with an HTTP error status."""

    def __init__(self, status: int, url: str, method: str = "GET", detail: str | None = None) -> None:
        self.status = status
        self.url = redact_url(url)
        self.method = method
        self.detail = detail
        text = f"HTTP {status} for {method} {self.url}"
        super().__init__(f"{text}: {detail}" if detail else text)


class AuthenticationError(HTTPError):
    """The server refused the credentials (HTTP 401 or 403), or no credentials could be had.

    The message names the source and the URL without its query string (which may hold a
    token). ``forwarded`` is true when the refused credentials were a gateway client's own.
    """

    def __init__(
        self,
        status: int,
        url: str,
        method: str = "GET",
        detail: str | None = None,
        *,
        source: str | None = None,
        forwarded: bool = False,
    ) -> None:
        super().__init__(status, strip_query(url), method, detail)
        self.source = source
        self.forwarded = forwarded
        if source:
            self.args = (f"{source}: {self.args[0]}",)


class RedirectRefusedError(BackendError):
    """A server redirected a request with a body (STOW) to another origin: it is not sent there."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer in time."""


class ConnectionFailedError(BackendError, ConnectionError):
    """The backend could not be reached or dropped the connection."""


class BackendDataError(BackendError):
    """The backend answered, but its data is not what it must be (a gateway answers 502)."""


class MalformedResponseError(BackendDataError):
    """The backend answered, but with something that cannot be parsed (bad JSON, broken multipart,
    a DICOM JSON value of the wrong shape, a record a matcher cannot read)."""


class CorruptFileError(MalformedResponseError):
    """A stored file (a dicomlocal folder's, a dimse source's cache) no longer reads as the DICOM
    it was indexed as: overwritten, truncated, a broken fragment. ``file`` names it as the source
    knows it (relative to its root), never more of the server's paths than that."""

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


class AllMembersFailedError(BackendError):
    """Every member of a merge source failed an operation; ``failures`` says how each did."""

    def __init__(self, source: str | None, operation: str, failures: Mapping[str, BaseException]) -> None:
        self.source = source
        self.operation = operation
        self.failures = dict(failures)
        owner = f"merge source {source!r}" if source else "the merge source"
        described = "; ".join(f"{name!r}: {safe_message(exc)}" for name, exc in self.failures.items())
        super().__init__(f"{operation}: every member of {owner} failed: {described}")


_URL = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"


def safe_message(exc: BaseException) -> str:
    """``Type: message`` with every URL in it redacted."""
    text = redact_text(re.sub(_URL, lambda m: redact_url(m.group(0)), str(exc)))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
