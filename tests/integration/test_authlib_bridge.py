"""authlib's OAuth 2 clients with the adapter's client authentication, against the real identity
server (oidc-provider), which fetches the client's keys from the app's ``/k_jwks`` (the
middleware, on a real socket). The bridge follows the middleware's state, so authlib signs with
the keys the app publishes.

Two key switches, each on a fresh server (whose client-JWKS cache, at least 60 s, starts
empty), both fast and both honest about what the server does:

- the runbook: the next key is published before it signs, so the server's cached JWKS already
  holds it at the switch and accepts it at once (one JWKS fetch in all, no retry);
- a switch by an edit to a key the server has never seen: the server refuses it
  (``invalid_client``, its cache is younger than 60 s) and the previous-key retry gets the
  token anyway, with the httpx client, its asyncio twin and requests' session.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from adapter import ConfigError, OIDCWSGIMiddleware
from adapter.integrations.authlib import ClientAuthMethod
from tests.app_server import LateApp, serve
from tests.idp_server import IdentityServer
from tests.integration.test_rotation import hello, key_file
from tests.web_client import jwks_uri_client

CLIENT_ID = "authlib-app"


def authlib_httpx() -> Any:
    """authlib's httpx clients; authlib warns that it prefers the httpx2 package (not ours)."""
    import authlib.deprecate  # noqa: F401 - its "always" filter first, so ours comes before it

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The httpx module is deprecated")
        from authlib.integrations import httpx_client
    return httpx_client


def kid_of(body: bytes | str) -> str:
    text = body.decode() if isinstance(body, bytes) else body
    header = dict(parse_qsl(text))["client_assertion"].split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@dataclass
class App:
    directory: Path
    config: Path
    idp: IdentityServer
    middleware: OIDCWSGIMiddleware
    key_a: dict[str, str] = field(default_factory=dict)  # the key the app starts with
    sent: list[tuple[str, int]] = field(default_factory=list)  # (kid, status) per request
    url: str = ""

    def write(self, keys: list[dict[str, str]]) -> None:
        tables = "".join(
            "\n[[credentials.keys]]\n" + "".join(f'{k} = "{v}"\n' for k, v in key.items())
            for key in keys
        )
        self.config.write_text(
            f'issuer = "{self.idp.issuer}"\nclient-id = "{CLIENT_ID}"\n'
            'session-secret = "authlib-bridge-session-secret-0123456789"\n'
            '[credentials]\nmethod = "private_key_jwt"\n' + tables
        )
        self.config.chmod(0o600)  # it holds the keystore password

    def published(self) -> list[str]:
        return [k["kid"] for k in json.loads(self.middleware.client.state.ring.jwks_bytes)["keys"]]

    def record(self, response: httpx.Response) -> None:
        self.sent.append((kid_of(response.request.content), response.status_code))

    def httpx_client(self, method: ClientAuthMethod) -> Any:
        client = authlib_httpx().OAuth2Client(
            method.client_id,
            token_endpoint_auth_method=method.name,
            event_hooks={"response": [self.record]},
        )
        return method.install(client)

    @property
    def token_endpoint(self) -> str:
        return str(self.idp.metadata["token_endpoint"])

    def fetch_jwks_count(self) -> int:
        return self.idp.logs().count(f'"url":"{self.url}/k_jwks"')


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """A fresh identity server per test, and the middleware serving /k_jwks for real."""
    late = LateApp()
    with serve("wsgi", late) as url:  # the port is taken before the server picks one
        client = jwks_uri_client(CLIENT_ID, f"{url}/k_jwks")
        with IdentityServer([client], tmp_dir=tmp_path) as idp:
            holder = App(tmp_path, tmp_path / "adapter.toml", idp, None, url=url)  # type: ignore[arg-type]
            holder.key_a = key_file(tmp_path, "key-a")
            holder.write([{**holder.key_a, "state": "active"}])
            holder.middleware = late.app = OIDCWSGIMiddleware(hello, holder.config)
            yield holder
            holder.middleware.close()


def test_next_key_published_first_is_accepted_at_the_switch(app: App) -> None:
    a = {**app.key_a, "state": "active"}
    b = key_file(app.directory, "key-b")
    app.write([a, {**b, "state": "next"}])
    assert app.middleware.reload()
    kid_a, kid_b = app.published()
    method = ClientAuthMethod(app.middleware.client)  # follows the middleware's reloads
    client = app.httpx_client(method)

    first = client.fetch_token(app.token_endpoint, grant_type="client_credentials")
    assert first["access_token"]
    assert app.sent == [(kid_a, 200)], "signed by the active key"

    app.write([{**a, "state": "retired"}, {**b, "state": "active"}])
    assert app.middleware.reload()
    for _ in range(3):
        token = client.fetch_token(app.token_endpoint, grant_type="client_credentials")
        assert token["access_token"]
    assert app.sent[1:] == [(kid_b, 200)] * 3, "B accepted at once: the server held it already"
    # The server logs in order: once all four grants are logged, so is every JWKS fetch.
    assert app.idp.wait_until(lambda logs: logs.count('"event":"grant.success"') >= 4)
    assert app.fetch_jwks_count() == 1, "no refetch was needed: B was published before it signed"


def test_a_key_the_server_has_not_seen_is_retried_with_the_previous_one(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    method = ClientAuthMethod(app.middleware.client)
    client = app.httpx_client(method)
    client.fetch_token(app.token_endpoint, grant_type="client_credentials")
    (kid_a,) = app.published()
    assert app.sent == [(kid_a, 200)]

    current = {**app.key_a, "state": "active"}
    c = key_file(app.directory, "key-c")
    app.write([{**current, "state": "retired"}, {**c, "state": "active"}])
    assert app.middleware.reload()
    kid_c = next(k for k in app.published() if k != kid_a)
    app.sent.clear()
    with caplog.at_level(logging.WARNING, logger="adapter.protocol.flows"):
        token = client.fetch_token(app.token_endpoint, grant_type="client_credentials")
    assert token["access_token"]
    assert app.sent == [(kid_c, 401), (kid_a, 200)], "C refused by the stale cache, A retried"
    assert "retrying once with the previous key" in caplog.text
    assert app.idp.wait_for_log("invalid_client"), "the server says why it refused C"

    # The asyncio client: the same auth flow.
    async def fetch_async() -> Any:
        async_client = authlib_httpx().AsyncOAuth2Client(
            method.client_id,
            token_endpoint_auth_method=method.name,
            event_hooks={"response": [record_async]},
        )
        async with method.install(async_client):
            return await async_client.fetch_token(
                app.token_endpoint, grant_type="client_credentials"
            )

    async def record_async(response: httpx.Response) -> None:
        app.record(response)

    app.sent.clear()
    assert asyncio.run(fetch_async())["access_token"]
    assert app.sent == [(kid_c, 401), (kid_a, 200)]


def test_requests_session_gets_the_same_retry(app: App) -> None:
    requests = pytest.importorskip("requests")
    from authlib.integrations.requests_client import OAuth2Session

    sent: list[tuple[str, int]] = []

    class Recording(requests.adapters.HTTPAdapter):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            response = super().send(request, **kwargs)
            sent.append((kid_of(request.body), response.status_code))
            return response

    method = ClientAuthMethod(app.middleware.client)
    session = OAuth2Session(method.client_id, token_endpoint_auth_method=method.name)
    method.install(session)
    session.mount("http://", Recording())
    assert session.fetch_token(app.token_endpoint, grant_type="client_credentials")
    (kid_a,) = app.published()
    assert sent == [(kid_a, 200)], "the server caches the JWKS holding A only"

    current = {**app.key_a, "state": "active"}
    c = key_file(app.directory, "key-c")
    app.write([{**current, "state": "retired"}, {**c, "state": "active"}])
    assert app.middleware.reload()
    kid_c = next(k for k in app.published() if k != kid_a)
    sent.clear()
    token = session.fetch_token(app.token_endpoint, grant_type="client_credentials")
    assert token["access_token"]
    assert sent == [(kid_c, 401), (kid_a, 200)]


def test_misconfigured_clients_get_one_line_naming_the_fix(app: App) -> None:
    method = ClientAuthMethod(app.config)  # loaded from the file: its own reloads
    assert method.name == "private_key_jwt"
    assert method.client_id == CLIENT_ID
    httpx_client = authlib_httpx()
    with pytest.raises(
        ConfigError, match=re.escape("token_endpoint_auth_method='private_key_jwt'")
    ):
        method.install(httpx_client.OAuth2Client(method.client_id))
    other = method.install(
        httpx_client.OAuth2Client("someone-else", token_endpoint_auth_method=method.name)
    )
    with pytest.raises(ConfigError, match=re.escape("client_id=method.client_id")):
        other.fetch_token(app.token_endpoint, grant_type="client_credentials")
    assert method.reload()


def test_without_authlib_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['authlib'] = None\n"
        "from adapter.integrations.authlib import ClientAuthMethod\n"
        "try:\n    ClientAuthMethod('adapter.toml')\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "pip install 'oidc-adapter[authlib]'" in result.stdout
