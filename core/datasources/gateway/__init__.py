"""The DICOMweb gateway: any configured source served as standard DICOMweb (``datasources serve``).

Needs the optional extra: ``pip install 'datasources[gateway]'`` (Starlette, uvicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Gateway, create_app

__all__ = ["Gateway", "create_app"]


def __getattr__(name: str) -> Any:
    # Starlette is imported only when the gateway is used, so `import datasources.gateway` is cheap
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
