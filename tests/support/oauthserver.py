"""A real OAuth2 token endpoint on 127.0.0.1 issuing short-lived tokens, and a proxy that checks them.

:class:`TokenServer` answers ``POST /token`` (RFC 6749: ``client_credentials`` and
``refresh_token`` grants, client authentication by HTTP basic or in the form) with bearer tokens
that expire after ``lifetime`` seconds; refresh tokens rotate when ``rotate`` is set. Tests can
revoke every access token (the next request gets 401) or a refresh token (the next refresh gets
``invalid_grant``), and count the tokens issued.

:class:`AuthProxy` stands in front of a real server (Orthanc): a request without a live token
from the token server gets 401 with ``WWW-Authenticate: Bearer``; the others are passed on and
the answer sent back as it came. Every request is recorded with whether its token was live::

    with TokenServer(lifetime=2) as tokens, AuthProxy(orthanc.url, tokens) as proxy:
        tokens.add_client("viewer", "s3cret")
        ...  # point a source at proxy.url with tokenUrl=tokens.token_url
        assert tokens.issued == 3 and not proxy.refused
"""

from __future__ import annotations

import base64
import http.server
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
import requests

__all__ = ["AuthProxy", "TokenServer"]


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread, as a context manager."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class TokenServer(_Server):
    def __init__(self, lifetime: float = 2.0, rotate: bool = False) -> None:
        self.lifetime = lifetime
        self.rotate = rotate
        self.clients: dict[str, str] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> client id
        self.access: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.issued = 0
        self.grants: list[str] = []
        self.every_token: list[str] = []  # everything ever issued, to look for in logs
        self.service_accounts: dict[str, Any] = {}  # client_email -> RSA public key (JWT-bearer grant)
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                status, answer = outer._token(self.path, dict(parse_qsl(body)), self.headers.get("Authorization"))
                payload = orjson.dumps(answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.token_url = f"{self.url}/token"

    def add_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def add_refresh_token(self, client_id: str) -> str:
        token = f"rt-{secrets.token_hex(8)}"
        with self.lock:
            self.refresh_tokens[token] = client_id
            self.every_token.append(token)
        return token

    def add_service_account(self, email: str, public_key: Any) -> None:
        """Accept RS256 JWT assertions signed by this key (RFC 7523, as Google service accounts send)."""
        self.service_accounts[email] = public_key

    def _assertion_ok(self, assertion: str) -> bool:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def decode(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            header, payload, signature = assertion.split(".")
            claims = orjson.loads(decode(payload))
            key = self.service_accounts[claims["iss"]]
            key.verify(decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return False
        # google-auth names Google's own token URI as the audience, whatever token_uri it posts to
        return bool(claims.get("aud")) and float(claims.get("exp", 0)) > time.time()

    def revoke_access(self) -> None:
        """Every access token issued so far is refused from now on."""
        with self.lock:
            self.access.clear()

    def revoke_refresh(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def is_live(self, token: str) -> bool:
        with self.lock:
            expiry = self.access.get(token)
        return expiry is not None and time.monotonic() < expiry

    def _client(self, form: dict[str, str], header: str | None) -> str | None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if header and header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        if client_id is None or self.clients.get(client_id) != secret:
            return None
        return client_id

    def _token(self, path: str, form: dict[str, str], header: str | None) -> tuple[int, dict[str, Any]]:
        if path.partition("?")[0] != "/token":
            return 404, {"error": "not_found"}
        grant = form.get("grant_type", "")
        client = self._client(form, header)
        with self.lock:
            self.grants.append(grant)
            if grant == "client_credentials":
                if client is None:
                    return 401, {"error": "invalid_client"}
                refresh = None
            elif grant == "refresh_token":
                owner = self.refresh_tokens.get(form.get("refresh_token", ""))
                if owner is None or (client is not None and owner != client):
                    return 400, {"error": "invalid_grant", "error_description": "the refresh token is not valid"}
                refresh = None
                if self.rotate:
                    del self.refresh_tokens[form["refresh_token"]]
                    refresh = f"rt-{secrets.token_hex(8)}"
                    self.refresh_tokens[refresh] = owner
                    self.every_token.append(refresh)
            elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                if not self._assertion_ok(form.get("assertion", "")):
                    return 400, {"error": "invalid_grant"}
                refresh = None
            else:
                return 400, {"error": "unsupported_grant_type"}
            token = f"at-{secrets.token_hex(12)}"
            self.access[token] = time.monotonic() + self.lifetime
            self.every_token.append(token)
            self.issued += 1
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        if refresh:
            answer["refresh_token"] = refresh
        return 200, answer


@dataclass
class Seen:
    method: str
    path: str
    live: bool  # the request carried a live token
    authorization: str | None = None  # the header as received


class AuthProxy(_Server):
    def __init__(self, upstream: str, tokens: TokenServer) -> None:
        self.upstream = upstream.rstrip("/")
        self.tokens = tokens
        self.seen: list[Seen] = []
        self._session = requests.Session()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                header = self.headers.get("Authorization") or ""
                live = header.startswith("Bearer ") and outer.tokens.is_live(header[7:])
                outer.seen.append(Seen(self.command, self.path.partition("?")[0], live, header or None))
                if not live:
                    self._answer(401, b'{"error": "invalid_token"}', {"Content-Type": "application/json",
                                 "WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
                    return
                forwarded = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "content-type")}
                answer = outer._session.request(
                    self.command, outer.upstream + self.path, data=body, headers=forwarded, timeout=60
                )
                keep = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "location")}
                self._answer(answer.status_code, answer.content, keep)

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def refused(self) -> list[Seen]:
        return [s for s in self.seen if not s.live]

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._session.close()
