"""The policy enforcer's decisions (adapter/web/_enforcer.py), one request at a time, against a
small in-process stand-in of Keycloak's token endpoint and Protection API (httpx
MockTransport: unit tests of one function; the real identity server's are in
tests/integration/test_policy_enforcer.py).

The shortcut (``PolicyEnforcer.remembered``, asked by the entry for a session or bearer token
seen before) is held to the full path: for any request it answers, the full path answers the
same, and it never lets through what the full path denies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import load_config
from adapter.errors import AdapterError, ProviderError
from adapter.protocol import flows
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.uma import Granted, Permission
from adapter.web._enforcer import Grant, Grants, PolicyEnforcer, realm_name
from adapter.web._steps import (
    Identity,
    NeedFlow,
    NeedIntrospection,
    NeedMetadata,
    Proceed,
    Respond,
    WebRequest,
)

ISSUER = "https://sso.example.com/realms/bank"
RESOURCES = {
    "res-1": {"name": "Users", "uris": ["/users/*"], "scopes": ["view", "create"]},
    "res-2": {"name": "Bank Account", "uris": ["/account/{id}"], "scopes": ["view", "delete"]},
    "res-3": {"name": "Statements", "uris": ["/statements/*"], "scopes": ["view"]},
}
GRANTS = {
    "alice": {("res-1", "view"), ("res-2", "view"), ("res-2", "delete"), ("res-3", "view")},
    "bob": {("res-2", "view")},
}
BLOCK: dict[str, Any] = {
    "paths": [
        {
            "path": "/users/*",
            "methods": [
                {"method": "GET", "scopes": ["view"]},
                {"method": "POST", "scopes": ["create"]},
                {"method": "PUT", "scopes": ["view", "create"]},
                {"method": "PATCH", "scopes": ["create"], "scopes-enforcement-mode": "DISABLED"},
            ],
        },
        {
            "name": "Bank Account",
            "path": "/account/{id}",
            "methods": [
                {"method": "DELETE", "scopes": ["delete"]},
                {"method": "GET", "scopes": ["view"]},
            ],
        },
        {"name": "Statements", "path": "/statements/*", "scopes": ["view"]},
        {"path": "/public/*", "enforcement-mode": "DISABLED"},
        {"path": "/soft/*", "enforcement-mode": "PERMISSIVE"},
    ],
}


class Server:
    """Keycloak's answers to the enforcer's questions, counted."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.calls: list[str] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self.answer))

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        path = request.url.path
        if path.endswith("uma2-configuration"):
            self.calls.append("configuration")
            base = ISSUER + "/authz/protection"
            return httpx.Response(
                200,
                json={
                    "token_endpoint": ISSUER + "/token",
                    "resource_registration_endpoint": base + "/resource_set",
                    "permission_endpoint": base + "/permission",
                },
            )
        if path.endswith("/resource_set"):
            return self.resources(request)
        if path.endswith("/permission"):
            self.calls.append("ticket")
            return httpx.Response(201, json={"ticket": "ticket-1"})
        return self.token(request)

    def resources(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        self.calls.append(f"lookup {query.get('name') or query.get('uri')}")
        found = [
            {"_id": rid, "name": r["name"], "uris": r["uris"], "resource_scopes": r["scopes"]}
            for rid, r in RESOURCES.items()
            if query.get("name") == r["name"] or query.get("uri") in r["uris"]
        ]
        return httpx.Response(200, json=found)

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form["grant_type"] == "client_credentials":
            self.calls.append("pat")
            return httpx.Response(200, json={"access_token": "pat", "expires_in": 300})
        user = (form.get("subject_token") or request.headers["authorization"][7:]).split("-")[0]
        resource, _, scopes = form["permission"].partition("#")
        asked = [s.strip() for s in scopes.split(",") if s.strip()] or [
            s for rid, s in GRANTS[user] if rid == resource
        ]
        granted = [s for s in asked if (resource, s) in GRANTS[user]]
        self.calls.append(f"grant {user} {form['permission']}")
        if not granted:
            return httpx.Response(403, json={"error": "access_denied"})
        if form.get("response_mode") == "decision":
            return httpx.Response(200, json={"result": True})
        return httpx.Response(200, json=[{"rsid": resource, "scopes": granted}])

    def perform(self, step: Any) -> Any:
        if isinstance(step, NeedMetadata):
            return ProviderMetadata(issuer=ISSUER, token_endpoint=ISSUER + "/token")
        assert isinstance(step, NeedFlow | NeedIntrospection), step
        return flows.run(step.flow, self.client)


def drive(generator: Any, server: Server) -> Any:
    """Run a generator of steps to its value (failures thrown back in, as the shells do)."""
    try:
        step = next(generator)
        while True:
            try:
                result = server.perform(step)
            except AdapterError as error:
                step = generator.throw(error)
            else:
                step = generator.send(result)
    except StopIteration as done:
        return done.value


def enforcer(block: dict[str, Any] | None = None, **settings_: Any) -> PolicyEnforcer:
    config = load_config(
        {
            "issuer": ISSUER,
            "client-id": "bank-app",
            "public-client": True,
            "policy-enforcer": BLOCK if block is None else block,
            **settings_,
        }
    )
    assert config.policy_enforcer is not None
    return PolicyEnforcer(config, config.policy_enforcer)


def identity(user: str, permissions: list[dict[str, Any]] | None = None) -> Identity:
    claims: dict[str, Any] = {"sub": user, "exp": 4_000_000_000}
    if permissions is not None:
        claims["authorization"] = {"permissions": permissions}
    return Identity(claims, user, frozenset(), frozenset(), frozenset(), f"{user}-token")


def request(method: str, path: str, accept: str = "application/json") -> WebRequest:
    return WebRequest(method, path, "", {"accept": accept}, {})


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server()
    yield made
    made.client.close()


def test_a_grant_is_asked_once_per_token_resource_and_scopes(server: Server) -> None:
    guard = enforcer()
    bob = identity("bob")
    for _ in range(3):
        assert drive(guard.enforce(request("GET", "/account/1"), bob, bearer=True), server) == bob
    assert [c for c in server.calls if c.startswith("grant")] == ["grant bob res-2#view"]
    denied = drive(guard.enforce(request("DELETE", "/account/1"), bob, bearer=True), server)
    assert isinstance(denied, Respond)
    assert denied.status == 403
    assert json.loads(denied.body)["missing"] == ["Bank Account#delete"]


def test_each_resource_and_scope_keeps_its_own_answer(server: Server) -> None:
    """A denial remembered, then a grant for the same token: the denial still holds (each
    answer is its own entry, whatever came last), on the full path and the shortcut."""
    guard = enforcer()
    bob = identity("bob")
    for method in ("DELETE", "GET", "DELETE", "GET"):
        answer = drive(guard.enforce(request(method, "/account/1"), bob, bearer=True), server)
        assert (answer == bob) == (method == "GET"), method
        fast = guard.remembered(Proceed(bob), "/account/1", method)
        assert (fast is not None) == (method == "GET"), method
    assert len([c for c in server.calls if c.startswith("grant")]) == 2


def test_configured_resources_are_looked_up_by_name_once(server: Server) -> None:
    guard = enforcer()
    alice = identity("alice")
    for path in ("/statements/1", "/statements/2", "/statements/1"):
        drive(guard.enforce(request("GET", path), alice, bearer=True), server)
    assert server.calls.count("lookup Statements") == 1
    assert server.calls.count("pat") == 1


def test_all_of_several_scopes_is_asked_as_permissions_and_compared(server: Server) -> None:
    """Keycloak's decision says yes when any one asked scope is granted: PUT needs both."""
    guard = enforcer()
    bob, alice = identity("bob"), identity("alice")
    assert drive(guard.enforce(request("PUT", "/users/1"), alice, bearer=True), server) != alice
    GRANTS["alice"].add(("res-1", "create"))
    try:
        fresh = enforcer()
        passed = drive(fresh.enforce(request("PUT", "/users/1"), alice, bearer=True), server)
        assert isinstance(passed, Identity)
        assert passed.permissions == (Granted("res-1", None, ("view", "create")),)
    finally:
        GRANTS["alice"].discard(("res-1", "create"))
    assert isinstance(
        drive(guard.enforce(request("PUT", "/users/1"), bob, bearer=True), server), Respond
    )


def test_an_rpt_that_covers_the_request_passes_without_a_call(server: Server) -> None:
    guard = enforcer()
    rpt = identity("bob", [{"rsid": "res-2", "rsname": "Bank Account", "scopes": ["delete"]}])
    passed = drive(guard.enforce(request("DELETE", "/account/9"), rpt, bearer=True), server)
    assert isinstance(passed, Identity)
    assert passed.permissions == (Granted("res-2", "Bank Account", ("delete",)),)
    assert not [c for c in server.calls if c.startswith("grant")]


def test_modes_unknown_paths_and_disabled_methods(server: Server) -> None:
    bob = identity("bob")
    strict, permissive = enforcer(), enforcer({**BLOCK, "enforcement-mode": "PERMISSIVE"})
    unknown = drive(strict.enforce(request("GET", "/nowhere"), bob, bearer=True), server)
    assert isinstance(unknown, Respond)
    assert unknown.status == 403
    assert drive(permissive.enforce(request("GET", "/nowhere"), bob, bearer=True), server) == bob
    for method, path in [("GET", "/public/x"), ("PATCH", "/users/1"), ("POST", "/soft/x")]:
        assert drive(strict.enforce(request(method, path), bob, bearer=True), server) == bob
    assert not [c for c in server.calls if c.startswith("grant")]


def test_a_session_is_redirected_to_on_deny_redirect_to_and_a_bearer_request_is_not(
    server: Server,
) -> None:
    guard = enforcer({**BLOCK, "on-deny-redirect-to": "/denied"})
    bob = identity("bob")
    page = drive(guard.enforce(request("GET", "/users/1", "text/html"), bob, bearer=False), server)
    assert page.status == 302
    assert dict(page.headers)["Location"] == "/denied"
    api = drive(guard.enforce(request("GET", "/users/1", "text/html"), bob, bearer=True), server)
    assert api.status == 403
    # A fetch DELETE would be repeated at the deny page: it gets the 403.
    scripted = drive(guard.enforce(request("DELETE", "/account/1"), bob, bearer=False), server)
    assert scripted.status == 403
    assert drive(guard.enforce(request("GET", "/denied"), bob, bearer=False), server) == bob


def test_user_managed_access_answers_a_ticket_and_asks_no_grant(server: Server) -> None:
    guard = enforcer({**BLOCK, "user-managed-access": {}})
    denied = drive(
        guard.enforce(request("GET", "/account/1"), identity("bob"), bearer=True), server
    )
    assert denied.status == 401
    assert dict(denied.headers)["WWW-Authenticate"] == (
        f'UMA realm="bank", as_uri="{ISSUER}", ticket="ticket-1"'
    )
    assert "ticket" in server.calls
    assert not [c for c in server.calls if c.startswith("grant")]


def test_the_server_down_is_a_503() -> None:
    down = Server(down=True)
    answer = drive(
        enforcer().enforce(request("GET", "/account/1"), identity("alice"), bearer=True), down
    )
    assert answer.status == 503
    assert json.loads(answer.body)["error"] == "temporarily_unavailable"


def test_check_in_code_asks_for_all_scopes_and_remembers(server: Server) -> None:
    guard = enforcer()
    bob = identity("bob")
    assert drive(guard.check(bob, Permission.parse("res-2#view"), bearer=True), server) is True
    assert drive(guard.check(bob, Permission.parse("res-2#view"), bearer=True), server) is True
    assert (
        drive(guard.check(bob, Permission.parse("res-2#view, delete"), bearer=True), server)
        is False
    )
    assert len([c for c in server.calls if c.startswith("grant")]) == 2
    with pytest.raises(ProviderError):
        drive(
            guard.check(identity("alice"), Permission.parse("res-1#view"), bearer=True),
            Server(down=True),
        )


@pytest.mark.parametrize(
    "path", ["/users/../public/x", "/public/./x", "/users//1", "/account/1/..", "/soft/../users/1"]
)
def test_a_path_the_app_could_read_otherwise_is_a_400(server: Server, path: str) -> None:
    """Resolved here, ``/users/../public/x`` would be decided as the DISABLED ``/public/*``
    while a ``/users/{rest:path}`` route of the app serves it."""
    guard = enforcer({**BLOCK, "enforcement-mode": "PERMISSIVE"})
    bob = identity("bob")
    for bearer in (True, False):
        answer = drive(guard.enforce(request("GET", path), bob, bearer=bearer), server)
        assert isinstance(answer, Respond)
        assert answer.status == 400
    assert guard.remembered(Proceed(bob), path, "GET") is None
    assert server.calls == []


TRANSFER: dict[str, Any] = {
    "paths": [
        {
            "name": "Users",
            "path": "/transfer",
            "methods": [{"method": "POST", "scopes": ["create"]}],
            "claim-information-point": {"claims": {"amount": "{request.body['/amount']}"}},
        }
    ]
}


def body_request(body: bytes) -> WebRequest:
    headers = {"accept": "application/json", "content-type": "application/json"}
    return WebRequest("POST", "/transfer", "", headers, {}, body=body)


def test_an_rpt_granted_for_certain_claims_covers_only_those(server: Server) -> None:
    """Keycloak's hasValidClaims: an RPT obtained for amount 10 does not pay 5000."""
    guard = enforcer(TRANSFER)
    granted = {"rsid": "res-1", "scopes": ["create"], "claims": {"amount": ["10"]}}
    bob = identity("bob", [granted])
    small = drive(guard.enforce(body_request(b'{"amount": 10}'), bob, bearer=True), server)
    assert small == Identity(
        bob.claims, "bob", frozenset(), frozenset(), frozenset(), "bob-token",
        permissions=(Granted("res-1", None, ("create",)),),
    )  # fmt: skip
    assert server.calls == ["pat", "configuration", "lookup Users"], "no grant asked"
    large = drive(guard.enforce(body_request(b'{"amount": 5000}'), bob, bearer=True), server)
    assert isinstance(large, Respond)
    assert large.status == 403, "the server asked (bob holds no create) and said no"
    assert guard.remembered(Proceed(bob), "/transfer", "POST") is None, "claims: full path"


def test_a_json_body_that_does_not_parse_is_a_400_and_asks_nothing(server: Server) -> None:
    guard = enforcer(TRANSFER)
    alice = identity("alice")
    for body in (b'{"amount": 5000, "x": NaN}', b'{"amount": 1', b"\xff"):
        answer = drive(guard.enforce(body_request(body), alice, bearer=True), server)
        assert isinstance(answer, Respond)
        assert answer.status == 400, body
    too_large = WebRequest("POST", "/transfer", "", {"content-type": "application/json"}, {})
    assert drive(guard.enforce(too_large, alice, bearer=True), server).status == 413
    assert server.calls == []


def test_a_deny_page_with_a_query_is_let_through(server: Server) -> None:
    guard = enforcer({**BLOCK, "on-deny-redirect-to": "/denied?why=policy"})
    bob = identity("bob")
    page = drive(guard.enforce(request("GET", "/users/1", "text/html"), bob, bearer=False), server)
    assert dict(page.headers)["Location"] == "/denied?why=policy"
    assert drive(guard.enforce(request("GET", "/denied"), bob, bearer=False), server) == bob


def test_the_shortcut_keeps_no_denials_and_no_long_paths(server: Server) -> None:
    guard = enforcer()
    bob = identity("bob")
    long_path = "/users/" + "x" * 600
    drive(guard.enforce(request("GET", long_path), bob, bearer=True), server)
    drive(guard.enforce(request("GET", "/nowhere"), bob, bearer=True), server)
    assert guard.remembered(Proceed(bob), "/nowhere", "GET") is None
    assert guard.remembered(Proceed(bob), long_path, "GET") is None
    assert guard._plans.get("bob-token", "/nowhere", "GET") is None
    assert guard._plans.get("bob-token", long_path, "GET") is None


def test_a_pat_the_server_refuses_is_replaced(server: Server) -> None:
    guard = enforcer()
    alice = identity("alice")
    refused = {"yes": True}
    answer = server.answer

    def refusing(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/resource_set") and refused.pop("yes", False):
            return httpx.Response(401, json={"error": "invalid_token"})
        return answer(request)

    server.client = httpx.Client(transport=httpx.MockTransport(refusing))
    first = drive(guard.enforce(request("GET", "/statements/1"), alice, bearer=True), server)
    assert first.status == 503
    assert (
        drive(guard.enforce(request("GET", "/statements/1"), alice, bearer=True), server) == alice
    )
    assert server.calls.count("pat") == 2, "a new PAT after the refusal"


def test_the_remembered_grants_are_bounded_in_bytes_oldest_out_first() -> None:
    grants = Grants(max_bytes=10_000)
    later = 4_000_000_000
    for number in range(200):
        grants.put(f"key-{number}", Grant(True), later, size=100)
    assert len(grants) <= 10_000 // 350
    assert grants.get("key-199") == Grant(True)
    assert grants.get("key-0") is None, "the oldest left first"
    grants.put("gone", Grant(True), deadline=1.0, size=10)
    assert grants.get("gone") is None, "past its deadline"


def test_the_realm_named_in_the_uma_challenge() -> None:
    config = load_config({"issuer": ISSUER, "client-id": "a", "public-client": True})
    assert realm_name(config) == "bank"
    other = load_config({"issuer": "https://idp.example/", "client-id": "a", "public-client": True})
    assert realm_name(other) == "a"


# -- the shortcut, held to the full path ---------------------------------------------------------

PATHS = [
    "/users/1", "/users", "/account/1", "/account/1/x", "/statements/2026", "/public/a",
    "/soft/x", "/nowhere", "/account/%31", "/users/../account/1", "/denied", "/",
    "/users/../public/x", "/public//x", "/users/1/", "/users/1;x",
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
RPTS = [
    None,
    [{"rsid": "res-2", "rsname": "Bank Account", "scopes": ["delete"]}],
    [{"rsid": "res-1", "scopes": []}],
]


@settings(max_examples=150, deadline=None)
@given(
    warm=st.lists(st.tuples(st.sampled_from(METHODS), st.sampled_from(PATHS)), max_size=4),
    method=st.sampled_from(METHODS),
    path=st.sampled_from(PATHS),
    user=st.sampled_from(["alice", "bob"]),
    warm_user=st.sampled_from(["alice", "bob"]),
    rpt=st.sampled_from(RPTS),
    bearer=st.booleans(),
    grant=st.sampled_from(["decision", "permissions"]),
)
def test_the_shortcut_answers_only_as_the_full_path_does(
    warm: list[tuple[str, str]],
    method: str,
    path: str,
    user: str,
    warm_user: str,
    rpt: list[dict[str, Any]] | None,
    bearer: bool,
    grant: str,
) -> None:
    server = Server()
    guard = enforcer({**BLOCK, "on-deny-redirect-to": "/denied"}, **{"enforcer-grant": grant})
    who = identity(user, rpt)
    earlier = identity(warm_user, rpt)  # the same user, or another: nothing may leak across
    for earlier_method, earlier_path in warm:  # what was asked before fills the caches
        drive(guard.enforce(request(earlier_method, earlier_path), earlier, bearer=bearer), server)
        guard.remembered(Proceed(earlier), earlier_path, earlier_method)
    outcome = Proceed(who)
    fast = guard.remembered(outcome, path, method)
    calls = len(server.calls)
    full = drive(guard.enforce(request(method, path), who, bearer=bearer), server)
    asked = len(server.calls) - calls
    # What was remembered never changes an answer: an enforcer that remembers nothing agrees.
    fresh = enforcer({**BLOCK, "on-deny-redirect-to": "/denied"}, **{"enforcer-grant": grant})
    other = Server()
    unremembered = drive(fresh.enforce(request(method, path), who, bearer=bearer), other)
    other.client.close()
    assert _answer(full) == _answer(unremembered)
    if fast is None:
        return
    assert isinstance(full, Identity), "the shortcut let through what the full path denies"
    assert fast.identity == full
    assert asked == 0, "what the shortcut knew, the full path did not ask"
    server.client.close()


def _answer(result: Identity | Respond) -> object:
    return result if isinstance(result, Identity) else (result.status, result.headers)
