"""A small real HTTP server on 127.0.0.1 for tests: serves a client's JWKS, plays a downstream API.

Every request is recorded, so a test can assert what the identity server fetched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Seen:
    """One request the host received."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Reply]


class LocalHost:
    """``with LocalHost() as host: host.route("/x", lambda seen: (200, {}, b"hi"))``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                with host._lock:
                    host.seen.append(seen)
                route = host.routes.get(self.path.split("?")[0])
                status, headers, body = route(seen) if route else (404, {}, b"not found")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the test output shows what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def route(self, path: str, reply: Route) -> None:
        self.routes[path] = reply

    def serve_json(self, path: str, body: bytes) -> None:
        self.route(path, lambda _: (200, {"Content-Type": "application/json"}, body))

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.split("?")[0] == path]

    def __enter__(self) -> LocalHost:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
