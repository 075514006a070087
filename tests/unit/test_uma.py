"""The UMA grant and the Protection API as flows (adapter/protocol/uma.py), against
httpx.MockTransport: what each call sends, how each answer reads, denial as an answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from adapter.errors import ProviderError, TokenError
from adapter.protocol.flows import Flow, run
from adapter.protocol.uma import (
    CLAIM_TOKEN_FORMAT,
    UMA_GRANT,
    Granted,
    Permission,
    find_resources,
    get_resource,
    permission_ticket,
    uma_configuration,
    uma_decision,
    uma_permissions,
    uma_rpt,
)

TOKEN = "https://sso.example.com/realms/bank/protocol/openid-connect/token"
RESOURCE_SET = "https://sso.example.com/realms/bank/authz/protection/resource_set"
PERMISSION = "https://sso.example.com/realms/bank/authz/protection/permission"
CLIENT_AUTH = httpx.BasicAuth("bank-app", "secret")


def drive(
    flow: Flow[Any], answer: Callable[[httpx.Request], httpx.Response]
) -> tuple[Any, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return run(flow, client, CLIENT_AUTH), sent


def form(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode())


DENIED = httpx.Response(403, json={"error": "access_denied", "error_description": "not_authorized"})


# 1. permissions as Keycloak writes them ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "permission", "parameter"),
    [
        ("Bank Account#view", Permission("Bank Account", ("view",)), "Bank Account#view"),
        (
            "Bank Account#view,delete",
            Permission("Bank Account", ("view", "delete")),
            "Bank Account#view, delete",
        ),
        ("Bank Account", Permission("Bank Account"), "Bank Account"),
        ("#view", Permission(None, ("view",)), "#view"),
    ],
)
def test_permissions_parse_and_write_as_keycloak(
    text: str, permission: Permission, parameter: str
) -> None:
    assert Permission.parse(text) == permission
    assert permission.parameter() == parameter


# 2. the UMA grant ------------------------------------------------------------------------------


def test_decision_sends_the_grant_with_client_authentication_and_the_subject() -> None:
    result, (request,) = drive(
        uma_decision(
            TOKEN,
            "bank-app",
            [Permission("Bank Account", ("view",)), Permission("Statements")],
            subject_token="user-token",
            claims={"organization": ["acme"]},
        ),
        lambda _: httpx.Response(200, json={"result": True}),
    )

    assert result is True
    assert request.url == TOKEN
    assert request.headers["authorization"].startswith("Basic ")
    sent = form(request)
    assert sent[:4] == [
        ("grant_type", UMA_GRANT),
        ("audience", "bank-app"),
        ("permission", "Bank Account#view"),
        ("permission", "Statements"),
    ]
    fields = dict(sent)
    assert fields["response_mode"] == "decision"
    assert fields["subject_token"] == "user-token"
    assert fields["claim_token_format"] == CLAIM_TOKEN_FORMAT
    claim_token = fields["claim_token"]
    decoded = base64.urlsafe_b64decode(claim_token + "=" * (-len(claim_token) % 4))
    assert json.loads(decoded) == {"organization": ["acme"]}


def test_a_denial_is_false_not_an_error() -> None:
    result, _ = drive(uma_decision(TOKEN, "bank-app", [Permission("A", ("x",))]), lambda _: DENIED)

    assert result is False


def test_with_a_bearer_the_users_token_is_the_only_credential() -> None:
    _, (request,) = drive(
        uma_decision(TOKEN, "bank-app", [Permission("A")], bearer="user-token"),
        lambda _: httpx.Response(200, json={"result": True}),
    )

    assert request.headers["authorization"] == "Bearer user-token"
    assert "subject_token" not in dict(form(request))


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            httpx.Response(
                400,
                json={
                    "error": "invalid_resource",
                    "error_description": "Resource with id [x] does not exist.",
                },
            ),
            TokenError,
        ),
        (httpx.Response(401, json={"error": "invalid_client"}), TokenError),
        (httpx.Response(403, json={"error": "insufficient_scope"}), TokenError),
        (httpx.Response(503, text="down"), ProviderError),
        (httpx.Response(200, json={"result": "yes"}), ProviderError),
    ],
)
def test_other_answers_are_errors_never_a_pass(
    answer: httpx.Response, error: type[Exception]
) -> None:
    with pytest.raises(error):
        drive(uma_decision(TOKEN, "bank-app", [Permission("A")]), lambda _: answer)


def test_a_refusal_carries_the_servers_words() -> None:
    answer = httpx.Response(
        400,
        json={
            "error": "invalid_scope",
            "error_description": "One of the given scopes [fly] is invalid",
        },
    )

    with pytest.raises(TokenError) as refused:
        drive(uma_decision(TOKEN, "bank-app", [Permission("A", ("fly",))]), lambda _: answer)

    assert refused.value.error == "invalid_scope"
    assert "fly" in str(refused.value)


def test_permissions_mode_reads_the_granted_list() -> None:
    granted, (request,) = drive(
        uma_permissions(
            TOKEN, "bank-app", [Permission("Bank Account", ("view", "delete"))], subject_token="t"
        ),
        lambda _: httpx.Response(
            200, json=[{"rsid": "r1", "rsname": "Bank Account", "scopes": ["view"]}, {"rsid": "r2"}]
        ),
    )

    assert dict(form(request))["response_mode"] == "permissions"
    assert granted == (Granted("r1", "Bank Account", ("view",)), Granted("r2", None, ()))


def test_permissions_mode_denied_is_empty_and_bad_shapes_are_the_servers_fault() -> None:
    denied, _ = drive(uma_permissions(TOKEN, "bank-app", [Permission("A")]), lambda _: DENIED)

    assert denied == ()
    for body in ({"rsid": "r"}, [{"scopes": ["x"]}], [{"rsid": "r", "scopes": "x"}]):
        with pytest.raises(ProviderError):
            drive(uma_permissions(TOKEN, "bank-app"), lambda _, b=body: httpx.Response(200, json=b))


def test_the_rpt_is_a_token_set_and_denial_is_none() -> None:
    rpt, (request,) = drive(
        uma_rpt(TOKEN, None, ticket="the-ticket", rpt="old-rpt", subject_token="t"),
        lambda _: httpx.Response(
            200,
            json={
                "access_token": "rpt",
                "token_type": "Bearer",
                "expires_in": 300,
                "upgraded": True,
            },
        ),
    )
    denied, _ = drive(uma_rpt(TOKEN, "bank-app", [Permission("A")]), lambda _: DENIED)

    fields = dict(form(request))
    assert "audience" not in fields
    assert fields["ticket"] == "the-ticket"
    assert fields["rpt"] == "old-rpt"
    assert "response_mode" not in fields
    assert rpt is not None
    assert rpt.access_token == "rpt"
    assert rpt.raw["upgraded"] is True
    assert denied is None


# 3. the Protection API ------------------------------------------------------------------------


def test_find_by_matching_uri_sends_keycloaks_query_with_the_pat() -> None:
    found, (request,) = drive(
        find_resources(RESOURCE_SET, "the-pat", uri="/account/7", matching_uri=True, deep=True),
        lambda _: httpx.Response(200, json=[{"_id": "r1", "name": "Bank Account"}]),
    )

    assert request.headers["authorization"] == "Bearer the-pat"
    assert dict(request.url.params) == {"uri": "/account/7", "matchingUri": "true", "deep": "true"}
    assert found == ({"_id": "r1", "name": "Bank Account"},)


def test_find_by_exact_name_lists_ids() -> None:
    found, (request,) = drive(
        find_resources(RESOURCE_SET, "pat", name="Bank Account", exact_name=True),
        lambda _: httpx.Response(200, json=["r1"]),
    )

    assert dict(request.url.params) == {"name": "Bank Account", "exactName": "true"}
    assert found == ("r1",)


def test_a_resource_by_id_or_none() -> None:
    found, (request,) = drive(
        get_resource(RESOURCE_SET, "pat", "r 1"),
        lambda _: httpx.Response(200, json={"_id": "r 1", "uris": ["/a"]}),
    )
    missing, _ = drive(
        get_resource(RESOURCE_SET, "pat", "nope"),
        lambda _: httpx.Response(404, json={"error": "not_found"}),
    )

    assert request.url.raw_path.endswith(b"/resource_set/r%201")
    assert found == {"_id": "r 1", "uris": ["/a"]}
    assert missing is None


def test_the_protection_api_refusing_the_pat_is_an_error() -> None:
    with pytest.raises(TokenError):
        drive(
            find_resources(RESOURCE_SET, "pat"),
            lambda _: httpx.Response(403, json={"error": "insufficient_scope"}),
        )
    with pytest.raises(ProviderError):
        drive(
            find_resources(RESOURCE_SET, "pat"),
            lambda _: httpx.Response(200, json={"not": "a list"}),
        )


def test_a_permission_ticket_for_resources_and_scopes() -> None:
    ticket, (request,) = drive(
        permission_ticket(PERMISSION, "pat", [("r1", ["delete"])], claims={"org": ["acme"]}),
        lambda _: httpx.Response(201, json={"ticket": "t-1"}),
    )

    assert request.method == "POST"
    assert json.loads(request.content) == [
        {"resource_id": "r1", "resource_scopes": ["delete"], "claims": {"org": ["acme"]}}
    ]
    assert ticket == "t-1"
    with pytest.raises(ProviderError):
        drive(
            permission_ticket(PERMISSION, "pat", [("r1", [])]),
            lambda _: httpx.Response(201, json={}),
        )


def test_the_uma_configuration_must_name_the_endpoints() -> None:
    document = {
        "token_endpoint": TOKEN,
        "resource_registration_endpoint": RESOURCE_SET,
        "permission_endpoint": PERMISSION,
        "policy_endpoint": "https://sso.example.com/realms/bank/authz/protection/uma-policy",
    }
    found, (request,) = drive(
        uma_configuration("https://sso.example.com/realms/bank/"),
        lambda _: httpx.Response(200, json=document),
    )

    assert str(request.url) == "https://sso.example.com/realms/bank/.well-known/uma2-configuration"
    assert found.permission_endpoint == PERMISSION
    assert found.resource_registration_endpoint == RESOURCE_SET
    with pytest.raises(ProviderError, match="permission_endpoint"):
        drive(
            uma_configuration("https://sso.example.com/realms/bank"),
            lambda _: httpx.Response(200, json={**document, "permission_endpoint": None}),
        )
