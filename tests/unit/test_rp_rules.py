"""The pure pieces behind the OpenID RP checks: ``id-token-signing-alg`` as configured, the
RFC 9207 ``iss`` rule, the discovery flag it reads, and the refused algorithm's report.
(tests/integration/test_rp_checks.py holds the middleware to them against the real server.)"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapter import ConfigError, ValidationError, load_config
from adapter.jose import ASYMMETRIC_ALGORITHMS, encode_header, make_signer, sign_compact
from adapter.protocol.flows import response_issuer_problem
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import AlgorithmRefused, parse_signed

ISSUER = "https://sso.example.com/realms/demo"
NATIVE: dict[str, Any] = {"issuer": ISSUER, "client-id": "app", "public-client": True}
KEYCLOAK_JSON: dict[str, Any] = {
    "realm": "demo",
    "auth-server-url": "https://sso.example.com/",
    "resource": "app",
    "public-client": True,
}


# --- id-token-signing-alg ----------------------------------------------------------------------


def test_the_default_is_rs256_as_openid_registration_defaults_it() -> None:
    assert load_config(NATIVE).id_token_signing_alg == "RS256"


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGORITHMS)
def test_every_asymmetric_algorithm_is_accepted(alg: str) -> None:
    assert load_config({**NATIVE, "id-token-signing-alg": alg}).id_token_signing_alg == alg


def test_the_name_is_matched_in_any_case() -> None:
    config = load_config({**NATIVE, "id-token-signing-alg": "es256"})
    assert config.id_token_signing_alg == "ES256"


def test_keycloak_json_takes_it_as_an_extra_field_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "keycloak.json"
    path.write_text(json.dumps({**KEYCLOAK_JSON, "id-token-signing-alg": "PS256"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(path)
    assert config.id_token_signing_alg == "PS256"
    assert "id-token-signing-alg" not in config.unused_fields


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("RS257", ["unknown algorithm 'RS257'", "RS256", "EdDSA"]),
        ("none", ["unsigned ID tokens (none) are refused", "RS256"]),
        ("HS256", ["HS256 (signed with the client secret) is not supported", "RS256"]),
        ("hs512", ["HS512 (signed with the client secret) is not supported"]),
    ],
)
def test_other_values_are_refused_naming_the_field_and_the_fix(
    value: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({**NATIVE, "id-token-signing-alg": value})
    message = str(raised.value)
    assert message.startswith("id-token-signing-alg: ")
    assert "ID token signature algorithm at the server" in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ConfigError, match="id-token-signing-alg: must be a non-empty string"):
        load_config({**NATIVE, "id-token-signing-alg": 256})


# --- the refused algorithm --------------------------------------------------------------------


def test_a_refused_algorithm_says_which_one_it_was() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_compact(encode_header({"alg": "ES256"}), {"sub": "x"}, make_signer("ES256", key))
    with pytest.raises(AlgorithmRefused) as raised:
        parse_signed(token, ("RS256",))
    assert raised.value.found == "'ES256'"
    assert isinstance(raised.value, ValidationError), "callers that catch ValidationError"
    assert str(raised.value) == "token algorithm 'ES256' is not accepted"
    assert parse_signed(token, ("ES256",)).alg == "ES256"


# --- RFC 9207 ------------------------------------------------------------------------------------


def test_a_present_iss_must_be_the_issuer() -> None:
    assert response_issuer_problem(ISSUER, ISSUER, required=True) is None
    assert response_issuer_problem(ISSUER, ISSUER, required=False) is None
    for wrong in ("https://evil.example", ISSUER + "/", ""):
        assert response_issuer_problem(wrong, ISSUER, required=False) == (
            "the callback comes from another issuer"
        )


def test_a_missing_iss_counts_only_where_the_server_says_it_sends_one() -> None:
    assert response_issuer_problem(None, ISSUER, required=False) is None
    problem = response_issuer_problem(None, ISSUER, required=True)
    assert problem is not None
    assert "no iss" in problem


@pytest.mark.parametrize(
    ("advertised", "required"), [(True, True), (False, False), ("true", False), (None, False)]
)
def test_discovery_says_whether_iss_is_sent(advertised: object, required: bool) -> None:
    document: dict[str, Any] = {"issuer": ISSUER, "token_endpoint": ISSUER + "/token"}
    if advertised is not None:
        document["authorization_response_iss_parameter_supported"] = advertised
    metadata = ProviderMetadata.from_document(document, ISSUER)
    assert metadata.authorization_response_iss_parameter_supported is required


@pytest.mark.parametrize(("listed", "warned"), [(["ES256"], True), (["RS256", "ES256"], False)])
def test_discovery_that_lacks_the_id_token_algorithm_is_named_at_once(
    caplog: pytest.LogCaptureFixture, listed: list[str], warned: bool
) -> None:
    from adapter.protocol.flows import run
    from adapter.protocol.provider import Provider

    issuer = "https://sso.example.com/realms/alg"

    def server(request: httpx.Request) -> httpx.Response:
        document = {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/token",
            "id_token_signing_alg_values_supported": listed,
        }
        return httpx.Response(200, json=document)

    provider = Provider(issuer, id_token_alg="RS256")
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        run(provider.metadata_flow(), client)
    lines = [r.getMessage() for r in caplog.records if "id-token-signing-alg" in r.getMessage()]
    assert bool(lines) is warned
    if warned:
        assert lines == [
            "id-token-signing-alg is RS256, but the server lists only ES256 for ID tokens: "
            "logins will be refused; set it to the client's ID token signature algorithm"
        ]
