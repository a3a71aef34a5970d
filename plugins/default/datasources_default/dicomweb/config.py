"""The dicomweb source's configuration: OHIF's keys, checked, with Python's ``requestOptions``.

An OHIF ``dataSources`` entry works as it is. A wrong type is a :class:`ConfigurationError`
naming the key; an unknown key is a warning naming it (OHIF configs carry UI-only keys). The
secret in ``requestOptions.auth`` lives in :class:`~.auth.Credentials`, whose ``repr`` never
shows it, and :meth:`DicomWebConfig.public` masks it for ``get_config()``. A root's query string
(``?key=...``) is kept apart and added to every request under that root (client.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from datasources.errors import ConfigurationError, redact_url
from datasources.records import Record

from .auth import Credentials, parse_auth, public_auth

__all__ = ["BulkDataConfig", "DicomWebConfig", "MASK"]

MASK = "***"

# OHIF keys this source reads, with the type each must have
_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "friendlyName": str,
    "qidoRoot": str,
    "wadoRoot": str,
    "wadoUriRoot": str,
    "stowRoot": str,
    "wadoUri": str,
    "imageRendering": str,
    "thumbnailRendering": str,
    "qidoSupportsIncludeField": bool,
    "supportsFuzzyMatching": bool,
    "supportsWildcard": bool,
    "staticWado": bool,
    "singlepart": (bool, str),
    "acceptHeader": (list, str),
    "requestTransferSyntaxUID": str,
    "omitQuotationForMultipartRequest": bool,
    "bulkDataURI": Mapping,
    "enableStudyLazyLoad": bool,
    "supportsReject": bool,
    "supportsStow": bool,
    "dicomUploadEnabled": bool,
    "requestOptions": Mapping,
}
# OHIF keys that are read by OHIF's UI or nobody, accepted without a warning
_IGNORED = frozenset(
    {
        "supportsInstanceMetadata",
        "supportsNativeDICOMModel",
        "enableRequestTag",
        "fixBulkdataMultipart",
        "configurationAPI",
        "onConfiguration",
        "thumbnailRequestStrategy",
        "loadMultiframeAsPart10",
        "singlepartRaceTimeMs",
        "dangerouslyAllowedOriginsForAuthenticatedEnvironments",
    }
)
_REQUEST_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "headers": Mapping,
    "auth": (str, Mapping),
    "timeout": (int, float),
    "verify": (bool, str),
    "retries": int,
    "backoff": (int, float),
    "maxWorkers": int,
    "queryEncoding": str,
    "bulkDataAuth": str,
    "deadline": (int, float),
    "maxDecompressedBytes": int,
    "forwardAuthorization": bool,
    "compression": str,
}
_RENDERINGS = ("wadors", "wadouri")
_ENCODINGS = ("minimal", "percent")
_COMPRESSIONS = ("auto", "gzip", "none")


# Records, not dataclasses: a dataclass of thirty fields compiles its methods when this module is
# imported, about 5 ms of creating a source (bench/bench_host_start.py, datasources.records).
class BulkDataConfig(Record):
    _fields = ("enabled", "starts_with", "prefix_with", "relative_resolution", "transform")
    _defaults = {
        "enabled": True,
        "starts_with": None,
        "prefix_with": "",
        "relative_resolution": None,
        "transform": None,
    }

    enabled: bool
    starts_with: str | None
    prefix_with: str
    relative_resolution: str | None
    transform: Callable[[str], str] | None


def _is_loopback(origin: str) -> bool:
    import ipaddress  # here, not at import: creating a source stays off its cost (bench_host_start)

    host = (urlsplit(origin).hostname or "").rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


class DicomWebConfig(Record):
    """The validated configuration, roots without trailing slashes; built by :meth:`from_mapping`."""

    _fields = (
        "raw",
        "qido_root",
        "wado_root",
        "wado_uri_root",
        "stow_root",
        "image_rendering",
        "static_wado",
        "lazy",
        "supports_include_field",
        "supports_fuzzy",
        "supports_wildcard",
        "supports_reject",
        "singlepart",
        "accept_header",
        "transfer_syntax",
        "omit_quotes",
        "bulk",
        "headers",
        "auth",
        "timeout",
        "verify",
        "retries",
        "backoff",
        "max_workers",
        "query_encoding",
        "bulk_data_auth",
        "deadline",
        "max_decompressed_bytes",
        "forward_authorization",
        "compression",
        "root_queries",
    )
    _defaults = {
        "deadline": 300.0,
        "max_decompressed_bytes": 256 << 20,
        "forward_authorization": False,
        "compression": "auto",
        "root_queries": MappingProxyType({}),  # shared, so read-only
    }
    _no_repr = frozenset({"raw", "headers", "root_queries"})

    raw: Mapping[str, Any]
    qido_root: str
    wado_root: str
    wado_uri_root: str | None
    stow_root: str
    image_rendering: str
    static_wado: bool
    lazy: bool
    supports_include_field: bool
    supports_fuzzy: bool
    supports_wildcard: bool
    supports_reject: bool
    singlepart: frozenset[str]
    accept_header: tuple[str, ...]
    transfer_syntax: str
    omit_quotes: bool
    bulk: BulkDataConfig
    headers: Mapping[str, str]
    auth: Credentials
    timeout: float
    verify: bool | str
    retries: int
    backoff: float
    max_workers: int
    query_encoding: str
    bulk_data_auth: str
    deadline: float
    max_decompressed_bytes: int
    forward_authorization: bool
    compression: str
    root_queries: Mapping[str, str]  # root -> its query string

    @property
    def accept_encoding(self) -> str:
        """What the session asks for: gzip, except from a backend on this machine under ``auto``.

        On loopback a compressed answer saves no transfer time and costs the backend a deflate of
        every answer (36 ms of 733 for a 1000-instance series from Orthanc, measured) and us an inflate.
        """
        if self.compression == "none":
            return "identity"
        if self.compression == "auto" and all(_is_loopback(o) for o in self.trusted_origins):
            return "identity"
        return "gzip, deflate"

    @property
    def trusted_origins(self) -> frozenset[str]:
        """The origins the auth header may be sent to: those of the configured roots."""
        roots = [self.qido_root, self.wado_root, self.stow_root, self.wado_uri_root]
        return frozenset(_origin(r) for r in roots if r)

    def public(self) -> dict[str, Any]:
        """A copy for ``get_config()``: callables left out, secrets masked."""
        out: dict[str, Any] = {}
        for key, value in self.raw.items():
            if callable(value):
                continue
            if key in ("qidoRoot", "wadoRoot", "wadoUriRoot", "stowRoot", "wadoUri") and isinstance(value, str):
                out[key] = redact_url(value)
            elif key == "requestOptions" and isinstance(value, Mapping):
                options = {k: v for k, v in value.items() if not callable(v)}
                if "auth" in value:
                    options["auth"] = public_auth(value["auth"])
                if isinstance(value.get("headers"), Mapping):
                    options["headers"] = {k: (MASK if _is_secret_header(k) else v) for k, v in value["headers"].items()}
                out[key] = options
            elif key == "bulkDataURI" and isinstance(value, Mapping):
                out[key] = {k: v for k, v in value.items() if not callable(v)}
            else:
                out[key] = value
        return out

    @classmethod
    def from_mapping(cls, configuration: Mapping[str, Any]) -> DicomWebConfig:
        conf = dict(configuration)
        for key, value in conf.items():
            expected = _TYPES.get(key)
            if expected is None:
                if key not in _IGNORED:
                    warnings.warn(f"dicomweb: unknown configuration key {key!r} is ignored", stacklevel=5)
                continue
            if value is not None and not isinstance(value, expected):
                raise ConfigurationError(f"dicomweb: {key} must be {_type_names(expected)}, not {type(value).__name__}")
        wado_root = _root(conf, "wadoRoot") or _root(conf, "qidoRoot")
        qido_root = _root(conf, "qidoRoot") or wado_root
        if not wado_root or not qido_root:
            raise ConfigurationError("dicomweb: wadoRoot (or qidoRoot) is required")
        rendering = conf.get("imageRendering") or "wadors"
        if rendering not in _RENDERINGS:
            raise ConfigurationError(
                f"dicomweb: imageRendering must be one of {', '.join(_RENDERINGS)}, not {rendering!r}"
            )
        wado_uri_root = _root(conf, "wadoUriRoot")
        if rendering == "wadouri" and not wado_uri_root:
            raise ConfigurationError("dicomweb: imageRendering 'wadouri' needs wadoUriRoot")

        options = dict(conf.get("requestOptions") or {})
        for key, value in options.items():
            expected = _REQUEST_OPTIONS.get(key)
            if expected is None:
                warnings.warn(f"dicomweb: unknown requestOptions key {key!r} is ignored", stacklevel=5)
            elif key == "auth" and callable(value):
                continue
            elif value is not None and (
                not isinstance(value, expected) or (isinstance(value, bool) and expected in (int, (int, float)))
            ):
                raise ConfigurationError(
                    f"dicomweb: requestOptions.{key} must be {_type_names(expected)}, not {type(value).__name__}"
                )
        headers = dict(options.get("headers") or {})
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigurationError("dicomweb: requestOptions.headers must map strings to strings")
        encoding = options.get("queryEncoding", "minimal")
        if encoding not in _ENCODINGS:
            raise ConfigurationError(f"dicomweb: requestOptions.queryEncoding must be one of {', '.join(_ENCODINGS)}")
        compression = options.get("compression") or "auto"
        if compression not in _COMPRESSIONS:
            raise ConfigurationError(
                f"dicomweb: requestOptions.compression must be one of {', '.join(_COMPRESSIONS)}, not {compression!r}"
            )
        bulk_data_auth = options.get("bulkDataAuth", "trusted-origins")
        if bulk_data_auth not in ("trusted-origins", "refuse-others"):
            raise ConfigurationError(
                "dicomweb: requestOptions.bulkDataAuth must be 'trusted-origins' or 'refuse-others'"
            )
        for key in ("timeout", "retries", "maxWorkers", "deadline", "maxDecompressedBytes"):
            if key in options and options[key] is not None and options[key] < (1 if key == "maxWorkers" else 0):
                raise ConfigurationError(f"dicomweb: requestOptions.{key} must not be {options[key]!r}")

        bulk_raw = dict(conf.get("bulkDataURI") or {"enabled": True})
        resolution = bulk_raw.get("relativeResolution")
        if resolution not in (None, "studies", "series"):
            raise ConfigurationError("dicomweb: bulkDataURI.relativeResolution must be 'studies' or 'series'")
        transform = bulk_raw.get("transform")
        if transform is not None and not callable(transform):
            raise ConfigurationError("dicomweb: bulkDataURI.transform must be callable")
        bulk = BulkDataConfig(
            enabled=bool(bulk_raw.get("enabled", True)),
            starts_with=bulk_raw.get("startsWith"),
            prefix_with=bulk_raw.get("prefixWith") or "",
            relative_resolution=resolution,
            transform=transform,
        )
        singlepart = conf.get("singlepart")
        if singlepart is True:
            parts = frozenset({"bulkdata", "video", "pdf", "image", "thumbnail"})
        elif isinstance(singlepart, str):
            parts = frozenset(p.strip() for p in singlepart.split(",") if p.strip())
        else:
            parts = frozenset()
        accept = conf.get("acceptHeader") or ()
        timeout = float(options.get("timeout") or 30)
        verify = options.get("verify", True)
        name = str(conf.get("name") or conf.get("friendlyName") or "dicomweb")
        queries = {}
        for key in ("qidoRoot", "wadoRoot", "stowRoot", "wadoUriRoot"):
            root, query = _split_root(conf.get(key))
            if root and query:
                queries[root] = query
        return cls(
            raw=conf,
            qido_root=qido_root,
            wado_root=wado_root,
            wado_uri_root=wado_uri_root,
            stow_root=_root(conf, "stowRoot") or wado_root,
            image_rendering=rendering,
            static_wado=bool(conf.get("staticWado")),
            lazy=bool(conf.get("enableStudyLazyLoad")),
            supports_include_field=bool(conf.get("qidoSupportsIncludeField", True)),
            supports_fuzzy=bool(conf.get("supportsFuzzyMatching")),
            supports_wildcard=bool(conf.get("supportsWildcard", True)),
            supports_reject=bool(conf.get("supportsReject")),
            singlepart=parts,
            accept_header=(accept,) if isinstance(accept, str) else tuple(accept),
            transfer_syntax=conf.get("requestTransferSyntaxUID") or "*",
            omit_quotes=bool(conf.get("omitQuotationForMultipartRequest")),
            bulk=bulk,
            headers=headers,
            auth=parse_auth(options.get("auth"), source=name, timeout=timeout, verify=verify),
            timeout=timeout,
            verify=verify,
            retries=int(options.get("retries", 3)),
            backoff=float(options.get("backoff", 0.2)),
            max_workers=int(options.get("maxWorkers") or 4),
            query_encoding=encoding,
            bulk_data_auth=bulk_data_auth,
            deadline=float(options.get("deadline") or max(300.0, timeout)),
            max_decompressed_bytes=int(options.get("maxDecompressedBytes") or 256 << 20),
            forward_authorization=bool(options.get("forwardAuthorization", False)),
            compression=compression,
            root_queries=queries,
        )


def _root(conf: Mapping[str, Any], key: str) -> str | None:
    value = conf.get(key)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"dicomweb: {key} must be an http(s) URL, not {value!r}")
    if "@" in parts.netloc:
        raise ConfigurationError(f"dicomweb: {key} must not carry credentials; use requestOptions.auth")
    return _split_root(value)[0]


def _split_root(value: Any) -> tuple[str | None, str]:
    """A root without its query string (and trailing slash), and that query string."""
    if not isinstance(value, str) or not value:
        return None, ""
    root, _, query = value.partition("?")
    return root.split("#", 1)[0].rstrip("/"), query.split("#", 1)[0]


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {"str": "a string", "bool": "true or false", "int": "a whole number", "float": "a number",
             "list": "a list", "Mapping": "a mapping"}  # fmt: skip
    return " or ".join(names.get(t.__name__, t.__name__) for t in types)


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("authorization", "cookie", "proxy-authorization") or "token" in lowered or "key" in lowered
