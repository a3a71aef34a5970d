"""Whether a data source takes ``store.dicom`` at all, known without calling it (or reading a body).

One rule for every source: a ``store.dicom`` member that is a ``not_supported`` placeholder,
or a ``get_config()`` that says ``readOnly: true`` or ``dicomUploadEnabled: false`` (explicitly:
an absent key stays allowed). The gateway refuses a STOW with 405 on it before reading the
body; a merge source offers upload when its default member takes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DataSourcesError

__all__ = ["store_refusal"]


def store_refusal(data_source: Any) -> str | None:
    """Why ``data_source`` cannot store instances at all; None when it may (its backend decides)."""
    member = data_source.store.dicom
    reason = getattr(member, "not_supported_reason", None)
    if reason is not None or getattr(member, "not_supported", False):
        return reason or "the data source cannot store instances (read-only)"
    try:
        config = data_source.get_config()
    except DataSourcesError:
        return None
    if isinstance(config, Mapping):
        if config.get("readOnly") is True:
            return "the data source is configured readOnly"
        if config.get("dicomUploadEnabled") is False:
            return "the data source is configured dicomUploadEnabled: false"
    return None
