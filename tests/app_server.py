"""An app behind the middleware served over real HTTP on 127.0.0.1, for tests in which the
identity server must reach the app itself (back-channel logout, fetching ``/k_jwks``).

    with serve("asgi", app) as url: ...      # uvicorn in a thread
    with serve("wsgi", app) as url: ...      # wsgiref's threading server in a thread
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The least WSGI app: what a middleware in front of it adds is all there is."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def answer_lifespan(
    receive: Any, send: Any, shutdown: Callable[[], Awaitable[None]] | None = None
) -> None:
    """An ASGI test app's part of the lifespan protocol: started at once, ``shutdown`` awaited
    (if given) when the server stops, then stopped. For ``scope["type"] == "lifespan"``."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    if shutdown is not None:
        await shutdown()
    await send({"type": "lifespan.shutdown.complete"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def serve(
    shell: str, app: Any, port: int | None = None, http: str = "auto", lifespan: str = "on"
) -> Iterator[str]:
    """Serve ``app`` on ``port`` (a free one by default) until the block ends; yields its URL.
    ``http`` picks uvicorn's HTTP parser (``h11`` passes a lower-case method on as sent);
    ``lifespan = "off"`` for apps without it (Django's ASGI handler)."""
    port = port or free_port()
    if shell == "wsgi":
        server = make_server(
            "127.0.0.1", port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        return
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, http=http
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:  # uvicorn's own readiness flag: set once it accepts connections
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)  # polling the flag above, not waiting for time to pass
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


class LateApp:
    """A WSGI app given after its server listens: serve it first, so that its port is taken
    before another server (an identity server on port 0) could get it, then set ``app``."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"starting\n"]
        return self.app(environ, start_response)
