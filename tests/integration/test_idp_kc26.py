"""The test identity server's Keycloak 26 stand-ins (issue 24), each against the real node server:
encrypted ID tokens and userinfo to a client's jwks_uri, acr levels (step-up), lightweight access
tokens with introspection, standard token exchange (V2) and the front-channel frame page.

These tests exercise tests/idp/server.mjs itself (plain httpx, joserfc to read the tokens), so the
adapter's own tests can rely on what it stands in for.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwe, jws
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.idp_server import IdentityServer
from tests.web_client import authorization_code

pytestmark = pytest.mark.integration

SECRET = "kc26-client-secret-" + "k" * 40
CALLBACK = "http://127.0.0.1:9/callback"  # never contacted: the code is read from the redirect
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# oidc-provider repeats iss and aud in a JWE's header (RFC 7519 §5.3): not strict about them
JWE = JWERegistry(
    algorithms=["RSA-OAEP-256", "ECDH-ES+A256KW", "A256GCM", "A128CBC-HS256"],
    strict_check_header=False,
)
ROLE_CLAIMS = ("realm_access", "resource_access")


# -- a client's keys, published at a jwks_uri on 127.0.0.1 -----------------------------------


class _Keys(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:  # quiet: the identity server logs each fetch
        pass


@contextmanager
def jwks_uri(keys: KeySet) -> Iterator[str]:
    """Serve the public half of ``keys`` at http://127.0.0.1:<port>/k_jwks while in the block."""
    handler = type("Keys", (_Keys,), {"body": json.dumps(keys.as_dict(private=False)).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/k_jwks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def encryption_keys() -> KeySet:
    rsa_key = RSAKey.generate_key(2048, {"use": "enc", "kid": "enc-rsa"})
    ec_key = ECKey.generate_key("P-256", {"use": "enc", "kid": "enc-ec"})
    return KeySet([rsa_key, ec_key])


# -- clients -----------------------------------------------------------------------------------


def client(client_id: str, **extra: Any) -> dict[str, Any]:
    """A confidential client (secret basic, code + refresh) of the test server."""
    return {
        "client_id": client_id,
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [CALLBACK],
        **extra,
    }


def service(client_id: str, **extra: Any) -> dict[str, Any]:
    """A confidential client without a browser flow (client credentials)."""
    options: dict[str, Any] = {"grant_types": ["client_credentials"], **extra}
    return client(client_id, response_types=[], redirect_uris=[], **options)


FEATURES = {
    "encryption": {"enabled": True},
    "jwtUserinfo": {"enabled": True},
    "jwtIntrospection": {"enabled": True},
    "introspection": {"enabled": True},
    "claimsParameter": {"enabled": True},
}


@dataclass
class Kc26:
    idp: IdentityServer
    keys: KeySet  # the encrypting clients' private keys
    server_keys: KeySet  # the identity server's public keys


@pytest.fixture(scope="module")
def kc26(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kc26]:
    keys = encryption_keys()
    with jwks_uri(keys) as uri:
        clients = [
            client(
                "enc-rsa",
                jwks_uri=uri,
                id_token_encrypted_response_alg="RSA-OAEP-256",
                id_token_encrypted_response_enc="A256GCM",
            ),
            client(
                "enc-ec",
                jwks_uri=uri,
                id_token_encrypted_response_alg="ECDH-ES+A256KW",
                id_token_encrypted_response_enc="A128CBC-HS256",
            ),
            # the user's app: its tokens name "gateway" in aud (Keycloak's Audience mapper)
            client("web", included_client_audiences=["gateway"]),
            client(
                "lean",
                lightweight_access_tokens=True,
                included_client_audiences=["api"],
                introspection_signed_response_alg="RS256",
            ),
            service("api", introspection_signed_response_alg="RS256"),
            service("other"),
            # token exchange: the requester, its target, one not in the audience, one without
            # the grant, a public one
            service("gateway", grant_types=["client_credentials", TOKEN_EXCHANGE]),
            service("orders"),
            service("stranger", grant_types=[TOKEN_EXCHANGE]),
            service("no-exchange"),
            {
                "client_id": "spa",
                "token_endpoint_auth_method": "none",
                "grant_types": [TOKEN_EXCHANGE],
                "response_types": [],
                "redirect_uris": [],
            },
        ]
        with IdentityServer(
            clients,
            tmp_dir=tmp_path_factory.mktemp("kc26"),
            features=FEATURES,
            acr_values=["silver", "gold"],
            token_exchange=True,
            introspection_audience_check=True,
        ) as idp:
            server_keys = KeySet.import_key_set(httpx.get(idp.metadata["jwks_uri"]).json())
            yield Kc26(idp, keys, server_keys)


# -- helpers -----------------------------------------------------------------------------------


def log_in(
    idp: IdentityServer,
    client_id: str,
    http: httpx.Client | None = None,
    login: str = "alice",
    **params: str,
) -> dict[str, Any]:
    """Sign ``login`` in at ``client_id`` (code + PKCE over HTTP, the dev login form) and redeem
    the code: the token response. ``http`` keeps the browser's session across calls."""
    browser = http or httpx.Client(timeout=10)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **params,
    }
    start = browser.get(f"{idp.metadata['authorization_endpoint']}?{urlencode(query)}")
    answer = authorization_code(browser, start, CALLBACK, login)
    assert "code" in answer, answer
    tokens = httpx.post(
        idp.metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=(client_id, SECRET),
    )
    assert tokens.status_code == 200, tokens.text
    if http is None:
        browser.close()
    return dict(tokens.json())


def claims(token: str, keys: KeySet) -> dict[str, Any]:
    """The payload of a JWS signed with one of ``keys`` (the signature is checked)."""
    return dict(json.loads(jws.deserialize_compact(token, keys).payload))


def header(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")))


def events(logs: str, name: str) -> list[dict[str, Any]]:
    """The server's JSON log lines of one event."""
    found = []
    for line in logs.splitlines():
        if line.startswith("{") and f'"event":"{name}"' in line:
            found.append(json.loads(line))
    return found


def service_token(idp: IdentityServer, client_id: str) -> str:
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(client_id, SECRET),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


# -- 1. encryption -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "alg", "enc"),
    [("enc-rsa", "RSA-OAEP-256", "A256GCM"), ("enc-ec", "ECDH-ES+A256KW", "A128CBC-HS256")],
)
def test_the_id_token_is_encrypted_to_the_clients_jwks_uri(
    kc26: Kc26, client_id: str, alg: str, enc: str
) -> None:
    discovery = kc26.idp.metadata
    assert alg in discovery["id_token_encryption_alg_values_supported"]
    tokens = log_in(kc26.idp, client_id)
    id_token = tokens["id_token"]
    assert id_token.count(".") == 4, "a JWE (compact, five parts)"
    assert header(id_token)["alg"] == alg
    assert header(id_token)["enc"] == enc
    inner = jwe.decrypt_compact(id_token, kc26.keys, registry=JWE).plaintext
    assert inner is not None
    payload = claims(inner.decode(), kc26.server_keys)  # nested: signed, then encrypted
    assert payload["aud"] == client_id
    assert payload["sub"] == "alice"
    fetches = [
        e for e in events(kc26.idp.settled_logs(), "fetch") if e.get("client_id") == client_id
    ]
    assert fetches, "the client's jwks_uri fetch is logged with its client_id"
    assert fetches[0]["purpose"] == "jwks_uri"
    assert fetches[0]["url"].endswith("/k_jwks")
    assert fetches[0]["status"] == 200


def test_userinfo_is_signed_and_encrypted_with_the_claims_parameter(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Userinfo needs an access token without audience: resource indicators off for this one."""
    keys = encryption_keys()
    features = {**FEATURES, "resourceIndicators": {"enabled": False}}
    with jwks_uri(keys) as uri:
        reader = client(
            "reader",
            jwks_uri=uri,
            userinfo_signed_response_alg="RS256",
            userinfo_encrypted_response_alg="RSA-OAEP-256",
            userinfo_encrypted_response_enc="A256GCM",
        )
        with IdentityServer(
            [reader], tmp_dir=tmp_path_factory.mktemp("kc26-userinfo"), features=features
        ) as idp:
            wanted = {"userinfo": {"email": {"essential": True}}}
            tokens = log_in(idp, "reader", scope="openid", claims=json.dumps(wanted))
            answer = httpx.get(
                idp.metadata["userinfo_endpoint"],
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("application/jwt")
            assert header(answer.text)["alg"] == "RSA-OAEP-256"
            inner = jwe.decrypt_compact(answer.text, keys, registry=JWE).plaintext
            assert inner is not None
            server_keys = KeySet.import_key_set(httpx.get(idp.metadata["jwks_uri"]).json())
            payload = claims(inner.decode(), server_keys)
            assert payload["sub"] == "alice"
            assert payload["email"] == "alice@example.test", "asked for by the claims parameter"
            assert "name" not in payload, "profile was not asked for"


# -- 2. acr ------------------------------------------------------------------------------------


def logins(idp: IdentityServer, client_id: str) -> list[dict[str, Any]]:
    return [e for e in events(idp.settled_logs(), "login") if e["client_id"] == client_id]


def test_acr_is_silver_unless_gold_is_asked_for_in_id_and_access_tokens(kc26: Kc26) -> None:
    assert kc26.idp.metadata["acr_values_supported"] == ["silver", "gold"]
    plain = log_in(kc26.idp, "web")
    assert claims(plain["id_token"], kc26.server_keys)["acr"] == "silver"
    assert claims(plain["access_token"], kc26.server_keys)["acr"] == "silver"
    gold = log_in(kc26.idp, "web", acr_values="gold")
    assert claims(gold["id_token"], kc26.server_keys)["acr"] == "gold"
    assert claims(gold["access_token"], kc26.server_keys)["acr"] == "gold"
    either = log_in(kc26.idp, "web", acr_values="silver gold")
    assert claims(either["access_token"], kc26.server_keys)["acr"] == "gold", "the highest asked"
    essential = {"id_token": {"acr": {"essential": True, "values": ["gold"]}}}
    asked = log_in(kc26.idp, "web", claims=json.dumps(essential))  # the claims parameter
    assert claims(asked["id_token"], kc26.server_keys)["acr"] == "gold"
    refreshed = httpx.post(
        kc26.idp.metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": gold["refresh_token"]},
        auth=("web", SECRET),
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims(refreshed.json()["access_token"], kc26.server_keys)["acr"] == "gold"
    last = logins(kc26.idp, "web")[-1]  # {"event":"login","login":..,"acr":..,"client_id":..}
    assert (last["login"], last["acr"]) == ("alice", "gold")


def test_a_higher_level_asks_for_a_login_again_and_max_age_and_prompt_behave(
    kc26: Kc26,
) -> None:
    with httpx.Client(timeout=10) as browser:
        before = len(logins(kc26.idp, "web"))
        first = log_in(kc26.idp, "web", browser)
        assert claims(first["id_token"], kc26.server_keys)["acr"] == "silver"
        again = log_in(kc26.idp, "web", browser)  # single sign-on: no new login
        assert claims(again["id_token"], kc26.server_keys)["acr"] == "silver"
        assert len(logins(kc26.idp, "web")) == before + 1
        stepped = log_in(kc26.idp, "web", browser, acr_values="gold")  # step-up: a new login
        assert claims(stepped["access_token"], kc26.server_keys)["acr"] == "gold"
        assert len(logins(kc26.idp, "web")) == before + 2
        still = log_in(kc26.idp, "web", browser, acr_values="silver")  # gold covers silver
        assert claims(still["id_token"], kc26.server_keys)["acr"] == "gold"
        assert len(logins(kc26.idp, "web")) == before + 2
        aged = log_in(kc26.idp, "web", browser, max_age="0")
        aged_claims = claims(aged["id_token"], kc26.server_keys)
        assert "auth_time" in aged_claims, "max_age asks for auth_time"
        assert len(logins(kc26.idp, "web")) == before + 3, "max_age=0 asks for a login"
        prompted = log_in(kc26.idp, "web", browser, prompt="login consent")
        assert claims(prompted["id_token"], kc26.server_keys)["acr"] == "silver"
        assert len(logins(kc26.idp, "web")) == before + 4, "prompt=login asks for a login"


# -- 3. lightweight access tokens and introspection --------------------------------------------


def introspect(
    idp: IdentityServer, client_id: str, token: str, accept: str = "application/json"
) -> httpx.Response:
    return httpx.post(
        idp.metadata["introspection_endpoint"],
        data={"token": token},
        auth=(client_id, SECRET),
        headers={"Accept": accept},
    )


def introspections(idp: IdentityServer, client_id: str) -> int:
    return idp.settled_logs().count(f'"event":"introspection","client_id":"{client_id}"')


def test_lightweight_access_tokens_leave_roles_to_introspection(kc26: Kc26) -> None:
    idp = kc26.idp
    full = claims(log_in(idp, "web")["access_token"], kc26.server_keys)
    assert full["realm_access"] == {"roles": ["user", "offline_access"]}, "a normal token"
    token = log_in(idp, "lean")["access_token"]
    lean = claims(token, kc26.server_keys)
    assert not set(ROLE_CLAIMS) & set(lean), "no role claims in a lightweight token"
    assert lean["aud"] == ["urn:oidc-adapter:test-api", "api"], "included client audience"
    assert lean["acr"] == "silver"
    before = introspections(idp, "api")

    answer = introspect(idp, "api", token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["active"] is True
    assert body["client_id"] == "lean"
    assert body["sub"] == "alice"
    assert body["jti"] == lean["jti"]
    assert body["realm_access"] == {"roles": ["user", "offline_access"]}
    assert body["resource_access"] == {"oidc-adapter-test-api": {"roles": ["reader"]}}

    signed = introspect(idp, "api", token, accept="application/jwt")  # RFC 9701
    assert signed.status_code == 200, signed.text
    assert signed.headers["content-type"].startswith("application/token-introspection+jwt")
    response = claims(signed.text, kc26.server_keys)["token_introspection"]
    assert response["active"] is True
    assert response["realm_access"] == {"roles": ["user", "offline_access"]}

    assert introspections(idp, "api") == before + 2, "one log line per introspection call"
    assert '"event":"introspection","client_id":"api","status":200,"active":true' in (
        idp.settled_logs()
    )


def test_introspection_answers_only_the_tokens_client_and_audience(kc26: Kc26) -> None:
    idp = kc26.idp
    token = log_in(idp, "lean")["access_token"]
    assert introspect(idp, "lean", token).json()["active"] is True, "its own client"
    assert introspect(idp, "other", token).json() == {"active": False}, "neither client nor aud"
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    assert introspect(idp, "api", forged).json() == {"active": False}, "a forged signature"
    assert introspect(idp, "api", "no-such-token").json() == {"active": False}


# -- 4. token exchange -------------------------------------------------------------------------


def exchange(idp: IdentityServer, client_id: str, subject: str, **params: Any) -> httpx.Response:
    data: dict[str, Any] = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **params,
    }
    auth = (client_id, SECRET) if client_id != "spa" else None
    if auth is None:
        data["client_id"] = client_id
    return httpx.post(idp.metadata["token_endpoint"], data=data, auth=auth)


def test_token_exchange_issues_a_token_for_the_audience(kc26: Kc26) -> None:
    idp = kc26.idp
    subject = log_in(idp, "web", acr_values="gold", scope="openid api:read api:write")[
        "access_token"
    ]
    original = claims(subject, kc26.server_keys)
    assert "gateway" in original["aud"], "web's tokens name the gateway (Audience mapper)"
    answer = exchange(idp, "gateway", subject, audience="orders", scope="api:read")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api:read"
    assert "refresh_token" not in body
    assert "id_token" not in body
    token = body["access_token"]
    assert header(token)["typ"] == "at+jwt"
    assert header(token)["alg"] == "RS256"
    exchanged = claims(token, kc26.server_keys)
    assert exchanged["iss"] == idp.issuer
    assert exchanged["aud"] == "orders"
    assert exchanged["sub"] == "alice"
    assert exchanged["azp"] == "gateway"
    assert exchanged["client_id"] == "gateway"
    assert exchanged["scope"] == "api:read"
    assert exchanged["acr"] == "gold", "the subject token's level"
    assert exchanged["realm_access"] == {"roles": ["user", "offline_access"]}
    assert "resource_access" not in exchanged, "only the audience's client roles are kept"
    assert exchanged["exp"] > exchanged["iat"]
    # the target can introspect it (it is in aud) and sees the same user
    assert introspect(idp, "orders", token).json()["sub"] == "alice"
    logs = idp.settled_logs()
    assert (
        '"event":"token_exchange","client_id":"gateway","audience":"orders","outcome":"issued"'
        in logs
    )


def test_token_exchange_of_the_callers_own_token_defaults_audience_and_scope(
    kc26: Kc26,
) -> None:
    idp = kc26.idp
    own = service_token(idp, "gateway")  # issued to the caller: no aud rule applies
    answer = exchange(idp, "gateway", own)
    assert answer.status_code == 200, answer.text
    exchanged = claims(answer.json()["access_token"], kc26.server_keys)
    assert exchanged["aud"] == "gateway", "no audience parameter: the caller"
    assert exchanged["sub"] == "gateway"
    assert exchanged["realm_access"] == {"roles": ["service-account"]}
    assert exchanged.get("scope") == claims(own, kc26.server_keys).get("scope")
    two = exchange(idp, "gateway", own, audience=["orders", "api"])
    assert two.status_code == 200, two.text
    assert claims(two.json()["access_token"], kc26.server_keys)["aud"] == ["orders", "api"]
    assert '"client_id":"gateway","audience":"orders api","outcome":"issued"' in (
        idp.settled_logs()
    )


@pytest.mark.parametrize(
    ("caller", "change", "status", "error", "description"),
    [
        ("stranger", {}, 403, "access_denied", "Client is not within the token audience"),
        ("gateway", {"audience": "nobody"}, 400, "invalid_client", "Audience not found"),
        (
            "gateway",
            {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            400,
            "invalid_request",
            "Parameter 'subject_token' supports access tokens only",
        ),
        ("gateway", {"subject_token": "forged"}, 400, "invalid_request", "Invalid token"),
        (
            "gateway",
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            400,
            "invalid_request",
            "requested_token_type unsupported",
        ),
        ("gateway", {"scope": "api:admin"}, 400, "invalid_scope", "Invalid scopes: api:admin"),
        (
            "spa",
            {},
            400,
            "invalid_client",
            "Public client is not allowed to exchange token",
        ),
        (
            "no-exchange",
            {},
            400,
            "invalid_request",
            "requested grant type is not allowed for this client",
        ),
    ],
)
def test_token_exchange_refusals(
    kc26: Kc26,
    caller: str,
    change: dict[str, str],
    status: int,
    error: str,
    description: str,
) -> None:
    idp = kc26.idp
    params: dict[str, Any] = {"audience": "orders", **change}
    subject = params.pop("subject_token", None) or log_in(idp, "web")["access_token"]
    answer = exchange(idp, caller, subject, **params)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert answer.json()["error_description"] == description
    if caller != "no-exchange":  # that one never reaches the exchange
        refused = [
            e
            for e in events(idp.settled_logs(), "token_exchange")
            if e["client_id"] == caller and e["outcome"] == "refused"
        ]
        assert refused[-1]["error"] == error
        assert refused[-1]["audience"] == params["audience"]


def test_an_id_token_is_no_subject_token(kc26: Kc26) -> None:
    id_token = log_in(kc26.idp, "web")["id_token"]
    answer = exchange(kc26.idp, "gateway", id_token, audience="orders")
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Invalid token"


# -- 5. the front-channel frame page -----------------------------------------------------------


def test_the_frame_page_frames_a_local_url_on_the_issuers_origin(kc26: Kc26) -> None:
    src = 'http://127.0.0.1:8765/oidc/frontchannel?iss=x&sid="<1>"'
    url = kc26.idp.frame_url(src)
    assert url.startswith(kc26.idp.issuer.rstrip("/") + "/test/frame?src=")
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    escaped = "".join(f"&#{ord(c)};" if c in "&<>\"'" else c for c in src)
    assert f'<iframe src="{escaped}"></iframe>' in page.text
    assert html.unescape(escaped) == src
    assert "<1>" not in page.text
    assert page.text.count("<iframe") == 1
    assert httpx.get(kc26.idp.frame_url("http://localhost/logout")).status_code == 200
    for refused in ("https://example.com/", "javascript:alert(1)", "file:///etc/passwd", ""):
        assert httpx.get(kc26.idp.frame_url(refused)).status_code == 400, refused
    assert '"event":"test.frame"' in kc26.idp.settled_logs()
