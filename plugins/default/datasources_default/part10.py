"""Part-10 bytes of a pydicom Dataset: what a server stores and a folder keeps, shared by the sources."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["to_part10"]


def to_part10(item: Any) -> bytes:
    """A pydicom Dataset as Part-10 bytes (preamble, DICM, file meta), as a file on disk must be."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    ds = item.copy()
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = getattr(ds, "preamble", None) or b"\0" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
