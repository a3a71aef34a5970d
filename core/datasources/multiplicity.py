"""Value multiplicity and numeric VRs from pydicom's dictionary: which attributes are always lists.

The value contract (docs/contracts.md, "Values") in two tables built once: attributes whose
dictionary VM allows several values, and those plus the DS/IS ones (the keys whose single value
needs more than unwrapping); and the DS/IS parsing that makes DS a float and IS an int.
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import MalformedResponseError

__all__ = ["is_multi_valued"]

_lock = threading.Lock()
# keywords and tags of attributes whose dictionary VM allows several values (built on first use),
# and those plus the DS/IS ones: the keys whose single value needs more than unwrapping
_MULTI: set[str] = set()
_SPECIAL: set[str] = set()


def _multi_keys() -> set[str]:
    with _lock:
        if not _MULTI:
            from pydicom.datadict import DicomDictionary

            numeric = set()
            for tag, entry in DicomDictionary.items():
                if not entry[4]:
                    continue
                if entry[1] != "1":
                    _MULTI.update((entry[4], f"{tag:08X}"))
                if entry[0] in ("DS", "IS"):
                    numeric.update((entry[4], f"{tag:08X}"))
            _SPECIAL.update(_MULTI | numeric)
    return _MULTI


def is_multi_valued(key: str) -> bool:
    """True when the dictionary lets ``key`` (a keyword or 8-hex tag) hold several values: always a list."""
    return key in (_MULTI or _multi_keys())


def _number(value: Any, vr: str) -> Any:
    """DS is a float and IS an int, whether a server sent a JSON number or a string."""
    if value is None or value == "":
        return None
    if vr == "DS":
        if value.__class__ is float:
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MalformedResponseError(f"not a DS number: {value!r}") from None
    if value.__class__ is int:
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise MalformedResponseError(f"not an IS number: {value!r}") from None
        return int(number) if number.is_integer() else number
