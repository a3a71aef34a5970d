"""A self-signed certificate for 127.0.0.1, made by openssl, and a server context that serves it:
TLS tests on loopback trust exactly this file (or refuse it with the system's CAs)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

__all__ = ["self_signed"]


def self_signed(directory: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """``(cert.pem, key.pem, server context)`` in ``directory``; fails (never skips) without openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, key, context
