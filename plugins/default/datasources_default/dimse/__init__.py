"""The ``dimse`` source: a DIMSE PACS (C-ECHO, C-FIND, C-GET/C-MOVE, C-STORE) through pynetdicom."""

from .source import DimseSource, create_dimse_api

__all__ = ["DimseSource", "create_dimse_api"]
