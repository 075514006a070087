"""DPoP as a client (RFC 9449 §5, §8; docs/fapi.md) against the real test identity server with
server nonces required: a token request with a DPoP proof gets a token bound to the key
(``cnf.jkt``); the first request's ``use_dpop_nonce`` answer is asked again once with the
server's nonce (counted), the nonce kept for the next request; the client's private_key_jwt
assertion is signed afresh for the retry (the server refuses a repeated ``jti``); and the bound
token, sent with :class:`~adapter.protocol.dpop_auth.DPoPProofs`, passes the adapter's own DPoP
check in front of an API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey

from adapter import OIDCClient, OIDCWSGIMiddleware, ProviderError, current_identity
from adapter.protocol import flows
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.dpop_auth import DPoPNonces, DPoPProofs
from tests.idp_server import IdentityServer
from tests.web_client import client_api, web_client

API = "urn:oidc-adapter:test-api"
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "dpop-client-key"
SECRET = "plain-client-secret-" + "p" * 40


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    signed = web_client(
        "unused-" + "u" * 40,
        client_id="signed",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="ES256",
        jwks={"keys": [{**ECKey.import_key(KEY.public_key()).as_dict(), "kid": KID}]},
    )
    clients = [signed, web_client(SECRET)]
    with IdentityServer(clients, tmp_dir=tmp_path_factory.mktemp("idp"), dpop_nonce=True) as s:
        yield s


def client(idp: IdentityServer, directory: Path) -> OIDCClient:
    (directory / "key.pem").write_bytes(
        KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (directory / "key.pem").chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "signed"\ntoken-audiences = ["{API}"]\n'
        '[credentials]\nmethod = "private_key_jwt"\n'
        f'[[credentials.keys]]\nkeystore = "key.pem"\nkid = "{KID}"\nalgorithm = "ES256"\n'
    )
    path.chmod(0o600)
    return OIDCClient(path)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def nonce_refusals(idp: IdentityServer) -> int:
    return idp.settled_logs().count('"error":"use_dpop_nonce"')


def test_a_bound_token_through_the_nonce_round_with_a_fresh_assertion(
    idp: IdentityServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nonces = DPoPNonces()
    monkeypatch.setattr("adapter.protocol.dpop_auth.NONCES", nonces)
    monkeypatch.setattr(
        "adapter.protocol.flows.DPoPProofs",
        lambda key, inner: DPoPProofs(key, inner, nonces=nonces),
    )
    oidc = client(idp, tmp_path)
    endpoint = oidc.metadata().token_endpoint
    key = DPoPKey.generate("ES256")
    before = nonce_refusals(idp)
    tokens = oidc.run_flow(flows.client_credentials(endpoint, resource=API, dpop=key))
    assert tokens.token_type == "DPoP"
    assert claims(tokens.access_token)["cnf"] == {"jkt": key.jkt}
    assert nonces.retries == 1  # the server's first answer asked for its nonce
    assert nonce_refusals(idp) == before + 1
    refused = '"client_id":"signed","error":"invalid_client"'
    assert refused not in idp.settled_logs()  # the retry's assertion had a fresh jti
    again = oidc.run_flow(flows.client_credentials(endpoint, resource=API, dpop=key))
    assert claims(again.access_token)["cnf"] == {"jkt": key.jkt}
    assert nonces.retries == 1  # the nonce was remembered: no second round
    oidc.close()


def test_a_server_that_binds_nothing_is_refused_when_dpop_was_asked(tmp_path: Path) -> None:
    """A bearer answer to a DPoP request: refused, so nobody believes a token is bound."""

    def bearer_only(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "opaque", "token_type": "Bearer"})

    flow = flows.client_credentials("https://sso.example.com/token", dpop=DPoPKey.generate())
    with (
        httpx.Client(transport=httpx.MockTransport(bearer_only)) as http,
        pytest.raises(ProviderError, match="answered a bearer token"),
    ):
        flows.run(flow, http)


def test_the_bound_token_passes_the_adapters_own_dpop_check(
    idp: IdentityServer, tmp_path: Path
) -> None:
    oidc = client(idp, tmp_path)
    key = DPoPKey.generate("EdDSA")
    endpoint = oidc.metadata().token_endpoint
    token = oidc.run_flow(flows.client_credentials(endpoint, resource=API, dpop=key)).access_token
    oidc.close()

    path = tmp_path / "api.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nbearer-only = true\n'
        f'token-audiences = ["{API}"]\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    served = OIDCWSGIMiddleware(client_api, path)
    transport = httpx.WSGITransport(app=served)
    auth = DPoPProofs(key, access_token=token)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8765", auth=auth) as http:
        for _ in range(2):  # a fresh proof each time (a repeated one would be a replay)
            answer = http.get("/api/reports")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"client": "signed"}
    served.close()


def test_a_session_signs_in_with_tokens_bound_to_its_own_key_and_refresh_keeps_it(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """``dpop-tokens = true``: the code exchange (and later the refresh) carries a proof of a
    key made for the session at sign-in; the app's identity holds that key for downstream
    calls; a refresh keeps the binding."""
    from tests.web_client import Browser, Stack

    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = current_identity(environ)
        seen.append(identity)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    path = tmp_path / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{"s" * 40}"\n'
        f'dpop-tokens = true\n[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    served = OIDCWSGIMiddleware(app, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    assert browser.log_in("/profile", "alice").status_code == 200
    identity = seen[-1]
    assert identity.dpop_key is not None
    assert claims(identity.access_token)["cnf"] == {"jkt": identity.dpop_key.jkt}
    # Age the session's access token in place: the next request refreshes it, bound again.
    codec = served.shell.front()[1].core.cookies.codec
    sealed = browser.session_cookies()["oidc_session"]
    document = codec.open(sealed, "session")
    assert document is not None
    document["d"]["exp"] = 0
    browser.http.cookies.clear()
    page = browser.get("/profile", cookies={"oidc_session": codec.seal(document, "session")})
    assert page.status_code == 200
    refreshed = seen[-1]
    assert refreshed.access_token != identity.access_token
    assert refreshed.dpop_key.jkt == identity.dpop_key.jkt
    assert claims(refreshed.access_token)["cnf"] == {"jkt": identity.dpop_key.jkt}
    served.close()


def test_the_service_account_sends_bound_tokens_with_proofs(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """``dpop-tokens``: the service account's token is bound to a key of this client's, and
    each downstream request proves it (the adapter's DPoP check in front of the API)."""
    config = tmp_path / "adapter.toml"
    config.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\ndpop-tokens = true\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    config.chmod(0o600)
    oidc = OIDCClient(config)
    auth = oidc.service_account_auth(resource=API)

    served_config = tmp_path / "api.toml"
    served_config.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nbearer-only = true\ndpop = "required"\n'
        f'token-audiences = ["{API}"]\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    served_config.chmod(0o600)
    served = OIDCWSGIMiddleware(client_api, served_config)
    transport = httpx.WSGITransport(app=served)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8765", auth=auth) as http:
        for _ in range(2):
            answer = http.get("/api/reports")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"client": "web"}
    assert auth.cache.fetches == 1  # one bound token, proved twice
    key = oidc.service_dpop_key()
    assert key is not None
    assert auth.cache.tokens is not None
    assert claims(auth.cache.tokens.access_token)["cnf"] == {"jkt": key.jkt}
    served.close()
    oidc.close()


def test_dpop_key_names_the_client_key_that_binds_the_service_account(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """``dpop-key`` (a kid): the service account's tokens are bound to that configured key
    (one a token shared between processes can be proved with); an unknown kid is refused,
    naming the keys there are."""
    from adapter import ConfigError

    base = client(idp, tmp_path)
    base.close()
    path = tmp_path / "adapter.toml"
    text = path.read_text()
    path.write_text(
        text.replace("[credentials]", f'dpop-tokens = true\ndpop-key = "{KID}"\n[credentials]')
    )
    oidc = OIDCClient(path)
    auth = oidc.service_account_auth(resource=API)
    token = auth.token()
    assert claims(token)["cnf"] == {"jkt": DPoPKey(KEY).jkt}
    oidc.close()
    path.write_text(
        text.replace("[credentials]", 'dpop-tokens = true\ndpop-key = "nope"\n[credentials]')
    )
    wrong = OIDCClient(path)
    with pytest.raises(
        ConfigError, match=f"dpop-key: no client key has kid 'nope' \\(its keys: {KID}\\)"
    ):
        wrong.service_account_auth()
    wrong.close()
