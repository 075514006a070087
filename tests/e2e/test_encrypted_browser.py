"""Encrypted tokens in a real browser (issue 24, docs/keys.md "Encryption keys"): the Flask
example on a real socket publishes an encryption key at ``/k_jwks`` (``use = "enc"``, PEM),
and the test identity server (``encryption`` on) encrypts alice's ID token to it, with
RSA-OAEP-256/A256GCM for one client and ECDH-ES+A256KW/A128CBC-HS256 for another, and her
UserInfo answer too (signed, then encrypted). The server keeps the scopes' claims for the
UserInfo endpoint (``userinfo_only_claims``), so her email on the page can only have come
from the decrypted answer. Chromium signs in; the server's log shows the app's ``/k_jwks``
fetched for that client; logout sends the signed ID token inside as ``id_token_hint`` (three
parts, not the JWE's five) and the server accepts it (its confirmation page, then back). And
an encryption key's rotation (next, active, retired, the server's key cache cleared) while
alice stays signed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapter import OIDCWSGIMiddleware
from examples.flask_app.app import create_app
from tests.app_server import LateApp, hello, serve
from tests.conftest import CliRunner
from tests.e2e.test_browser import browser, local_context, sign_in
from tests.idp_server import IdentityServer, ensure_installed
from tests.web_client import web_client

__all__ = ["browser"]  # the fixture, imported to be used here
SECRET = "enc-e2e-client-secret-" + "e" * 40
FEATURES = {
    "encryption": {"enabled": True},
    "jwtUserinfo": {"enabled": True},
    # oidc-provider's UserInfo endpoint refuses access tokens with an audience.
    "resourceIndicators": {"enabled": False},
}
CASES = {
    "RSA-OAEP-256": ("A256GCM", lambda: rsa.generate_private_key(65537, 2048)),
    "ECDH-ES+A256KW": ("A128CBC-HS256", lambda: ec.generate_private_key(ec.SECP256R1())),
}


@pytest.fixture(params=sorted(CASES))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, IdentityServer]]:
    ensure_installed()
    alg = str(request.param)
    enc, make_key = CASES[alg]
    key = make_key()
    (tmp_path / "enc.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (tmp_path / "enc.pem").chmod(0o600)
    late = LateApp()
    with serve("wsgi", late) as url:
        client = web_client(
            SECRET,
            base=url,
            jwks_uri=f"{url}/k_jwks",
            id_token_encrypted_response_alg=alg,
            id_token_encrypted_response_enc=enc,
            userinfo_signed_response_alg="RS256",
            userinfo_encrypted_response_alg=alg,
            userinfo_encrypted_response_enc=enc,
        )
        with IdentityServer(
            [client], tmp_dir=tmp_path, features=FEATURES, userinfo_only_claims=True
        ) as idp:
            config = tmp_path / "adapter.toml"
            config.write_text(
                f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
                f'session-secret = "{"s" * 40}"\nscope = "openid profile email"\n'
                f'userinfo = true\nid-token-encrypted-response-alg = "{alg}"\n'
                f'id-token-encrypted-response-enc = "{enc}"\n'
                f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
                f'[[credentials.keys]]\nkeystore = "enc.pem"\nuse = "enc"\nalgorithm = "{alg}"\n'
            )
            config.chmod(0o600)
            late.app = create_app(config)
            yield url, idp


def test_sign_in_with_encrypted_tokens_and_log_out_with_the_signed_one(
    browser: object, world: tuple[str, IdentityServer]
) -> None:
    app, idp = world
    context = local_context(browser)
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda sent: asked.append(sent.url))
    page.goto(f"{app}/profile")
    sign_in(page, "alice")
    page.wait_for_url(f"{app}/profile")
    assert page.inner_text("#name") == "alice"
    assert page.inner_text("#claim-email").endswith("alice@example.test"), "from UserInfo"
    logs = idp.settled_logs()
    assert f'"url":"{app}/k_jwks","status":200,"client_id":"web","purpose":"jwks_uri"' in logs

    page.click("#logout")
    page.click("button[name=logout]")  # the server accepted the hint: it asks to confirm
    page.wait_for_url(f"{app}/")
    ended = [u for u in asked if u.startswith(idp.metadata["end_session_endpoint"])]
    hint = parse_qs(urlsplit(ended[0]).query)["id_token_hint"][0]
    assert hint.count(".") == 2, "the signed ID token inside, never the JWE"
    context.close()


def test_an_encryption_key_rotates_while_alice_stays_signed_in_in_chromium(
    browser: object, tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """next → active → retired in a real browser session: the new key staged with
    ``keys rotate --use enc`` (both published during the overlap), the old one retired (no
    longer published, still decrypting), the server's key cache cleared with
    ``keys clear-server-cache``; alice's page keeps answering throughout (every request
    refreshes, so each brings a new ID token encrypted to whichever key the server holds:
    tests/integration/test_encrypted_id_tokens.py shows which kid each time)."""
    ensure_installed()
    old_key = rsa.generate_private_key(65537, 2048)
    (tmp_path / "enc-old.pem").write_bytes(
        old_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (tmp_path / "enc-old.pem").chmod(0o600)
    late = LateApp()
    with serve("wsgi", late) as url:
        client = web_client(
            SECRET,
            base=url,
            jwks_uri=f"{url}/k_jwks",
            id_token_encrypted_response_alg="RSA-OAEP-256",
            id_token_encrypted_response_enc="A256GCM",
        )
        realm = "http://127.0.0.1:{port}/realms/test"
        with IdentityServer(
            [client], tmp_dir=tmp_path, issuer=realm, admin_clients=["web"],
            features={"encryption": {"enabled": True}},
        ) as idp:  # fmt: skip
            config = tmp_path / "adapter.toml"
            config.write_text(
                f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
                f'session-secret = "{"s" * 40}"\ntoken-minimum-time-to-live = 86400\n'
                'id-token-encrypted-response-alg = "RSA-OAEP-256"\n'
                'id-token-encrypted-response-enc = "A256GCM"\n'
                f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
                '[[credentials.keys]]\nkeystore = "enc-old.pem"\nkid = "enc-old"\nuse = "enc"\n'
            )
            config.chmod(0o600)
            late.app = middleware = OIDCWSGIMiddleware(hello, config)
            try:
                context = local_context(browser)
                page = context.new_page()
                page.goto(f"{url}/profile")
                sign_in(page, "alice")
                page.wait_for_url(f"{url}/profile")
                assert page.inner_text("body") == "hello"

                staged = cli("keys", "rotate", "--config", str(config), "--alias", "enc-new",
                             "--use", "enc", "--out", "enc-new.p12", "--store-password-env",
                             "STORE_PW", "--activate-in", "0", "--write",
                             env={"STORE_PW": "enc-St0re-Pa55-19af"})  # fmt: skip
                assert staged.returncode == 0, staged.stderr
                monkeypatch.setenv("STORE_PW", "enc-St0re-Pa55-19af")  # the reload reads it
                assert middleware.reload(), middleware.status
                published = [k["kid"] for k in httpx.get(f"{url}/k_jwks").json()["keys"]]
                assert "enc-old" in published
                assert len(published) == 2, "both published during the overlap"
                page.reload()
                assert page.inner_text("body") == "hello"

                text = config.read_text().replace(
                    'kid = "enc-old"\nuse = "enc"\n',
                    'kid = "enc-old"\nuse = "enc"\nstate = "retired"\n',
                )
                config.write_text(text)
                assert middleware.reload(), middleware.status
                assert "enc-old" not in [
                    k["kid"] for k in httpx.get(f"{url}/k_jwks").json()["keys"]
                ]
                page.reload()  # the server still encrypts to the old key: it still decrypts
                assert page.inner_text("body") == "hello"

                cleared = cli("keys", "clear-server-cache", "--config", str(config))
                assert cleared.returncode == 0, cleared.stderr
                page.reload()  # now encrypted to the new key
                assert page.inner_text("body") == "hello"
                refreshed = idp.settled_logs().count(
                    '"grant_type":"refresh_token","client_id":"web"'
                )
                assert refreshed >= 3, "each reload refreshed: a new encrypted ID token each time"
                context.close()
            finally:
                middleware.close()
