"""The dicomweb source: QIDO-RS, WADO-RS and STOW-RS over one pooled requests session."""

from .source import create_dicomweb_api

__all__ = ["create_dicomweb_api"]
