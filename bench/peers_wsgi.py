"""Issue 26's peer rows for WSGI sign-in: the adapter against what a Django or Flask user would
install instead, each a whole in-process WSGI request (no sockets), one call each, turn about
(``bench.measure.alternated``), as a ratio adapter / peer (target ≤ 1.0).

- **Django session request** (``mozilla-django-oidc`` with its ``SessionRefresh`` middleware):
  the same ``@login_required`` view of the same Django project (default middleware stack,
  database sessions, SQLite in memory) behind each. The peer's user is logged in to Django's
  session as its callback leaves it (``auth.login`` with its backend, the ID token's renewal
  time ``oidc_id_token_expiration``), written before the clock runs; the adapter's session is
  one it has seen before (its cookie's decision remembered, its Django session logged in by
  ``adapter.integrations.django.OIDCMiddleware`` on the first request).
- **DRF bearer** (``mozilla-django-oidc``'s ``OIDCAuthentication``): the same DRF view, a
  bearer access token of the bench identity server. The peer asks the userinfo endpoint on
  every request (its design: it documents no cache), answered in-process through a
  ``requests`` transport adapter (as ``requests-mock`` does); the adapter checks the token
  itself (signature, issuer, audience, expiry) once and remembers it, and its Django
  middleware sets ``request.user``, which :func:`adapter_drf_authentication` hands to DRF.
- **Flask session request** (``flask-oidc`` 2.x, authlib underneath): a login-required view;
  the peer's token and profile in Flask's signed session cookie as its ``/authorize`` view
  leaves them, the adapter's sealed session cookie seen before.

Django's settings are process-wide and set once: the Django rows run in a child process of
their own (``bench/_django_peer_settings.py`` is its project), so that neither a test worker
that has set Django up for the example project (``tests/django_site.py``) nor one that will
later can meet another configuration. The Flask row runs in this process.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench.measure import Row, alternated
from bench.requests import ISSUER, SECRET, config, identity_server, session_cookie, wsgi_caller

TARGET = 1.0  # the adapter faster than, or as fast as, the peer
DJANGO_SESSION = "Django session request: oidc-adapter vs mozilla-django-oidc (SessionRefresh)"
DRF_BEARER = "DRF bearer: oidc-adapter vs mozilla-django-oidc (OIDCAuthentication)"
FLASK_SESSION = "Flask session request: oidc-adapter vs flask-oidc"
EMAIL = "alice@example.com"


def peer_wsgi_rows(number: int, rounds: int) -> list[Row]:
    """The three rows; ``number * rounds / 3`` calls of each side, turn about."""
    calls = max(4, number * rounds // 3)
    return [*django_rows(calls), flask_row(calls)]


def versions(*names: str) -> str:
    """The installed versions of ``names``, for the rows' notes."""
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


DJANGO_PEERS = ("mozilla-django-oidc", "Django")


# --- in-process answers for the peers' ``requests`` calls ---------------------------------------


class InProcessAdapter:
    """A ``requests`` transport adapter answering from a function, with no socket: what
    ``requests-mock`` mounts. ``answer(request) -> (status, JSON body)``; ``calls`` counts."""

    def __init__(self, answer: Callable[[Any], tuple[int, object]]) -> None:
        self.answer = answer
        self.calls = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        import requests
        from requests.structures import CaseInsensitiveDict

        self.calls += 1
        status, body = self.answer(request)
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status == 200 else "Unauthorized"
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        response._content = json.dumps(body).encode()
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        return None


@contextmanager
def answered_in_process(prefix: str, adapter: InProcessAdapter) -> Iterator[None]:
    """Every ``requests`` session (``requests.get`` makes one per call) sends URLs under
    ``prefix`` to ``adapter`` while this lasts; other URLs as before."""
    import requests

    original = requests.Session.get_adapter

    def get_adapter(self: Any, url: str) -> Any:
        return adapter if url.startswith(prefix) else original(self, url)

    requests.Session.get_adapter = get_adapter  # type: ignore[method-assign]
    try:
        yield
    finally:
        requests.Session.get_adapter = original  # type: ignore[method-assign]


# --- one WSGI request, for the checks before the clock runs ------------------------------------


def respond(
    app: Any, cookie: str | None = None, path: str = "/", headers: Mapping[str, str] | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, headers and body of one request (the environ of ``bench.requests.wsgi_caller``)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "app",
        "SERVER_PORT": "80",
        "HTTP_HOST": "app.example.com",
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.errors": io.StringIO(),
        "wsgi.input": io.BytesIO(b""),
        **({"HTTP_COOKIE": cookie} if cookie else {}),
        **(headers or {}),
    }
    answer: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], *exc: Any) -> None:
        answer.extend((status, response_headers))

    body = app(environ, start_response)
    content = b"".join(body)
    if hasattr(body, "close"):
        body.close()
    return answer[0], answer[1], content


def set_cookies(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The cookies a response sets (name -> value)."""
    found = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            pair = value.split(";", 1)[0]
            key, _, cookie = pair.partition("=")
            found[key.strip()] = cookie.strip()
    return found


# --- Django and DRF: in a child process ---------------------------------------------------------


def django_rows(calls: int) -> list[Row]:
    """The Django and DRF rows, measured in a child process (Django configured there only)."""
    code = "import sys; from bench.peers_wsgi import django_child; django_child(int(sys.argv[1]))"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(calls)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the Django peer rows failed:\n{done.stderr[-4000:]}")
    return [Row(**fields) for fields in json.loads(done.stdout.strip().splitlines()[-1])]


def django_child(calls: int) -> None:
    """The child's work: the rows as one JSON line on stdout."""
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-django-peers-") as directory:
        rows = django_rows_here(calls, Path(directory))
    fields = ("name", "value", "baseline", "target", "note")
    print(json.dumps([{key: getattr(row, key) for key in fields} for row in rows]))


def adapter_drf_authentication() -> type:
    """The adapter in DRF: it has no DRF authentication class of its own, so this is the
    smallest honest one. The adapter's WSGI middleware has checked the bearer token before
    Django runs (a bad one never reaches it: 401), and ``adapter.integrations.django``'s
    middleware has set ``request.user`` to the identity's Django user for this request; this
    class hands that user to DRF for requests that carried a token (a browser's session
    cookie is left to DRF's ``SessionAuthentication``, which checks CSRF)."""
    from rest_framework.authentication import BaseAuthentication

    class AdapterBearerAuthentication(BaseAuthentication):  # type: ignore[misc]
        def authenticate(self, request: Any) -> tuple[Any, Any] | None:
            django_request = request._request
            identity = getattr(django_request, "oidc_identity", None)
            if identity is None or "HTTP_AUTHORIZATION" not in django_request.META:
                return None
            user = django_request.user
            return (user, identity) if user.is_authenticated else None

        def authenticate_header(self, request: Any) -> str:
            return 'Bearer realm="api"'

    return AdapterBearerAuthentication


def django_rows_here(calls: int, directory: Path) -> list[Row]:
    """Configure Django (this process must not have done so), build both sides, check that
    each answers as signed in, and time them; the adapter's configuration in ``directory``."""
    import django
    from django.conf import settings

    from bench import _django_peer_settings as project

    adapter_toml = directory / "adapter.toml"
    adapter_toml.write_text(
        f'issuer = "{ISSUER}"\nclient-id = "app"\npublic-client = true\n'
        f'session-secret = "{SECRET}"\ntoken-audiences = ["api"]\n'
    )
    adapter_toml.chmod(0o600)
    settings.configure(**project.django_settings(str(adapter_toml)))
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test.utils import override_settings

    from adapter.integrations.django import wrap

    call_command("migrate", verbosity=0, interactive=False)
    project.install_urls()
    made = identity_server()
    with override_settings(MIDDLEWARE=project.middleware(project.ADAPTER_MIDDLEWARE)):
        ours = wrap(WSGIHandler(), http=httpx.Client(transport=httpx.MockTransport(made.idp)))
    with override_settings(MIDDLEWARE=project.middleware(project.SESSION_REFRESH)):
        theirs = WSGIHandler()
    return [django_session_row(ours, theirs, calls), drf_row(ours, theirs, made.token(0), calls)]


def django_session_row(ours: Any, theirs: Any, calls: int) -> Row:
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.utils.module_loading import import_string
    from mozilla_django_oidc.auth import default_username_algo

    from bench import _django_peer_settings as project

    # The adapter: its session cookie; the first request logs the user in to Django's session.
    oidc_cookie = session_cookie(ours)
    status, headers, body = respond(ours, oidc_cookie)
    assert status.startswith("200"), (status, body)
    assert body == b"hello alice", body
    django_cookies = set_cookies(headers)
    assert {"sessionid", "csrftoken"} <= set(django_cookies), django_cookies
    ours_cookie = "; ".join(
        [oidc_cookie, *(f"{name}={value}" for name, value in django_cookies.items())]
    )
    assert respond(ours, ours_cookie)[::2] == ("200 OK", b"hello alice")
    assert not set_cookies(respond(ours, ours_cookie)[1]), "a session seen before: no new cookie"

    # mozilla-django-oidc: its user (username from the email, as its backend makes it), logged
    # in to Django's session as its callback view leaves it.
    user = get_user_model().objects.create_user(default_username_algo(EMAIL), email=EMAIL)
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")

    def logged_in(expiration: float) -> str:
        store = store_class()
        store[SESSION_KEY] = user._meta.pk.value_to_string(user)
        store[BACKEND_SESSION_KEY] = project.MOZILLA_BACKEND
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store["oidc_states"] = {}  # the callback deletes its state from it, leaving it empty
        store["oidc_id_token_expiration"] = expiration
        store.save()
        # The browser holds the CSRF cookie that auth.login() rotated, as on the adapter's side.
        return f"sessionid={store.session_key}; csrftoken={django_cookies['csrftoken']}"

    # OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS' default: 15 minutes.
    theirs_cookie = logged_in(time.time() + 15 * 60)
    status, headers, body = respond(theirs, theirs_cookie)
    assert (status, body) == ("200 OK", f"hello {user.username}".encode()), (status, body)
    assert not set_cookies(headers)
    # SessionRefresh is on: the same session past its renewal time goes to the server.
    status, headers, _ = respond(theirs, logged_in(time.time() - 1))
    assert status.startswith("302"), status
    assert dict(headers)["Location"].startswith(ISSUER), headers
    assert respond(theirs)[0].startswith("302"), "anonymous: login_required redirects"

    ours_t, theirs_t = alternated(
        wsgi_caller(ours, ours_cookie), wsgi_caller(theirs, theirs_cookie), calls
    )
    return Row(
        DJANGO_SESSION,
        ours_t,
        theirs_t,
        TARGET,
        note=(
            "the same @login_required view, Django's default middleware, database sessions "
            "(SQLite in memory) on both sides; the peer compares a time in Django's session, "
            "the adapter finds its sealed cookie's remembered decision and compares an identity "
            f"digest in Django's session; {versions(*DJANGO_PEERS)}"
        ),
    )


def drf_row(ours: Any, theirs: Any, token: str, calls: int) -> Row:
    from mozilla_django_oidc.auth import default_username_algo

    from bench import _django_peer_settings as project

    mozilla_user = default_username_algo(EMAIL)  # the user it finds by the userinfo's email

    claims = {
        "sub": "u0",
        "email": EMAIL,
        "email_verified": True,
        "name": "Alice",
        "preferred_username": "alice",
    }

    def userinfo(request: Any) -> tuple[int, object]:
        if request.url == project.USERINFO and request.headers["Authorization"] == (
            f"Bearer {token}"
        ):
            return 200, claims
        return 401, {"error": "invalid_token"}

    server = InProcessAdapter(userinfo)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    with answered_in_process(ISSUER, server):
        status, _, body = respond(theirs, path="/api/mozilla", headers=bearer)
        assert (status, json.loads(body)) == ("200 OK", {"user": mozilla_user}), (status, body)
        assert server.calls == 1
        status, _, body = respond(ours, path="/api/adapter", headers=bearer)
        assert (status, json.loads(body)) == ("200 OK", {"user": "u0"}), (status, body)
        assert server.calls == 1, "the adapter asks no userinfo"
        for app, path in ((theirs, "/api/mozilla"), (ours, "/api/adapter")):
            wrong = {"HTTP_AUTHORIZATION": f"Bearer {token[:-4]}AAAA"}
            assert respond(app, path=path, headers=wrong)[0][:3] in ("401", "403")
        server.calls = 0
        ours_t, theirs_t = alternated(
            wsgi_caller(ours, path="/api/adapter", headers=bearer),
            wsgi_caller(theirs, path="/api/mozilla", headers=bearer),
            calls,
        )
    assert server.calls >= calls, "the peer asks the userinfo endpoint on every request"
    return Row(
        DRF_BEARER,
        ours_t,
        theirs_t,
        TARGET,
        note=(
            "the same DRF view; the peer calls the userinfo endpoint on every request "
            "(answered in-process: no network, no server time, which in production add a "
            "round trip and a new connection per request), the adapter checks the token itself "
            "once and remembers it (revocation at the server is not seen until the token "
            "expires); the adapter's DRF class is the smallest honest one "
            f"(bench.peers_wsgi.adapter_drf_authentication); "
            f"{versions(*DJANGO_PEERS, 'djangorestframework')}"
        ),
    )


# --- Flask ----------------------------------------------------------------------------------------


def flask_row(calls: int) -> Row:
    from flask import Flask, g
    from flask_oidc import OpenIDConnect

    from adapter.integrations.flask import OIDC

    made = identity_server()
    ours_app = Flask("bench_peer_adapter")
    ours_app.secret_key = SECRET
    oidc = OIDC(
        ours_app, config=config(), http=httpx.Client(transport=httpx.MockTransport(made.idp))
    )

    @ours_app.get("/")
    @oidc.require()
    def ours_home() -> str:
        identity = oidc.identity
        assert identity is not None
        return f"hello {identity.display_name}"

    theirs_app = Flask("bench_peer_flask_oidc")
    theirs_app.config.update(
        SECRET_KEY=SECRET,
        OIDC_CLIENT_SECRETS={
            "web": {"client_id": "app", "client_secret": "bench-secret", "issuer": ISSUER}
        },
        OIDC_SCOPES="openid email profile",
    )
    theirs_oidc = OpenIDConnect(theirs_app)

    @theirs_app.get("/")
    @theirs_oidc.require_login  # type: ignore[untyped-decorator]  # flask-oidc is untyped
    def theirs_home() -> str:
        return f"hello {g.oidc_user.profile['preferred_username']}"

    # flask-oidc's session as its /authorize view leaves it: authlib's token (with the ID
    # token's claims as "userinfo") and the userinfo profile, in Flask's signed cookie; the
    # tokens as long as those in the adapter's cookie (bench.requests.session_cookie).
    now = int(time.time())
    profile = {"sub": "alice", "preferred_username": "alice", "email": EMAIL, "name": "Alice"}
    token = {
        "access_token": secrets.token_urlsafe(700),
        "expires_in": 36000,
        "refresh_expires_in": 1800,
        "refresh_token": secrets.token_urlsafe(500),
        "token_type": "Bearer",
        "id_token": secrets.token_urlsafe(600),
        "not-before-policy": 0,
        "session_state": secrets.token_hex(16),
        "scope": "openid email profile",
        "expires_at": now + 36000,
        "userinfo": {**profile, "iss": ISSUER, "aud": "app", "iat": now, "exp": now + 300},
    }
    with theirs_app.test_request_context():
        serializer = theirs_app.session_interface.get_signing_serializer(  # type: ignore[attr-defined]
            theirs_app
        )
    assert serializer is not None
    theirs_cookie = (
        f"session={serializer.dumps({'oidc_auth_token': token, 'oidc_auth_profile': profile})}"
    )
    ours_cookie = session_cookie(oidc.middleware(ours_app))

    discovery = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/protocol/openid-connect/auth",
        "token_endpoint": ISSUER + "/protocol/openid-connect/token",
        "userinfo_endpoint": ISSUER + "/protocol/openid-connect/userinfo",
        "jwks_uri": ISSUER + "/jwks",
    }
    server = InProcessAdapter(lambda request: (200, discovery))
    with answered_in_process(ISSUER, server):  # flask-oidc reads the discovery document once
        for app, cookie in ((ours_app, ours_cookie), (theirs_app, theirs_cookie)):
            status, headers, body = respond(app, cookie)
            assert (status, body) == ("200 OK", b"hello alice"), (status, body)
            assert not set_cookies(headers)
            assert respond(app, headers={"HTTP_ACCEPT": "text/html"})[0].startswith("302")
        server.calls = 0
        ours_t, theirs_t = alternated(
            wsgi_caller(ours_app, ours_cookie), wsgi_caller(theirs_app, theirs_cookie), calls
        )
        assert server.calls == 0, "flask-oidc asks the server nothing per request"
    return Row(
        FLASK_SESSION,
        ours_t,
        theirs_t,
        TARGET,
        note=(
            "a login-required view; the peer verifies Flask's signed (not encrypted) session "
            "cookie holding its tokens and compares the access token's expiry, the adapter "
            "finds its sealed (AES-GCM) cookie's remembered decision; neither checks the "
            "token's signature per request; "
            f"{versions('flask-oidc', 'Authlib', 'Flask')}"
        ),
    )
