"""docs/testing.md's app-factory patterns, run as written (issue 21, newcomer's path): an app that
installs the adapter itself (Starlette's ``OIDCMiddleware``, FastAPI's and Flask's ``OIDC``) is
built with ``oidc_test_issuer.config(...)`` and ``http=``; the configuration names a keystore
that does not exist and a password variable that is unset; a second middleware around such an
app is refused, naming the fix; a client the issuer was never told about registers on first use.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from adapter import ConfigError, OIDCMiddleware, OIDCWSGIMiddleware
from adapter.testing import TestIssuer
from tests.docs_blocks import Block, run_by

BASE = "https://testserver"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    made = TestIssuer()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An app's checkout: the tests run from its root; no keystore, no password variable."""
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHOP_KEYSTORE_PASSWORD", raising=False)
    return tmp_path


def run_documented_test(blocks: list[Block], issuer: TestIssuer, root: Path) -> None:
    """Write the block's tests/adapter.toml, define the block's app and test, run the test."""
    toml, code = blocks
    assert toml.language == "toml"
    assert code.language == "python"
    (root / "tests" / "adapter.toml").write_text(toml.text)
    assert not (root / "keys").exists(), "the keystore the configuration names is not there"
    namespace: dict[str, Any] = {"__name__": "documented_tests"}
    exec(compile(code.text, code.where, "exec"), namespace)  # noqa: S102 - the docs' own code
    namespace["test_admin"](issuer)
    assert issuer.requests > 0, "the app talked to the test issuer"


def test_the_starlette_pattern(
    request: pytest.FixtureRequest, issuer: TestIssuer, in_project: Path
) -> None:
    run_documented_test(run_by(request.node.nodeid), issuer, in_project)


def test_the_fastapi_pattern(
    request: pytest.FixtureRequest, issuer: TestIssuer, in_project: Path
) -> None:
    run_documented_test(run_by(request.node.nodeid), issuer, in_project)


def test_the_flask_pattern(
    request: pytest.FixtureRequest, issuer: TestIssuer, in_project: Path
) -> None:
    run_documented_test(run_by(request.node.nodeid), issuer, in_project)


# -- the test configuration needs no real keys -----------------------------------------------

PRODUCTION_LIKE = """\
issuer = "https://test-issuer.invalid"
client-id = "shop"
[credentials]
method = "private_key_jwt"
[[credentials.keys]]
keystore = "keys/shop.p12"
password-env = "SHOP_KEYSTORE_PASSWORD"
"""


def test_config_replaces_the_credentials(issuer: TestIssuer, in_project: Path) -> None:
    path = in_project / "adapter.toml"
    path.write_text(PRODUCTION_LIKE)
    served = issuer.config(path)
    assert served.client_id == "shop"
    assert served.credentials.method == "client_secret_basic"
    assert served.credentials.keys == ()
    assert issuer.config(served).credentials == served.credentials, "an object works as well"
    path.write_text(PRODUCTION_LIKE.replace("test-issuer.invalid", "sso.example.com"))
    with pytest.raises(ConfigError, match="is not the test issuer"):
        issuer.config(path)


def test_config_of_a_keycloak_json(issuer: TestIssuer, in_project: Path) -> None:
    path = in_project / "keycloak.json"
    path.write_text(
        '{"realm": "shop", "auth-server-url": "https://test-issuer.invalid/", '
        '"resource": "shop", "credentials": {"jwt": {"client-keystore-file": "keys/shop.p12", '
        '"client-keystore-password": "${env.SHOP_KEYSTORE_PASSWORD}"}}}'
    )
    realm = TestIssuer("https://test-issuer.invalid/realms/shop")
    try:
        served = realm.config(path)
    finally:
        realm.close()
    assert served.credentials.method == "client_secret_basic"
    assert served.issuer == "https://test-issuer.invalid/realms/shop"


def test_a_public_client_keeps_no_credentials(issuer: TestIssuer, in_project: Path) -> None:
    path = in_project / "adapter.toml"
    path.write_text(
        'issuer = "https://test-issuer.invalid"\nclient-id = "spa"\npublic-client = true\n'
    )
    assert issuer.config(path).credentials.method == "none"


# -- a second middleware is refused ----------------------------------------------------------

TEST_CONFIG = """\
issuer = "https://test-issuer.invalid"
client-id = "shop"
[credentials]
method = "client_secret_basic"
secret = "any"
[[access]]
path = "/admin/*"
roles = ["admin"]
"""


@pytest.fixture
def config(in_project: Path) -> Path:
    path = in_project / "adapter.toml"
    path.write_text(TEST_CONFIG)
    return path


def test_wrapping_a_fastapi_app_twice_is_refused(issuer: TestIssuer, config: Path) -> None:
    from fastapi import FastAPI

    from adapter.integrations.fastapi import OIDC

    app = FastAPI()
    OIDC(app, config=config)
    with pytest.raises(ConfigError, match=r"FastAPI app .* has the OIDC middleware already.*http="):
        issuer.asgi(app, config)
    with pytest.raises(ConfigError, match="has an OIDC already"):
        OIDC(app, config=config)


def test_wrapping_a_flask_app_twice_is_refused(issuer: TestIssuer, config: Path) -> None:
    from flask import Flask

    from adapter.integrations.flask import OIDC

    app = Flask(__name__)
    OIDC(app, config=config)
    with pytest.raises(ConfigError, match=r"Flask app .* has the OIDC middleware already"):
        issuer.wsgi(app, config)
    with pytest.raises(ConfigError, match="has the OIDC middleware already"):
        OIDC(app, config=config)  # another extension object on the same app


def test_wrapping_a_middleware_again_is_refused(issuer: TestIssuer, config: Path) -> None:
    from starlette.middleware import Middleware

    inner = OIDCMiddleware(Starlette(), config)
    with pytest.raises(ConfigError, match="wrap the app once"):
        issuer.asgi(inner, config)
    wsgi = OIDCWSGIMiddleware(lambda environ, start: [], config)
    with pytest.raises(ConfigError, match="wrap the app once"):
        OIDCWSGIMiddleware(wsgi, config)
    declared = Starlette(middleware=[Middleware(OIDCMiddleware, config=config)])
    with pytest.raises(ConfigError, match="Starlette app"):
        OIDCMiddleware(declared, config)


# -- a client registers on first use ---------------------------------------------------------


def test_an_app_given_only_http_signs_in(issuer: TestIssuer, config: Path) -> None:
    """The configuration goes to the app, never to the issuer: the client registers when it
    first asks for a login (ID tokens RS256, the adapter's default), then access_token()
    needs no client_id."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def users(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    app = OIDCMiddleware(
        Starlette(routes=[Route("/admin/users", users)]), config, http=issuer.async_http()
    )
    with pytest.raises(ConfigError, match="pass client_id="):
        issuer.access_token("alice")
    with TestClient(app, base_url=BASE) as alice:
        issuer.sign_in(alice, "alice", roles=["admin"])
        assert alice.get("/admin/users").json() == {"user": "alice"}
    token = issuer.access_token("alice", roles=["admin"])
    with TestClient(app) as api:
        answer = api.get("/admin/users", headers={"Authorization": f"Bearer {token}"})
    assert answer.json() == {"user": "alice"}


def test_a_registered_client_keeps_its_configured_algorithm(issuer: TestIssuer) -> None:
    from adapter.config import load_config
    from adapter.testing import TestUser

    config = load_config(
        {
            "issuer": issuer.issuer,
            "client-id": "es",
            "id-token-signing-alg": "ES384",
            "credentials": {"method": "client_secret_basic", "secret": "x"},
        }
    )
    issuer.check(config)
    login = f"{issuer.issuer}/auth?" + urlencode(
        {"response_type": "code", "client_id": "es", "redirect_uri": f"{BASE}/cb", "state": "s"}
    )
    issuer.authorize(login, TestUser("alice"))  # the client's login: known already, kept
    header = issuer.id_token(TestUser("alice"), "es").split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "ES384"
    issuer.authorize(login.replace("client_id=es", "client_id=other"), TestUser("alice"))
    header = issuer.id_token(TestUser("alice"), "other").split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "RS256"
