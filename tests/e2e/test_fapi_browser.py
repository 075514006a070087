"""FAPI 2.0 in a real browser (issue 23, docs/fapi.md): the test identity server with
oidc-provider's FAPI 2.0 profile on, pushed requests required, DPoP with server nonces; the
Starlette and the Flask example, each with ``profile = "fapi2"`` and with
``profile = "fapi2-message-signing"``. Chromium signs in; the server saw the login pushed (with
a signed request object under message signing); the app's own API takes only DPoP
(``dpop = "required"``), and the example's downstream page gets through it with the user's
session-bound token (refreshed first: the binding holds) and with the service account's,
each with fresh proofs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey

from examples import demo
from tests.e2e.test_browser import browser, free_port, local_context, sign_in
from tests.idp_server import IdentityServer, ensure_installed

__all__ = ["browser"]  # the fixture, imported to be used here
CLIENT_ID = "bank-app"
KID = "fapi-e2e-key"
FEATURES = {
    "fapi": {"enabled": True, "profile": "2.0"},
    "pushedAuthorizationRequests": {"enabled": True, "requirePushedAuthorizationRequests": True},
}


def client(app: str, key: ec.EllipticCurvePrivateKey, signed: bool) -> dict[str, object]:
    """The app's registration as a FAPI 2.0 client: private_key_jwt (ES256), DPoP-bound
    tokens, PS256 ID tokens; with ``signed``, request objects required."""
    registration: dict[str, object] = {
        "client_id": CLIENT_ID,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks": {"keys": [{**ECKey.import_key(key.public_key()).as_dict(), "kid": KID}]},
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{app}/oidc/callback"],
        "post_logout_redirect_uris": [f"{app}/oidc/logout"],
        "id_token_signed_response_alg": "PS256",
        "dpop_bound_access_tokens": True,
    }
    if signed:
        registration["require_signed_request_object"] = True
        registration["request_object_signing_alg"] = "ES256"
    return registration


@pytest.fixture(
    params=[
        (flavor, profile)
        for flavor in ("starlette", "flask")
        for profile in ("fapi2", "fapi2-message-signing")
    ]
)
def fapi_app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str, IdentityServer]]:
    ensure_installed()
    flavor, profile = request.param
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (tmp_path / "key.pem").chmod(0o600)
    app_port = free_port()
    app = f"http://127.0.0.1:{app_port}"
    signed = profile == "fapi2-message-signing"
    with IdentityServer(
        [client(app, key, signed)],
        tmp_dir=tmp_path,
        accounts=demo.USERS,
        features=FEATURES,
        dpop_nonce=True,
    ) as idp:
        config = tmp_path / "adapter.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "{CLIENT_ID}"\nprofile = "{profile}"\n'
            f'session-secret = "{"e" * 40}"\npublic-paths = ["/"]\ndpop = "required"\n'
            'scope = "openid profile email roles"\n'
            'token-audiences = ["urn:oidc-adapter:test-api"]\n'
            # Longer than the server's access tokens live: every request refreshes first.
            "token-minimum-time-to-live = 86400\n"
            '[credentials]\nmethod = "private_key_jwt"\n'
            f'[[credentials.keys]]\nkeystore = "key.pem"\nkid = "{KID}"\nalgorithm = "ES256"\n'
        )
        config.chmod(0o600)
        process = demo.start_app(flavor, config, app_port)
        try:
            demo.wait_until_up(f"{app}/", [process])
            yield app, profile, idp
        finally:
            demo.stop([process])


def test_a_fapi_login_and_dpop_bound_calls(
    browser: object, fapi_app: tuple[str, str, IdentityServer]
) -> None:
    app, profile, idp = fapi_app
    context = local_context(browser)
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda sent: asked.append(sent.url))
    page.goto(f"{app}/profile")
    assert page.url.startswith(idp.issuer), page.url
    authorize = [url for url in asked if url.startswith(idp.metadata["authorization_endpoint"])]
    # Pushed: the browser carries only client_id and request_uri to the server.
    assert set(parse_qs(urlsplit(authorize[0]).query)) == {"client_id", "request_uri"}
    sign_in(page, "alice")
    page.wait_for_url(f"{app}/profile")
    assert page.inner_text("#name") == "alice"
    logs = idp.settled_logs()
    signed = "true" if profile == "fapi2-message-signing" else "false"
    assert f'"event":"par.success","client_id":"{CLIENT_ID}","request_object":{signed}' in logs
    assert f'"grant_type":"authorization_code","client_id":"{CLIENT_ID}"' in logs

    page.click("text=Call the downstream API")
    # The app's own API takes DPoP only: both calls got through with bound tokens and proofs.
    as_user = json.loads(page.inner_text("#as-user"))
    as_service = json.loads(page.inner_text("#as-service"))
    assert as_user == {"sub": "alice", "client_id": CLIENT_ID}
    assert as_service["client_id"] == CLIENT_ID
    logs = idp.settled_logs()
    assert '"error":"use_dpop_nonce"' in logs  # the nonce round, at the server
    # Refresh keeps the binding: the downstream call ran on a refreshed token (the app's
    # margin outlasts the token), and the API that takes only DPoP let it in with a proof.
    assert f'"grant_type":"refresh_token","client_id":"{CLIENT_ID}"' in logs
    context.close()
