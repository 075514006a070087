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
- **DRF bearer** (``mozilla-django-oidc``'s ``OIDCAuthentication``): the same DRF view, the
  access token of the same sign-in. The peer asks the userinfo endpoint on every request (its
  design: it documents no cache), answered in-process through a ``requests`` transport
  adapter (as ``requests-mock`` does) with the server's claims of the user: the test server's
  own userinfo endpoint refuses the token (oidc-provider answers no access token with an
  audience there, and each JWT access token it issues has one; checked before the clock).
  The adapter checks the token itself (signature, issuer, audience, expiry; the server's
  discovery and JWKS fetched over HTTP before the clock) once and remembers it, and its Django
  middleware sets ``request.user``, which :func:`adapter_drf_authentication` hands to DRF.
- **Flask session request** (``flask-oidc`` 2.x, authlib underneath): a login-required view;
  the peer's token and profile in Flask's signed session cookie as its ``/authorize`` view
  leaves them, the adapter's sealed session cookie seen before; each reads the server's
  discovery document before the clock.

The identity server is the test server (``tests.idp_server.IdentityServer``, node
oidc-provider) with the bearer rows' issuer ``http://127.0.0.1:{port}/realms/bench`` and
resource (``bench.peers_bearer``), and one web client: before any clock runs, ``alice`` signs
in to it once (the code flow through the server's login and consent forms, :func:`node_login`)
and every session on either side holds that sign-in's tokens (access, ID, refresh) and its ID
token's claims. Without node, the rows fall back to ``bench.requests``' in-process
``MockTransport`` server (:func:`bench.peers_bearer.in_process_realm`; its access token, random
ID and refresh tokens) and say so in their notes.

Django's settings are process-wide and set once: the Django rows run in a child process of
their own (``bench/_django_peer_settings.py`` is its project), so that neither a test worker
that has set Django up for the example project (``tests/django_site.py``) nor one that will
later can meet another configuration. The node server runs in this process, for the child
too (which reaches it over HTTP and gets the sign-in as JSON); the Flask row runs here.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from adapter import OIDCWSGIMiddleware, load_config
from adapter.protocol.tokens import unverified_claims
from adapter.web.session import Session
from bench.measure import Row, alternated
from bench.peers_bearer import Realm, in_process_realm, node_realm, node_server
from bench.requests import SECRET, wsgi_caller, wsgi_environ

TARGET = 1.0  # the adapter faster than, or as fast as, the peer
DJANGO_SESSION = "Django session request: oidc-adapter vs mozilla-django-oidc (SessionRefresh)"
DRF_BEARER = "DRF bearer: oidc-adapter vs mozilla-django-oidc (OIDCAuthentication)"
FLASK_SESSION = "Flask session request: oidc-adapter vs flask-oidc"
WEB_CLIENT = "bench-web"  # the web app both sides are: the client the user signs in to
WEB_SECRET = "bench-web-secret-0123456789abcdef"  # noqa: S105 - a benchmark fixture
USER = "alice"  # who signs in (the test server accepts any login name and password)


def peer_wsgi_rows(number: int, rounds: int) -> list[Row]:
    """The three rows; ``number * rounds / 3`` calls of each side, turn about."""
    calls = max(4, number * rounds // 3)
    with signed_in() as login:
        return [*django_rows(calls, login), flask_row(calls, login)]


def versions(*names: str) -> str:
    """The installed versions of ``names``, for the rows' notes."""
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


DJANGO_PEERS = ("mozilla-django-oidc", "Django")


# --- the identity server and one user's sign-in at it -------------------------------------------


@dataclass
class Login:
    """One user's sign-in at the identity server, as both sides' sessions hold it: the tokens
    its token endpoint answered, the ID token's claims, and the server's endpoints."""

    issuer: str
    audience: str  # the access token's aud: the API the DRF view serves
    source: str  # for the notes: which server issued the tokens
    discovery: dict[str, Any]
    access_token: str = field(repr=False)  # tokens never in a repr, a bench's included
    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    claims: dict[str, Any]  # the ID token's
    node: bool  # the test server (reached over HTTP) rather than the in-process one
    transport: Callable[[], httpx.BaseTransport] = field(repr=False, default=httpx.HTTPTransport)

    def to_json(self) -> str:
        """For the Django child (the node server's; the in-process one lives in one process)."""
        assert self.node, "the in-process server's transport does not cross processes"
        fields = asdict(self)
        del fields["transport"]
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> Login:
        return cls(**json.loads(text))

    @property
    def email(self) -> str:
        return str(self.claims["email"])

    @property
    def token_subject(self) -> str:
        """The access token's ``sub`` (the user the adapter's DRF view sees)."""
        return str(_payload(self.access_token)["sub"])


@contextmanager
def signed_in() -> Iterator[Login]:
    """The test identity server (node oidc-provider; issuer, resource and lifetimes as the
    bearer rows' :func:`bench.peers_bearer.realm`, plus the web client the user signs in to),
    stopped when this ends; without node, the in-process ``MockTransport`` server."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        yield in_process_login()
        return
    from tests.web_client import web_client

    client = web_client(WEB_SECRET, client_id=WEB_CLIENT)
    with node_server([client], {"AccessToken": 3600, "IdToken": 3600}) as server:
        yield node_login(node_realm(server.issuer, server.metadata), server)


def node_login(where: Realm, server: Any) -> Login:
    """``USER``'s sign-in to ``WEB_CLIENT`` at the test server: the code flow with PKCE through
    the server's own login and consent forms (``tests.web_client.code_flow_tokens``); before
    any clock runs."""
    from tests.web_client import code_flow_tokens

    tokens = code_flow_tokens(
        server,
        USER,
        WEB_CLIENT,
        WEB_SECRET,
        scope="openid email profile offline_access",  # offline_access: a refresh token
        prompt="consent",
    )
    discovery = server.metadata
    return Login(
        issuer=where.issuer,
        audience=where.audience,
        source=where.source,
        discovery=dict(discovery),
        access_token=tokens["access_token"],
        id_token=tokens["id_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=time.time() + tokens["expires_in"],
        claims=_payload(tokens["id_token"]),
        node=True,
    )


def in_process_login() -> Login:
    """Without node: ``bench.requests``' in-process server (:func:`bench.peers_bearer.
    in_process_realm`) signs the access token; the ID and refresh tokens are random strings
    of a real one's length, the claims the test server's for ``USER``."""
    where = in_process_realm()
    issuer = where.issuer
    discovery = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/protocol/openid-connect/auth",
        "token_endpoint": issuer + "/protocol/openid-connect/token",
        "userinfo_endpoint": issuer + "/protocol/openid-connect/userinfo",
        "jwks_uri": issuer + "/jwks",
    }
    claims = {
        "sub": USER,
        "email": f"{USER}@example.test",
        "email_verified": True,
        "name": f"Test User {USER}",
        "preferred_username": USER,
    }
    return Login(
        issuer=issuer,
        audience=where.audience,
        source=where.source,
        discovery=discovery,
        access_token=where.tokens(1)[0],
        id_token=secrets.token_urlsafe(600),
        refresh_token=secrets.token_urlsafe(500),
        expires_at=time.time() + 3600,
        claims=claims,
        node=False,
        transport=where.sync_transport,
    )


def _payload(jwt: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the tokens' source is known: only to read them)."""
    claims = unverified_claims(jwt)
    assert claims is not None, "the server's tokens are JWTs"
    return dict(claims)


def adapter_settings(login: Login) -> dict[str, Any]:
    """The adapter's configuration for the web app: the same server, the same client."""
    return {
        "issuer": login.issuer,
        "client-id": WEB_CLIENT,
        "public-client": True,  # it makes no token call here
        "session-secret": SECRET,
        "token-audiences": [login.audience],
    }


def sealed_session(middleware: OIDCWSGIMiddleware | Any, login: Login) -> str:
    """The adapter's session cookie after ``login``: its tokens and ID token claims, sealed
    (as ``bench.requests.session_cookie``, with the server's tokens)."""
    _, core = middleware.shell.core()
    session = Session.new(
        dict(login.claims),
        id_token=login.id_token,
        access_token=login.access_token,
        refresh_token=login.refresh_token,
        expires_at=login.expires_at,
    )
    sealed = core.cookies.sealed(session)
    return f"oidc_session={sealed}"


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
    environ = wsgi_environ(cookie, path, headers)
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


def django_rows(calls: int, login: Login) -> list[Row]:
    """The Django and DRF rows, measured in a child process (Django configured there only).
    The node server stays in this process, the child reaches it over HTTP: its sign-in goes
    to the child as JSON; the in-process server cannot cross, so the child makes its own."""
    code = (
        "import sys; from bench.peers_wsgi import django_child; "
        "django_child(int(sys.argv[1]), sys.argv[2])"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(calls), login.to_json() if login.node else "null"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the Django peer rows failed:\n{done.stderr[-4000:]}")
    return [Row(**fields) for fields in json.loads(done.stdout.strip().splitlines()[-1])]


def django_child(calls: int, login: str = "null") -> None:
    """The child's work: the rows as one JSON line on stdout. ``login``: the parent's sign-in
    at the node server (:meth:`Login.to_json`), or ``null`` for the in-process server."""
    warnings.simplefilter("ignore")
    signed = in_process_login() if login == "null" else Login.from_json(login)
    with tempfile.TemporaryDirectory(prefix="bench-django-peers-") as directory:
        rows = django_rows_here(calls, Path(directory), signed)
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


def django_rows_here(calls: int, directory: Path, login: Login) -> list[Row]:
    """Configure Django (this process must not have done so), build both sides, check that
    each answers as signed in, and time them; the adapter's configuration in ``directory``."""
    import django
    from django.conf import settings

    from bench import _django_peer_settings as project

    adapter_toml = directory / "adapter.toml"
    adapter_toml.write_text(
        "".join(f"{key} = {json.dumps(value)}\n" for key, value in adapter_settings(login).items())
    )
    adapter_toml.chmod(0o600)
    settings.configure(**project.django_settings(str(adapter_toml), login.discovery))
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test.utils import override_settings

    from adapter.integrations.django import wrap

    call_command("migrate", verbosity=0, interactive=False)
    project.install_urls()
    with override_settings(MIDDLEWARE=project.middleware(project.ADAPTER_MIDDLEWARE)):
        ours = wrap(WSGIHandler(), http=httpx.Client(transport=login.transport(), timeout=30))
    with override_settings(MIDDLEWARE=project.middleware(project.SESSION_REFRESH)):
        theirs = WSGIHandler()
    return [django_session_row(ours, theirs, calls, login), drf_row(ours, theirs, login, calls)]


def django_session_row(ours: Any, theirs: Any, calls: int, login: Login) -> Row:
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
    oidc_cookie = sealed_session(ours, login)
    status, headers, body = respond(ours, oidc_cookie)
    assert status.startswith("200"), (status, body)
    assert body == f"hello {USER}".encode(), body
    django_cookies = set_cookies(headers)
    assert {"sessionid", "csrftoken"} <= set(django_cookies), django_cookies
    ours_cookie = "; ".join(
        [oidc_cookie, *(f"{name}={value}" for name, value in django_cookies.items())]
    )
    assert respond(ours, ours_cookie)[::2] == ("200 OK", b"hello alice")
    assert not set_cookies(respond(ours, ours_cookie)[1]), "a session seen before: no new cookie"

    # mozilla-django-oidc: its user, logged in to Django's session as its callback view leaves
    # it. Its backend finds users by email; the adapter's request above made the one person's
    # Django user with this email (two would refuse the sign-in), else it makes one.
    email = login.email
    users = get_user_model().objects
    user = users.filter(email__iexact=email).first() or users.create_user(
        default_username_algo(email), email=email
    )
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
    assert dict(headers)["Location"].startswith(login.discovery["authorization_endpoint"])
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
            f"digest in Django's session; the sessions of one sign-in at {login.source}, "
            f"no server call per request; {versions(*DJANGO_PEERS)}"
        ),
    )


def drf_row(ours: Any, theirs: Any, login: Login, calls: int) -> Row:
    from django.contrib.auth import get_user_model

    token = login.access_token  # the same access token of the same sign-in for both sides
    # mozilla-django-oidc finds its user by the userinfo's email (the session row's user).
    mozilla_user = get_user_model().objects.get(email__iexact=login.email).get_username()
    userinfo_url = login.discovery["userinfo_endpoint"]  # the peer's OIDC_OP_USER_ENDPOINT
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if login.node:
        # oidc-provider's userinfo refuses every access token with an audience, and every
        # JWT access token this server issues has one (its resource); Keycloak's answers it.
        refused = httpx.get(userinfo_url, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, (refused.status_code, refused.text)
    # What the userinfo endpoint says of the user: the ID token's claims about them.
    claims = {k: v for k, v in login.claims.items() if k not in ("iss", "aud", "exp", "iat")}

    def userinfo(request: Any) -> tuple[int, object]:
        if request.url == userinfo_url and request.headers["Authorization"] == f"Bearer {token}":
            return 200, claims
        return 401, {"error": "invalid_token"}

    server = InProcessAdapter(userinfo)
    with answered_in_process(userinfo_url, server):
        status, _, body = respond(theirs, path="/api/mozilla", headers=bearer)
        assert (status, json.loads(body)) == ("200 OK", {"user": mozilla_user}), (status, body)
        assert server.calls == 1
        # The adapter's first request fetches the server's discovery document and JWKS.
        status, _, body = respond(ours, path="/api/adapter", headers=bearer)
        assert (status, json.loads(body)) == ("200 OK", {"user": login.token_subject}), body
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
    refusal = (
        "its userinfo refuses audience-bound tokens, this one included"
        if login.node
        else "node missing"
    )
    return Row(
        DRF_BEARER,
        ours_t,
        theirs_t,
        TARGET,
        note=(
            f"the same DRF view; one access token (RS256 JWT) of one sign-in at {login.source}, "
            "the adapter checking it with that server's discovery and JWKS (fetched before the "
            "clock); the peer calls the userinfo endpoint on every request, answered in-process "
            f"with the server's claims of the user ({refusal}): no network, no server time, "
            "which in production add a round trip and a new connection per request; the "
            "adapter checks the token itself once and remembers it (revocation at the server "
            "is not seen until the token expires); the adapter's DRF class is the smallest "
            "honest one (bench.peers_wsgi.adapter_drf_authentication); "
            f"{versions(*DJANGO_PEERS, 'djangorestframework')}"
        ),
    )


# --- Flask ----------------------------------------------------------------------------------------


def flask_row(calls: int, login: Login) -> Row:
    from flask import Flask, g
    from flask_oidc import OpenIDConnect

    from adapter.integrations.flask import OIDC

    ours_app = Flask("bench_peer_adapter")
    ours_app.secret_key = SECRET
    http = httpx.Client(transport=login.transport(), timeout=30)
    oidc = OIDC(ours_app, config=load_config(adapter_settings(login)), http=http)

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
            "web": {"client_id": WEB_CLIENT, "client_secret": WEB_SECRET, "issuer": login.issuer}
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
    # same tokens of the same sign-in as in the adapter's sealed cookie.
    profile = {k: v for k, v in login.claims.items() if k not in ("iss", "aud", "exp", "iat")}
    token = {
        "access_token": login.access_token,
        "expires_in": int(login.expires_at - time.time()),
        "refresh_token": login.refresh_token,
        "token_type": "Bearer",
        "id_token": login.id_token,
        "scope": "openid email profile offline_access",
        "expires_at": int(login.expires_at),
        "userinfo": dict(login.claims),
    }
    with theirs_app.test_request_context():
        serializer = theirs_app.session_interface.get_signing_serializer(  # type: ignore[attr-defined]
            theirs_app
        )
    assert serializer is not None
    theirs_cookie = (
        f"session={serializer.dumps({'oidc_auth_token': token, 'oidc_auth_profile': profile})}"
    )
    ours_cookie = sealed_session(oidc.middleware(ours_app), login)

    # flask-oidc reads the server's discovery document once, before the clock: the node
    # server's over HTTP (counted, sent for real), the in-process one's answered in-process.
    if login.node:
        server: Any = CountingAdapter()
    else:
        server = InProcessAdapter(lambda request: (200, login.discovery))
    with answered_in_process(login.issuer, server):
        for app, cookie in ((ours_app, ours_cookie), (theirs_app, theirs_cookie)):
            status, headers, body = respond(app, cookie)
            assert (status, body) == ("200 OK", f"hello {USER}".encode()), (status, body)
            assert not set_cookies(headers)
            assert respond(app, headers={"HTTP_ACCEPT": "text/html"})[0].startswith("302")
        assert server.calls >= 1, "flask-oidc read the server's discovery document"
        server.calls = 0
        ours_t, theirs_t = alternated(
            wsgi_caller(ours_app, ours_cookie), wsgi_caller(theirs_app, theirs_cookie), calls
        )
        assert server.calls == 0, "flask-oidc asks the server nothing per request"
    http.close()
    return Row(
        FLASK_SESSION,
        ours_t,
        theirs_t,
        TARGET,
        note=(
            "a login-required view; the peer verifies Flask's signed (not encrypted) session "
            "cookie holding its tokens and compares the access token's expiry, the adapter "
            "finds its sealed (AES-GCM) cookie's remembered decision; neither checks the "
            f"token's signature per request; both sessions hold one sign-in at {login.source}, "
            f"no server call per request; {versions('flask-oidc', 'Authlib', 'Flask')}"
        ),
    )


class CountingAdapter:
    """A ``requests`` transport adapter that sends for real (``HTTPAdapter``) and counts."""

    def __init__(self) -> None:
        from requests.adapters import HTTPAdapter

        self.inner = HTTPAdapter()
        self.calls = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()
