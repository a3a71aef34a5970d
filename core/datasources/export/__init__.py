"""Export any configured source to a static DICOMweb tree (``datasources export static-wado``).

The tree is what the dicomweb source's ``staticWado`` mode and OHIF's static WADO client
read, served by any static file server or bucket; the layout is in :mod:`.layout`. Needs
fsspec: ``pip install 'datasources[export]'``.
"""

from __future__ import annotations

from .report import ExportProgress, ExportReport, StudyOutcome
from .run import export_static_wado

__all__ = ["ExportProgress", "ExportReport", "StudyOutcome", "export_static_wado"]
