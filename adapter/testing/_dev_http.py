"""The development identity server's side of real HTTP (see :mod:`adapter.testing._dev_issuer`).

A stdlib ``ThreadingHTTPServer`` on a loopback address that hands each request, read whole and
bounded, to one function and writes its :class:`Reply` back. Nothing is logged here: the request
line of an RP-initiated logout carries an ID token, so the issuer reports its own events instead.
"""

from __future__ import annotations

import json
import socket
import socketserver
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

MAX_BODY = 64 * 1024  # a token request or a sign-in form is far smaller
# Every answer says what it is and stays out of frames and caches.
COMMON_HEADERS = (
    ("X-Development-Server", "development identity server - not for production"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(frozen=True)
class DevRequest:
    """One request: method, path (no query), query parameters, headers and body."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Message
    body: bytes

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))

    def form(self) -> dict[str, str]:
        """The ``application/x-www-form-urlencoded`` body (the last of repeated fields)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def params(self) -> dict[str, str]:
        """The query of a GET, the form of a POST."""
        return self.form() if self.method == "POST" else dict(self.query)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, document: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(document).encode(), "application/json", headers)


def html_reply(status: int, page: str) -> Reply:
    csp = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    return Reply(
        status, page.encode(), "text/html; charset=utf-8", (("Content-Security-Policy", csp),)
    )


def redirect(url: str, params: Mapping[str, str] | None = None) -> Reply:
    """A 302 to ``url``, with ``params`` added to its query."""
    if params:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
    return Reply(302, b"", headers=(("Location", url),))


def oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


Application = Callable[[DevRequest], Reply]


class DevHTTPServer(ThreadingHTTPServer):
    """``application`` served on ``host``:``port`` (IPv4 or IPv6), one thread per request."""

    daemon_threads = True

    def __init__(self, host: str, port: int, application: Application) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.application = application
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's name (slow, and never needed here).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: DevHTTPServer

    def version_string(self) -> str:
        return "oidc-adapter-dev-server"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._send(Reply(413 if length > 0 else 400, b"bad Content-Length\n"))
            return
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        request = DevRequest(self.command, parts.path, query, self.headers, body)
        self._send(self.server.application(request))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in (*COMMON_HEADERS, *reply.headers):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # request lines may carry tokens (id_token_hint): the issuer reports events
