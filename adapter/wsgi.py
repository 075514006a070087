"""OIDCWSGIMiddleware: the WSGI shell (Flask, Django, any WSGI app).

It turns the environ into a :class:`~adapter.web.core.WebRequest`, drives the core's steps with an
``httpx.Client``, and either answers with the core's response or calls the app with
``environ["oidc.identity"]`` set. No protocol decision is made here.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from adapter._shell import SyncSteps, perform, refuse_second_middleware
from adapter._tenancy import Tenancy
from adapter.config import AdapterConfig
from adapter.keys.keyring import KeyRing
from adapter.protocol.client import OIDCClient
from adapter.reload import ReloadStatus
from adapter.state import AdapterState
from adapter.web._steps import Outcome, Proceed, Respond, WebRequest
from adapter.web.entry import (
    MAX_BODY_BYTES,
    MAX_FORM_BYTES,
    UNREAD,
    Credentials,
    Front,
    Unread,
    body_too_large,
    drive,
    failure_response,
    parse_cookie_header,
    parse_form,
    preflight_header,
    private_headers,
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class OIDCWSGIMiddleware:
    """Wrap a WSGI app: login, sessions, logout, bearer checks and ``/k_jwks``."""

    def __init__(
        self,
        app: WSGIApp,
        config: AdapterConfig | str | Path,
        *,
        key_ring: KeyRing | None = None,
        http: httpx.Client | None = None,
        watch: float | None = None,
        sighup: bool = False,
        tenant_resolver: Callable[[Environ], str | None] | None = None,
    ) -> None:
        """``watch`` polls the configuration's files every so many seconds (a daemon thread);
        ``sighup`` reloads on SIGHUP. ``reload()`` reloads now; ``status`` tells how it went.
        A configuration with ``[[tenants]]`` serves each tenant apart (docs/tenants.md);
        ``tenant_resolver`` names a request's tenant from its environ (``None``: the file's
        rules decide)."""
        refuse_second_middleware(app)  # a second one makes every sign-in loop
        self.app = app
        self.tenancy: Tenancy[SyncSteps, Environ] = Tenancy.build(
            config,
            lambda config, ring: OIDCClient(config, key_ring=ring, http=http),
            SyncSteps,  # the core's steps, done sync
            key_ring=key_ring,
            watch=watch,
            sighup=sighup,
            resolver=tenant_resolver,
        )
        first = self.tenancy.sites[0]  # the app's one site, or its first tenant's
        self.shell, self.client = first.shell, first.steps.client
        self._single = self.tenancy.single  # a plain configuration: no choice to make
        self._watch_pid: int | None = None  # the watcher threads run in each worker process
        self._watch = watch if self.tenancy.reloaders() else None
        self._start_watcher()

    def _start_watcher(self) -> None:
        """(Re)start the watchers in this process: a forked worker (gunicorn --preload)
        inherits no threads, so each process starts its own on its first request."""
        if self._watch is None or self._watch_pid == os.getpid():
            return
        self._watch_pid = os.getpid()
        for reloader, _ in self.tenancy.reloaders():  # each tenant watches its own files
            reloader.watch_in_thread(self._watch)

    def reload(self) -> bool:
        """Reload the configuration now (every tenant's); ``False`` when one is broken (it
        keeps its old state; the others take their new one)."""
        return self.tenancy.reload()

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and the key states (the first tenant's, with
        several: ``tenancy.statuses`` has each one's)."""
        return self.shell.status

    def client_for(self, tenant: str | None) -> OIDCClient:
        """Tenant ``tenant``'s client (its service-account tokens, its token calls), as
        ``client`` is a plain app's; ``None``: ``client``. An unknown name: ``ConfigError``."""
        return self.tenancy.site(tenant).steps.client

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._watch is not None and self._watch_pid != os.getpid():
            self._start_watcher()
        path = environ.get("PATH_INFO") or "/"
        path = path if path.isascii() else _text_path(path)  # as the full path reads it
        root_path = _root_path(environ)
        site = self._single
        read: Credentials | Unread = UNREAD  # what choosing a tenant read, if anything
        if site is None:  # several tenants: the request's, and its path as that tenant's
            site, path, root_path, read = self.tenancy.choose(WIRE, environ, path, root_path)
        method = environ.get("REQUEST_METHOD", "GET").upper()  # "delete" is DELETE, as Django
        if site is None:  # no tenant's: decided without a state
            outcome: Outcome = self.tenancy.unclaimed(WIRE, environ, path, method)
        else:
            state, front = site.shell.front()  # one snapshot for the whole request
            https = environ.get("wsgi.url_scheme") == "https"
            shortcut = front.shortcut(WIRE, environ, method, path, root_path, https, read)
            if shortcut is None:
                shortcut = self._full_path(site.steps, state, front, environ, path, root_path)
            outcome = shortcut
        if isinstance(outcome, Respond):
            # Answers are immutable (and shared): the server gets a list of its own (PEP 3333).
            start_response(_STATUS[outcome.status], list(outcome.headers))
            return [outcome.body]
        environ["oidc.identity"] = outcome.identity
        if outcome.preflight:
            return _cors_only(self.app, environ, start_response)
        return self.app(environ, _adding(start_response, outcome))

    def _full_path(
        self,
        steps: SyncSteps,
        state: AdapterState,
        front: Front,
        environ: Environ,
        path: str,
        root_path: str,
    ) -> Outcome:
        """The core decides with a request object, its steps done by ``steps``."""
        try:
            request = self._request(front, environ, path, root_path)
            return drive(front.handle(request), lambda step: perform(step, state, steps))
        except Exception as error:  # never a traceback or a 500 from the adapter itself
            return failure_response(error)

    def _request(
        self, front: Front, environ: Environ, path: str | None = None, root_path: str = ""
    ) -> WebRequest:
        """The request as the core reads it; ``path`` (decoded) and ``root_path`` as its
        tenant sees them (:meth:`Tenancy.choose`; by default, as the environ says)."""
        if path is None:
            path, root_path = _text_path(environ.get("PATH_INFO") or "/"), _root_path(environ)
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        body = _take_body(environ) if front.wants_body(path) else None
        form: dict[str, str] = {}
        if front.wants_form(method, path):
            form = _read_form(environ)
        host = headers.get("host") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        return WebRequest(
            method=method,
            path=path,
            query=str(environ.get("QUERY_STRING", "")),
            headers=headers,
            cookies=parse_cookie_header(headers.get("cookie", "")),
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=host,
            form=form,
            raw_path=quote(path, safe=_RAW_PATH_SAFE),
            root_path=root_path,
            peer=environ.get("REMOTE_ADDR") or None,
            body=body,
        )

    def close(self) -> None:
        """Close the HTTP connections to the identity server; stop hearing session events."""
        for site in self.tenancy:
            site.shell.close()
            site.steps.client.close()


class _WsgiWire:
    """How the entry (:class:`~adapter.web.entry.Wire`) reads a WSGI environ (PEP 3333: the
    server has joined repeated headers; ``HTTP_*`` keys)."""

    __slots__ = ()

    def credentials(self, environ: Environ) -> tuple[str | None, str | None]:
        return environ.get("HTTP_COOKIE"), environ.get("HTTP_AUTHORIZATION")

    def header(self, environ: Environ, name: str) -> str | None:
        key = _ENVIRON_KEYS.get(name) or "HTTP_" + name.upper().replace("-", "_")
        value = environ.get(key)
        return None if value is None else str(value)

    def raw_path(self, environ: Environ, path: str, root_path: str) -> str:
        return quote(path, safe=_RAW_PATH_SAFE)  # PATH_INFO is decoded: quote it again

    def query(self, environ: Environ) -> str:
        return str(environ.get("QUERY_STRING", ""))


WIRE = _WsgiWire()
_ENVIRON_KEYS = {
    name: "HTTP_" + name.upper().replace("-", "_")
    for name in ("if-none-match", "accept", "sec-fetch-mode", "x-requested-with")
}
_RAW_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # PATH_INFO is decoded: a "%" in it is a character
_STATUS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _adding(start_response: StartResponse, outcome: Proceed) -> StartResponse:
    """``start_response`` with the outcome's cookies and, for an identity, the core's
    private-cache headers (:func:`~adapter.web._http.private_headers`) added."""
    if not outcome.set_cookies and not outcome.private:
        return start_response
    extra = [("Set-Cookie", c) for c in outcome.set_cookies]
    private, vary_cookie = outcome.private, outcome.vary_cookie

    def start_with_headers(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        if private:
            headers = [*headers, *(private_headers(headers, vary_cookie) or ())]
        return start_response(status, [*headers, *extra], *exc)

    return start_with_headers


def _cors_only(app: WSGIApp, environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The app's answer to a CORS preflight with its CORS headers only, and no body."""

    def start_cors_only(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        kept = [(k, v) for k, v in headers if preflight_header(k)]
        return start_response(status, [*kept, ("Content-Length", "0")], *exc)

    chunks = app(environ, start_cors_only)
    try:
        for _ in chunks:  # run the app to its end (a lazy app calls start_response here)
            pass
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return [b""]


def _root_path(environ: Environ) -> str:
    """Where the app is mounted (``SCRIPT_NAME``: gunicorn, a WSGI mount, werkzeug's
    ``ProxyFix`` from ``X-Forwarded-Prefix``), without a trailing slash; ``""`` at the root."""
    script_name = environ.get("SCRIPT_NAME")
    return _text_path(str(script_name)).rstrip("/") if script_name else ""


def _text_path(path_info: str) -> str:
    """PEP 3333 passes the path's bytes as Latin-1 text: recover the UTF-8 path (servers that
    already decoded it are left alone)."""
    try:
        return path_info.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return path_info


def _read_form(environ: Environ) -> dict[str, str]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return {}
    if not 0 < length <= MAX_FORM_BYTES:
        return {}
    return parse_form(environ["wsgi.input"].read(length))


def _take_body(environ: Environ) -> bytes | None:
    """The body for the policy enforcer's claims, read up to :data:`MAX_BODY_BYTES` (``None``
    past it, or cut short); ``wsgi.input`` then gives the app the same bytes and the rest of
    the stream. A body announced larger is not read at all (the app streams it); without
    ``CONTENT_LENGTH`` only a terminated input is read (PEP 3333: no length, no body)."""
    stream = environ["wsgi.input"]
    announced = str(environ.get("CONTENT_LENGTH") or "").strip()
    if announced:
        if body_too_large(announced):
            return None
        data = _read(stream, int(announced))
        environ["wsgi.input"] = io.BytesIO(data)
        return data if len(data) == int(announced) else None  # short: the client left
    if not environ.get("wsgi.input_terminated"):
        return b""
    data = _read(stream, MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        environ["wsgi.input"] = _Rejoined(data, stream)
        return None
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))  # the whole body, now of a known length
    return data


def _read(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Rejoined:
    """``wsgi.input`` after a read: the bytes read, then the rest of the server's stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        data = self._head.read(size)
        if size is None or size < 0:
            return data + self._rest.read()
        return data + self._rest.read(size - len(data)) if len(data) < size else data

    def readline(self, size: int | None = -1) -> bytes:
        line = self._head.readline(size)
        if line.endswith(b"\n") or (size is not None and 0 <= size <= len(line)):
            return line
        left = -1 if size is None or size < 0 else size - len(line)
        return line + self._rest.readline(left)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")
