"""The UserInfo pieces alone (adapter/protocol/userinfo.py): what the flow sends and reads, and
the checks an answer must pass before its claims join the session's. The whole path against
the real test identity server is tests/integration/test_userinfo.py."""

from __future__ import annotations

import httpx
import pytest

from adapter.errors import ProviderError, TokenError, ValidationError
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.flows import Send
from adapter.protocol.userinfo import check_userinfo, userinfo

ENDPOINT = "https://sso.example.com/userinfo"


def answered(response: httpx.Response, dpop: DPoPKey | None = None) -> tuple[Send, object]:
    flow = userinfo(ENDPOINT, "alice-access-token", dpop)
    step = next(flow)
    response.request = step.request
    with pytest.raises(StopIteration) as done:
        flow.send(response)
    return step, done.value.value


def test_a_bearer_token_asks_and_a_json_answer_is_read() -> None:
    step, found = answered(httpx.Response(200, json={"sub": "alice", "email": "a@example.com"}))
    assert step.request.method == "GET"
    assert step.request.headers["authorization"] == "Bearer alice-access-token"
    assert not step.authenticate, "the access token is the credential, not the client's"
    assert found == {"sub": "alice", "email": "a@example.com"}


def test_a_dpop_bound_token_goes_with_a_proof_of_its_key() -> None:
    key = DPoPKey.generate()
    step, _ = answered(httpx.Response(200, json={"sub": "alice"}), dpop=key)
    assert "authorization" not in step.request.headers  # DPoPProofs writes it, with the proof
    assert step.dpop is key
    assert step.access_token == "alice-access-token"


def test_a_jwt_answer_comes_back_as_text_to_verify() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
    response = httpx.Response(200, text=jwt + "\n", headers={"content-type": "application/jwt"})
    _, found = answered(response)
    assert found == jwt


def test_a_refused_token_is_a_token_error_and_junk_a_provider_error() -> None:
    with pytest.raises(TokenError):
        answered(httpx.Response(401, headers={"www-authenticate": 'Bearer error="invalid_token"'}))
    with pytest.raises(ProviderError):
        answered(httpx.Response(200, text="<html>"))


def test_the_answer_must_name_the_id_tokens_subject() -> None:
    with pytest.raises(ValidationError, match="another subject"):
        check_userinfo({"sub": "mallory"}, "alice", "https://sso", "app", signed=False)
    with pytest.raises(ValidationError, match="another subject"):
        check_userinfo({"email": "x"}, "alice", "https://sso", "app", signed=False)


def test_a_signed_answer_names_the_server_and_this_client_when_it_names_any() -> None:
    good = {"sub": "alice", "iss": "https://sso", "aud": ["app", "x"], "exp": 1, "email": "e"}
    assert check_userinfo(good, "alice", "https://sso", "app", signed=True) == {
        "sub": "alice",
        "email": "e",
    }, "its protocol claims are not the user's"
    with pytest.raises(ValidationError, match="issuer"):
        check_userinfo({**good, "iss": "https://evil"}, "alice", "https://sso", "app", True)
    with pytest.raises(ValidationError, match="client"):
        check_userinfo({**good, "aud": "other"}, "alice", "https://sso", "app", True)
