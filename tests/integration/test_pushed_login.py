"""The middleware's login pushed first (PAR, RFC 9126) and signed (JAR, RFC 9101), against the
real test identity server with PAR required and, for the second client, signed request
objects required: the browser carries only ``client_id`` and ``request_uri``; the server saw a
pushed request (with a request object when asked); a refused push is a 502 page, no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey

from adapter import OIDCWSGIMiddleware, current_identity
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, web_client

SECRET = "pushed-login-client-secret-" + "p" * 40
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "jar-key-1"
REQUIRED = {
    "pushedAuthorizationRequests": {"enabled": True, "requirePushedAuthorizationRequests": True},
}


def signed_client() -> dict[str, object]:
    """A private_key_jwt client whose request objects must be signed (by KEY)."""
    return web_client(
        "unused-secret-" + "u" * 40,
        client_id="signed",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="ES256",
        jwks={"keys": [{**ECKey.import_key(KEY.public_key()).as_dict(), "kid": KID}]},
        require_signed_request_object=True,
        request_object_signing_alg="ES256",
    )


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    directory = tmp_path_factory.mktemp("par-idp")
    clients = [web_client(SECRET), signed_client()]
    with IdentityServer(clients, tmp_dir=directory, features=REQUIRED) as server:
        yield server


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    identity = current_identity(environ)
    start_response("200 OK", [("Content-Type", "application/json")])  # type: ignore[operator]
    return [json.dumps({"user": identity.display_name if identity else None}).encode()]


def middleware(directory: Path, body: str) -> OIDCWSGIMiddleware:
    path = directory / "adapter.toml"
    path.write_text(body)
    path.chmod(0o600)
    return OIDCWSGIMiddleware(app, path)


def secret_config(idp: IdentityServer, secret: str = SECRET) -> str:
    return (
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{"s" * 40}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{secret}"\n'
    )


def signed_config(idp: IdentityServer, directory: Path) -> str:
    (directory / "key.pem").write_bytes(
        KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (directory / "key.pem").chmod(0o600)
    return (
        f'issuer = "{idp.issuer}"\nclient-id = "signed"\nsession-secret = "{"s" * 40}"\n'
        'request-objects = "signed"\n'
        '[credentials]\nmethod = "private_key_jwt"\n'
        f'[[credentials.keys]]\nkeystore = "key.pem"\nkid = "{KID}"\nalgorithm = "ES256"\n'
    )


def pushes(idp: IdentityServer) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in idp.settled_logs().splitlines()
        if '"event":"par.success"' in line
    ]


def browser(idp: IdentityServer, app: OIDCWSGIMiddleware, config: Path) -> Browser:
    return Browser(Stack(idp, config, {"wsgi": httpx.WSGITransport(app=app)}), "wsgi")


def test_a_server_that_requires_par_gets_the_login_pushed(
    idp: IdentityServer, tmp_path: Path
) -> None:
    assert idp.metadata["require_pushed_authorization_requests"] is True
    served = middleware(tmp_path, secret_config(idp))
    user = browser(idp, served, tmp_path / "adapter.toml")
    before = len(pushes(idp))
    login = user.get("/profile", follow_redirects=False)
    assert login.status_code == 302
    start = user.get(login.headers["location"], follow_redirects=False)
    sent = parse_qs(urlsplit(start.headers["location"]).query)
    assert set(sent) == {"client_id", "request_uri"}, sent  # nothing else through the browser
    assert sent["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")
    page = user.walk(user.http.get(start.headers["location"]), "alice")
    assert page.json() == {"user": "alice"}
    pushed = pushes(idp)[before:]
    assert [(p["client_id"], p["request_object"]) for p in pushed] == [("web", False)]
    served.close()


def test_a_signed_request_object_goes_inside_the_push(idp: IdentityServer, tmp_path: Path) -> None:
    served = middleware(tmp_path, signed_config(idp, tmp_path))
    user = browser(idp, served, tmp_path / "adapter.toml")
    before = len(pushes(idp))
    page = user.log_in("/profile", "bob")
    assert page.json() == {"user": "bob"}
    pushed = pushes(idp)[before:]
    assert [(p["client_id"], p["request_object"]) for p in pushed] == [("signed", True)]
    served.close()


def test_a_refused_push_is_a_clear_502(
    idp: IdentityServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = middleware(tmp_path, secret_config(idp, secret="wrong-secret-" + "w" * 40))
    user = browser(idp, served, tmp_path / "adapter.toml")
    refused = user.get("/oidc/login", headers={"Accept": "text/html"}, follow_redirects=False)
    assert refused.status_code == 502, refused.text
    assert "refused the sign-in request" in refused.text
    assert "Traceback" not in refused.text
    assert "refused the pushed login request" in caplog.text
    assert "wrong-secret" not in caplog.text
    served.close()


def test_request_objects_without_keys_are_refused_at_load(
    idp: IdentityServer, tmp_path: Path
) -> None:
    from adapter import ConfigError

    with pytest.raises(
        ConfigError, match=r'request-objects: "signed" needs the client\'s own keys'
    ):
        middleware(tmp_path, secret_config(idp) .replace(
            "[credentials]", 'request-objects = "signed"\n[credentials]'
        ))  # fmt: skip
