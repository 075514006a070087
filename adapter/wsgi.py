"""OIDCWSGIMiddleware: the WSGI shell (Flask, Django, any WSGI app).

It turns the environ into a :class:`~adapter.web.core.WebRequest`, drives the core's steps with an
``httpx.Client``, and either answers with the core's response or calls the app with
``environ["oidc.identity"]`` set. No protocol decision is made here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from adapter.config import AdapterConfig
from adapter.keys.keyring import KeyRing
from adapter.protocol.client import OIDCClient
from adapter.reload import ReloadStatus
from adapter.web._shell import ShellSupport, SyncSteps, perform
from adapter.web.core import (
    MAX_FORM_BYTES,
    Proceed,
    Respond,
    WebCore,
    WebRequest,
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
    ) -> None:
        """``watch`` polls the configuration's files every so many seconds (a daemon thread);
        ``sighup`` reloads on SIGHUP. ``reload()`` reloads now; ``status`` tells how it went."""
        self.app = app
        self.client = OIDCClient(config, key_ring=key_ring, http=http)
        self.shell = ShellSupport(config, self.client, watch)
        self._steps = SyncSteps(self.shell, self.client)  # the core's steps, done sync
        reloader = self.shell.reloader
        self._watch_pid: int | None = None  # the watcher thread runs in each worker process
        self._watch = watch if reloader is not None else None
        self._start_watcher()
        if sighup and reloader is not None:
            reloader.install_sighup()

    def _start_watcher(self) -> None:
        """(Re)start the watcher in this process: a forked worker (gunicorn --preload)
        inherits no threads, so each process starts its own on its first request."""
        reloader = self.shell.reloader
        if self._watch is not None and reloader is not None and self._watch_pid != os.getpid():
            self._watch_pid = os.getpid()
            reloader.watch_in_thread(self._watch)

    def reload(self) -> bool:
        """Reload the configuration now; ``False`` (old state kept) when it is broken."""
        return self.shell.reload()

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and the key states."""
        return self.shell.status

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._watch is not None and self._watch_pid != os.getpid():
            self._start_watcher()
        state, core = self.shell.core()  # one snapshot for the whole request
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()  # "delete" is DELETE, as in Django
        if path == core.jwks_path and method in ("GET", "HEAD"):  # hot path: built once
            answer = core.jwks_response(method, environ.get("HTTP_IF_NONE_MATCH"))
            assert answer is not None
            # Answers are immutable (and shared): the server gets a list of its own (PEP 3333).
            start_response(_STATUS[answer.status], list(answer.headers))
            return [answer.body]
        cookie = environ.get("HTTP_COOKIE")
        text_path = path if path.isascii() else _text_path(path)  # as the full path reads it
        if not cookie and "HTTP_AUTHORIZATION" not in environ:  # anonymous: decided at once
            if core.anonymous_passes(method, text_path):
                environ["oidc.identity"] = None
                return self.app(environ, start_response)
            if core.anonymous_refusal(method, text_path):
                answer = core.unauthenticated(
                    method,
                    quote(text_path, safe=_RAW_PATH_SAFE),
                    str(environ.get("QUERY_STRING", "")),
                    _root_path(environ),
                    environ.get("HTTP_ACCEPT", ""),
                    environ.get("HTTP_SEC_FETCH_MODE"),
                    environ.get("HTTP_X_REQUESTED_WITH"),
                )
                start_response(_STATUS[answer.status], list(answer.headers))  # its own list
                return [answer.body]
        https = environ.get("wsgi.url_scheme") == "https"
        authorization = environ.get("HTTP_AUTHORIZATION")
        decided = core.remembered(  # a bearer token or session cookie seen before
            method, text_path, authorization, cookie, https, _root_path(environ) if cookie else ""
        )
        if decided is not None:
            environ["oidc.identity"] = decided.identity
            return self.app(environ, _adding(start_response, decided))
        try:
            request = self._request(core, environ)
            outcome = drive(core.handle(request), lambda step: perform(step, state, self._steps))
        except Exception as error:  # never a traceback or a 500 from the adapter itself
            outcome = failure_response(error)
        if isinstance(outcome, Respond):
            start_response(_STATUS[outcome.status], list(outcome.headers))  # its own list
            return [outcome.body]
        environ["oidc.identity"] = outcome.identity
        if outcome.preflight:
            return _cors_only(self.app, environ, start_response)
        return self.app(environ, _adding(start_response, outcome))

    def _request(self, core: WebCore, environ: Environ) -> WebRequest:
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/")) or "/"
        form: dict[str, str] = {}
        if core.wants_form(method, path):
            form = _read_form(environ)
        host = headers.get("host") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        return WebRequest(
            method=method,
            path=_text_path(path),
            query=str(environ.get("QUERY_STRING", "")),
            headers=headers,
            cookies=parse_cookie_header(headers.get("cookie", "")),
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=host,
            form=form,
            raw_path=quote(_text_path(path), safe=_RAW_PATH_SAFE),
            root_path=_root_path(environ),
        )

    def close(self) -> None:
        """Close the HTTP connections to the identity server; stop hearing session events."""
        self.shell.close()
        self.client.close()


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
