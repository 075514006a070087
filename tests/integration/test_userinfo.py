"""``userinfo = true`` against the real test identity server (issue 24): the server keeps the
scopes' claims out of the ID token (``userinfo_only_claims``, as a Keycloak client whose
mappers say "Add to userinfo" only), so only the UserInfo endpoint tells alice's email. Signed
in with ``userinfo = true`` the app sees it, for a plain JSON answer and for a signed one
(``userinfo_signed_response_alg``); without the setting it does not. (oidc-provider's
UserInfo endpoint refuses access tokens with an audience: resource indicators are off here.)
Encrypted answers are in tests/integration/test_encrypted_id_tokens.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import OIDCWSGIMiddleware, current_identity
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, web_client

SECRET = "userinfo-client-secret-" + "u" * 40
FEATURES = {"resourceIndicators": {"enabled": False}, "jwtUserinfo": {"enabled": True}}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    plain = web_client(SECRET)
    signed = web_client(SECRET, client_id="signed", userinfo_signed_response_alg="RS256")
    with IdentityServer(
        [plain, signed],
        tmp_dir=tmp_path_factory.mktemp("userinfo"),
        features=FEATURES,
        userinfo_only_claims=True,
    ) as server:
        yield server


def signed_in(directory: Path, idp: IdentityServer, client_id: str, extra: str) -> Any:
    """Alice signed in to an app of ``client_id``; the identity the app saw."""
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(current_identity(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    path = directory / f"{client_id}.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "{client_id}"\nsession-secret = "{"s" * 40}"\n'
        f'scope = "openid profile email"\n{extra}'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    served = OIDCWSGIMiddleware(app, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    assert browser.log_in("/profile").status_code == 200
    served.close()
    return seen[-1]


def id_token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("client_id", ["web", "signed"])
def test_the_userinfo_claims_join_the_id_tokens(
    idp: IdentityServer, tmp_path: Path, client_id: str
) -> None:
    identity = signed_in(tmp_path, idp, client_id, "userinfo = true\n")
    assert "email" not in id_token_claims(identity.id_token), "the ID token does not say it"
    assert identity.claims["email"] == "alice@example.test"
    assert identity.claims["preferred_username"] == "alice"
    assert identity.claims["sub"] == "alice"
    assert identity.claims["aud"] == id_token_claims(identity.id_token)["aud"], (
        "the ID token's claims win"
    )


def test_without_the_setting_the_app_sees_only_the_id_token(
    idp: IdentityServer, tmp_path: Path
) -> None:
    identity = signed_in(tmp_path, idp, "web", "")
    assert "email" not in identity.claims
