"""The ``dicomlocal`` source: a folder of DICOM files, indexed into SQLite, searched like QIDO-RS."""

from .source import create_dicomlocal_api

__all__ = ["create_dicomlocal_api"]
