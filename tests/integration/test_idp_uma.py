"""The test identity server's stand-in for Keycloak Authorization Services
(tests/idp/authorization.mjs), with plain httpx against the real node server: the UMA grant's
three answers and its refusals, the Protection API with a PAT, the UMA discovery document, and
the log lines tests count them by. The resources and grants are the Authorization Services
guide's bank account example: alice may view and delete her account, bob only view it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.idp_server import IdentityServer
from tests.web_client import code_flow_token, web_client

SECRET = "bank-app-secret-" + "b" * 40
OTHER_SECRET = "other-app-secret-" + "o" * 40
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"
AUTHORIZATION = {
    "resources": [
        {
            "name": "Bank Account",
            "uris": ["/account/{id}"],
            "scopes": ["view", "delete"],
            "type": "urn:bank-app:resources:account",
        },
        {"name": "Statements", "uris": ["/statements/*"], "scopes": ["view"]},
        {"name": "Help", "uris": ["/help"], "scopes": []},
    ],
    "grants": {
        "alice": ["Bank Account#view", "Bank Account#delete", "Statements"],
        "bob": ["Bank Account#view"],
        "service-account-bank-app": ["Help"],
    },
}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    clients = [
        web_client(SECRET, client_id="bank-app"),
        web_client(OTHER_SECRET, client_id="other-app"),
    ]
    directory = tmp_path_factory.mktemp("uma")
    with IdentityServer(clients, tmp_dir=directory, authorization=AUTHORIZATION) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def user_token(idp: IdentityServer, login: str) -> str:
    """An access token of ``login`` for bank-app, through the real code flow (PKCE)."""
    return code_flow_token(idp, login, "bank-app", SECRET)


@pytest.fixture(scope="module")
def alice(idp: IdentityServer) -> str:
    return user_token(idp, "alice")


@pytest.fixture(scope="module")
def bob(idp: IdentityServer) -> str:
    return user_token(idp, "bob")


def pat(idp: IdentityServer, http: httpx.Client, client: str = "bank-app") -> str:
    secret = SECRET if client == "bank-app" else OTHER_SECRET
    response = http.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(client, secret),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def uma(
    idp: IdentityServer, http: httpx.Client, token: str, *permissions: str, **params: str
) -> httpx.Response:
    """The UMA grant as Keycloak's guide sends it: the user's token as the bearer."""
    data: list[tuple[str, str]] = [("grant_type", UMA), ("audience", "bank-app")]
    data += [("permission", permission) for permission in permissions]
    data += list(params.items())
    return http.post(
        idp.metadata["token_endpoint"],
        content=urlencode(data),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def events(idp: IdentityServer, name: str) -> list[dict[str, Any]]:
    found = []
    for line in idp.logs().splitlines():
        if f'"event":"{name}"' in line:
            found.append(json.loads(line[line.index("{") :]))
    return found


def account_id(idp: IdentityServer, http: httpx.Client) -> str:
    response = http.get(
        f"{idp.issuer}/authz/protection/resource_set",
        params={"name": "Bank Account", "exactName": "true"},
        headers={"Authorization": f"Bearer {pat(idp, http)}"},
    )
    (found,) = response.json()
    return str(found)


# 1. the UMA grant ------------------------------------------------------------------------------


def test_decision_mode_answers_result_true(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    before = len(events(idp, "uma.grant"))

    response = uma(idp, http, alice, "Bank Account#delete", response_mode="decision")

    assert response.status_code == 200, response.text
    assert response.json() == {"result": True}
    assert idp.wait_until(lambda _: len(events(idp, "uma.grant")) == before + 1)
    entry = events(idp, "uma.grant")[-1]
    assert entry["outcome"] == "granted"
    assert entry["via"] == "bearer"
    assert entry["client_id"] == "bank-app"
    assert entry["sub"] == "alice"
    assert entry["permissions"] == ["Bank Account#delete"]
    assert entry["response_mode"] == "decision"


def test_bob_is_denied_delete_where_he_may_view(
    idp: IdentityServer, http: httpx.Client, bob: str
) -> None:
    denied = uma(idp, http, bob, "Bank Account#delete", response_mode="decision")
    allowed = uma(idp, http, bob, "Bank Account#view", response_mode="decision")

    assert denied.status_code == 403
    assert denied.json() == {"error": "access_denied", "error_description": "not_authorized"}
    assert allowed.json() == {"result": True}
    assert idp.wait_until(
        lambda _: any(
            e["outcome"] == "denied" and e["sub"] == "bob" for e in events(idp, "uma.grant")
        )
    )


def test_permissions_mode_lists_what_was_granted(
    idp: IdentityServer, http: httpx.Client, alice: str, bob: str
) -> None:
    response = uma(idp, http, bob, "Bank Account#view, delete", response_mode="permissions")

    assert response.status_code == 200, response.text
    (permission,) = response.json()
    assert permission["rsname"] == "Bank Account"
    assert permission["scopes"] == ["view"]  # a partial grant, as Keycloak's isGranted allows
    assert permission["rsid"] == account_id(idp, http)

    by_id = uma(idp, http, alice, f"{permission['rsid']}#delete", response_mode="permissions")
    assert by_id.json() == [
        {"rsid": permission["rsid"], "rsname": "Bank Account", "scopes": ["delete"]}
    ]


def test_the_default_answer_is_an_rpt_with_the_permissions(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    response = uma(idp, http, alice, "Bank Account#view", "Statements")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["upgraded"] is False
    rpt = claims(body["access_token"])
    assert rpt["sub"] == "alice"
    assert rpt["aud"] == "bank-app"
    assert rpt["azp"] == "bank-app"
    assert rpt["iss"] == idp.issuer
    permissions = {p["rsname"]: p["scopes"] for p in rpt["authorization"]["permissions"]}
    assert permissions == {"Bank Account": ["view"], "Statements": ["view"]}
    # signed with a key the server publishes
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    kids = {key["kid"] for key in http.get(idp.metadata["jwks_uri"]).json()["keys"]}
    assert header["alg"] == "RS256"
    assert header["kid"] in kids


def test_an_rpt_upgrades_with_a_previous_one(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    first = uma(idp, http, alice, "Statements").json()["access_token"]

    second = uma(idp, http, alice, "Bank Account#delete", rpt=first).json()

    assert second["upgraded"] is True
    permissions = {
        p["rsname"]: p["scopes"]
        for p in claims(second["access_token"])["authorization"]["permissions"]
    }
    assert permissions == {"Bank Account": ["delete"], "Statements": ["view"]}


def test_without_permissions_every_resource_is_evaluated(
    idp: IdentityServer, http: httpx.Client, bob: str
) -> None:
    response = uma(idp, http, bob, response_mode="permissions")

    assert [(p["rsname"], p["scopes"]) for p in response.json()] == [("Bank Account", ["view"])]


def test_resources_by_uri_with_keycloaks_matching(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    response = uma(
        idp,
        http,
        alice,
        "/account/42#view",
        response_mode="permissions",
        permission_resource_format="uri",
        permission_resource_matching_uri="true",
    )

    assert [p["rsname"] for p in response.json()] == ["Bank Account"]


@pytest.mark.parametrize(
    ("permission", "params", "status", "error", "description"),
    [
        ("Nope#view", {}, 400, "invalid_resource", "Resource with id [Nope] does not exist."),
        ("Bank Account#fly", {}, 400, "invalid_scope", "One of the given scopes [fly] is invalid"),
        (
            "Bank Account#view",
            {"audience": ""},
            400,
            "invalid_request",
            "You must provide the audience",
        ),
        ("Bank Account#view", {"ticket": "not-a-ticket"}, 400, "invalid_grant", "Invalid ticket"),
    ],
)
def test_refusals_as_keycloak_words_them(
    idp: IdentityServer,
    http: httpx.Client,
    alice: str,
    permission: str,
    params: dict[str, str],
    status: int,
    error: str,
    description: str,
) -> None:
    data = [("grant_type", UMA), ("permission", permission)]
    data += (
        [("audience", params.get("audience", "bank-app"))] if params.get("audience", "x") else []
    )
    data += [(k, v) for k, v in params.items() if k != "audience"]
    response = http.post(
        idp.metadata["token_endpoint"],
        content=urlencode(data),
        headers={
            "Authorization": f"Bearer {alice}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    assert response.status_code == status, response.text
    assert response.json() == {"error": error, "error_description": description}


def test_an_invalid_bearer_token_is_refused(idp: IdentityServer, http: httpx.Client) -> None:
    response = uma(idp, http, "not-a-token", "Bank Account#view")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


def test_an_authenticated_client_asks_for_a_subject_token(
    idp: IdentityServer, http: httpx.Client, bob: str
) -> None:
    """The resource server's way (Keycloak's policy enforcer): client authentication and the
    user's token as subject_token; without one, the client's service account."""
    data = {"grant_type": UMA, "audience": "bank-app", "response_mode": "decision"}
    as_bob = http.post(
        idp.metadata["token_endpoint"],
        data={**data, "permission": "Bank Account#view", "subject_token": bob},
        auth=("bank-app", SECRET),
    )
    denied = http.post(
        idp.metadata["token_endpoint"],
        data={**data, "permission": "Bank Account#delete", "subject_token": bob},
        auth=("bank-app", SECRET),
    )
    service = http.post(
        idp.metadata["token_endpoint"],
        data={**data, "permission": "Help"},
        auth=("bank-app", SECRET),
    )

    both = http.post(
        idp.metadata["token_endpoint"],
        data={
            **data,
            "response_mode": "permissions",
            "permission": ["Bank Account#view", "Statements"],
            "subject_token": bob,
        },
        auth=("bank-app", SECRET),
    )

    assert as_bob.json() == {"result": True}
    assert [(p["rsname"], p["scopes"]) for p in both.json()] == [("Bank Account", ["view"])]
    assert denied.status_code == 403
    assert denied.json()["error_description"] == "not_authorized"
    assert service.json() == {"result": True}
    assert idp.wait_until(
        lambda _: any(
            e.get("via") == "client" and e["sub"] == "service-account-bank-app"
            for e in events(idp, "uma.grant")
        )
    )


def test_claims_pushed_with_the_grant_are_logged(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    token = base64.urlsafe_b64encode(json.dumps({"organization": ["acme"]}).encode()).decode()

    response = uma(
        idp,
        http,
        alice,
        "Bank Account#view",
        response_mode="decision",
        claim_token=token.rstrip("="),
        claim_token_format="urn:ietf:params:oauth:token-type:jwt",
    )

    assert response.json() == {"result": True}
    assert idp.wait_until(
        lambda _: any(
            e.get("claims") == {"organization": ["acme"]} for e in events(idp, "uma.grant")
        )
    )


# 2. the Protection API -----------------------------------------------------------------------


def protection(
    idp: IdentityServer, http: httpx.Client, path: str, token: str, **kwargs: Any
) -> httpx.Response:
    method = "POST" if "json" in kwargs else "GET"
    return http.request(
        method,
        f"{idp.issuer}/authz/protection{path}",
        headers={"Authorization": f"Bearer {token}"},
        **kwargs,
    )


def test_resource_set_lists_ids_and_finds_by_matching_uri(
    idp: IdentityServer, http: httpx.Client
) -> None:
    token = pat(idp, http)
    before = len(events(idp, "uma.protection"))

    ids = protection(idp, http, "/resource_set", token).json()
    exact = protection(idp, http, "/resource_set", token, params={"uri": "/help"}).json()
    none = protection(idp, http, "/resource_set", token, params={"uri": "/account/7"}).json()
    matching = protection(
        idp, http, "/resource_set", token, params={"uri": "/account/7", "matchingUri": "true"}
    ).json()
    deep = protection(
        idp,
        http,
        "/resource_set",
        token,
        params={"uri": "/statements/2026/1", "matchingUri": "true", "deep": "true"},
    ).json()

    assert len(ids) == 3
    assert all(isinstance(item, str) for item in ids)
    assert len(exact) == 1
    assert none == []
    assert matching == [account_id(idp, http)]
    assert [(r["name"], r["uris"]) for r in deep] == [("Statements", ["/statements/*"])]
    assert idp.wait_until(lambda _: len(events(idp, "uma.protection")) >= before + 6)
    lookups = [e for e in events(idp, "uma.protection") if e.get("uri") == "/account/7"]
    assert [(e["action"], e["matching_uri"], e["count"]) for e in lookups] == [
        ("resource_set.list", False, 0),
        ("resource_set.list", True, 1),
    ]


def test_resource_set_by_id_is_the_representation(idp: IdentityServer, http: httpx.Client) -> None:
    token = pat(idp, http)
    resource_id = account_id(idp, http)

    found = protection(idp, http, f"/resource_set/{resource_id}", token)
    missing = protection(idp, http, "/resource_set/no-such-id", token)

    assert found.status_code == 200
    body = found.json()
    assert body["_id"] == resource_id
    assert body["name"] == "Bank Account"
    assert body["uris"] == ["/account/{id}"]
    assert body["type"] == "urn:bank-app:resources:account"
    assert [scope["name"] for scope in body["resource_scopes"]] == ["view", "delete"]
    assert body["owner"] == {"id": "bank-app"}
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_the_permission_endpoint_issues_a_ticket_the_grant_takes(
    idp: IdentityServer, http: httpx.Client, alice: str, bob: str
) -> None:
    token = pat(idp, http)
    resource_id = account_id(idp, http)

    response = protection(
        idp,
        http,
        "/permission",
        token,
        json=[{"resource_id": resource_id, "resource_scopes": ["delete"]}],
    )

    assert response.status_code == 201, response.text
    ticket = response.json()["ticket"]
    granted = uma(idp, http, alice, ticket=ticket, response_mode="permissions")
    assert granted.json() == [{"rsid": resource_id, "rsname": "Bank Account", "scopes": ["delete"]}]
    assert uma(idp, http, bob, ticket=ticket).status_code == 403
    bad = protection(idp, http, "/permission", token, json={"resource_id": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_resource_id"


def test_the_protection_api_needs_the_resource_servers_pat(
    idp: IdentityServer, http: httpx.Client, alice: str
) -> None:
    nothing = http.get(f"{idp.issuer}/authz/protection/resource_set")
    other = protection(idp, http, "/resource_set", pat(idp, http, "other-app"))
    user = protection(idp, http, "/resource_set", alice)

    assert nothing.status_code == 401
    assert other.status_code == 403
    assert other.json()["error"] == "insufficient_scope"
    assert user.status_code == 403


# 3. discovery --------------------------------------------------------------------------------


def test_uma2_configuration_names_the_endpoints(idp: IdentityServer, http: httpx.Client) -> None:
    response = http.get(f"{idp.issuer}/.well-known/uma2-configuration")

    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == idp.issuer
    assert document["token_endpoint"] == idp.metadata["token_endpoint"]
    assert (
        document["resource_registration_endpoint"] == f"{idp.issuer}/authz/protection/resource_set"
    )
    assert document["permission_endpoint"] == f"{idp.issuer}/authz/protection/permission"
    assert document["policy_endpoint"] == f"{idp.issuer}/authz/protection/uma-policy"
    assert UMA in document["grant_types_supported"]
    assert idp.wait_for_log('"event":"uma.configuration"')


# 4. the adapter's flows (adapter/protocol/uma.py) against the stand-in --------------------------


def test_the_adapters_uma_flows_against_the_stand_in(idp: IdentityServer, bob: str) -> None:
    """Discovery, a PAT, the resource of a path, the decision, a ticket and its RPT: the calls
    the policy enforcer makes, each as Keycloak's guide describes it."""
    from adapter.protocol.flows import client_credentials, run
    from adapter.protocol.uma import (
        Permission,
        find_resources,
        permission_ticket,
        uma_configuration,
        uma_decision,
        uma_permissions,
        uma_rpt,
    )

    auth = httpx.BasicAuth("bank-app", SECRET)
    with httpx.Client(timeout=10) as client:
        uma_config = run(uma_configuration(idp.issuer), client)
        token_pat = run(client_credentials(uma_config.token_endpoint), client, auth).access_token
        (resource,) = run(
            find_resources(
                uma_config.resource_registration_endpoint,
                token_pat,
                uri="/account/42",
                matching_uri=True,
                deep=True,
            ),
            client,
        )
        view = Permission(resource["name"], ("view",))
        delete = Permission(resource["name"], ("delete",))
        allowed = run(
            uma_decision(uma_config.token_endpoint, "bank-app", [view], subject_token=bob),
            client,
            auth,
        )
        denied = run(
            uma_decision(uma_config.token_endpoint, "bank-app", [delete], subject_token=bob),
            client,
            auth,
        )
        granted = run(
            uma_permissions(uma_config.token_endpoint, "bank-app", [view, delete], bearer=bob),
            client,
        )
        ticket = run(
            permission_ticket(
                uma_config.permission_endpoint, token_pat, [(resource["_id"], ["delete"])]
            ),
            client,
        )
        no_rpt = run(uma_rpt(uma_config.token_endpoint, None, ticket=ticket, bearer=bob), client)
        rpt = run(uma_rpt(uma_config.token_endpoint, "bank-app", [view], bearer=bob), client)

    assert resource["uris"] == ["/account/{id}"]
    assert allowed is True
    assert denied is False
    assert [(g.rsname, g.scopes) for g in granted] == [("Bank Account", ("view",))]
    assert no_rpt is None
    assert rpt is not None
    assert claims(rpt.access_token)["authorization"]["permissions"] == [
        {"rsid": resource["_id"], "rsname": "Bank Account", "scopes": ["view"]}
    ]
