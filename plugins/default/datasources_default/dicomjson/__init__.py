"""The ``dicomjson`` source: studies from one OHIF DICOM JSON file (a path or an http(s) URL)."""

from .source import create_dicomjson_api

__all__ = ["create_dicomjson_api"]
