"""The configuration of a ``dicomlocal`` source, checked in the factory (no I/O there).

A wrong type is a :class:`~datasources.errors.ConfigurationError` naming the key; an unknown
key is a warning naming it (OHIF configurations carry keys only its UI reads).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasources.errors import ConfigurationError

__all__ = ["INDEX_FILE_NAME", "LocalConfig", "default_cache_folder"]

#: The index file's name when it sits in the root folder, next to the data.
INDEX_FILE_NAME = ".datasources-index.sqlite"

# key -> (accepted types, default)
_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "root": ((str, os.PathLike), None),
    "cache": ((str, os.PathLike), None),
    "friendlyName": ((str,), None),
    "name": ((str,), None),
    "recursive": ((bool,), True),
    "followSymlinks": ((bool,), False),
    "readOnly": ((bool,), False),
    "indexOnInitialize": ((bool,), True),
}
_TYPE_NAMES = {str: "a string", os.PathLike: "a path", bool: "true or false"}
# keys OHIF's local source or its UI carries; accepted without a warning
_OHIF_KEYS = frozenset({"sourceName", "configurationAPI"})


def default_cache_folder() -> Path:
    """Where the index goes when the root folder cannot be written: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datasources"


@dataclass(frozen=True)
class LocalConfig:
    """A checked ``dicomlocal`` configuration; paths absolute, nothing read from disk yet."""

    root: Path
    cache: Path | None
    friendly_name: str | None
    name: str | None
    recursive: bool
    follow_symlinks: bool
    read_only: bool
    index_on_initialize: bool

    @classmethod
    def from_mapping(cls, configuration: Mapping[str, Any]) -> LocalConfig:
        if not isinstance(configuration, Mapping):
            kind = type(configuration).__name__
            raise ConfigurationError(f"dicomlocal: the configuration must be a mapping, not {kind}")
        for key in configuration:
            if key not in _KEYS and key not in _OHIF_KEYS:
                warnings.warn(f"dicomlocal: unknown configuration key {key!r} is ignored", stacklevel=4)
        values: dict[str, Any] = {}
        for key, (types, default) in _KEYS.items():
            value = configuration.get(key, default)
            if value is None:
                values[key] = default
                continue
            # bool is an int: an explicit check keeps 0/1 out of boolean keys and True out of paths
            is_bool = isinstance(value, bool)
            ok = is_bool if bool in types else (isinstance(value, types) and not is_bool)
            if not ok:
                wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
                raise ConfigurationError(f"dicomlocal: {key} must be {wanted}, not {type(value).__name__} {value!r}")
            values[key] = value
        root = values["root"]
        if root is None or not os.fspath(root).strip():
            raise ConfigurationError("dicomlocal: root (the folder of DICOM files) is required")
        cache = values["cache"]
        if cache is not None and not os.fspath(cache).strip():
            raise ConfigurationError("dicomlocal: cache must be a folder or an index file path, not empty")
        return cls(
            root=Path(os.path.abspath(os.path.expanduser(os.fspath(root)))),
            cache=Path(os.path.abspath(os.path.expanduser(os.fspath(cache)))) if cache is not None else None,
            friendly_name=values["friendlyName"],
            name=values["name"],
            recursive=values["recursive"],
            follow_symlinks=values["followSymlinks"],
            read_only=values["readOnly"],
            index_on_initialize=values["indexOnInitialize"],
        )

    def index_file(self) -> Path:
        """Where the SQLite index lives (this checks the disk: call it from ``initialize``).

        ``cache`` naming a ``.sqlite``/``.db`` file is used as is; ``cache`` naming a folder
        holds one index per root; without ``cache`` the index sits in the root, or in the
        user's cache folder when the root cannot be written.
        """
        if self.cache is not None:
            if self.cache.suffix.lower() in (".sqlite", ".sqlite3", ".db") and not self.cache.is_dir():
                return self.cache
            return self.cache / self._cache_name()
        if os.access(self.root, os.W_OK):
            return self.root / INDEX_FILE_NAME
        return default_cache_folder() / self._cache_name()

    def _cache_name(self) -> str:
        digest = hashlib.sha256(os.fsencode(os.path.realpath(self.root))).hexdigest()[:16]
        return f"dicomlocal-{digest}.sqlite"

    def public(self) -> dict[str, Any]:
        """What ``get_config()`` hands out: plain, serialisable values."""
        out: dict[str, Any] = {
            "dicomUploadEnabled": not self.read_only,
            "root": str(self.root),
            "recursive": self.recursive,
            "followSymlinks": self.follow_symlinks,
            "readOnly": self.read_only,
            "indexOnInitialize": self.index_on_initialize,
        }
        if self.cache is not None:
            out["cache"] = str(self.cache)
        if self.friendly_name is not None:
            out["friendlyName"] = self.friendly_name
        if self.name is not None:
            out["name"] = self.name
        return out
