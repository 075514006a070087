"""The policy enforcer asked in code: the shell's authorizer (``adapter._shell.ShellAuthorizer``,
behind ``identity.has_permission`` / ``has_permission_async``) and the idioms' decision
(``adapter.web._guard``: ``require(permission=...)``'s 403, 503 and loud failure).

One function at a time, against the small Keycloak stand-in of tests/unit/test_enforcer.py
(httpx MockTransport); the frameworks against the real identity server are in
tests/integration/test_enforcer_idioms.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import parse_qs

import httpx
import pytest

from adapter._shell import AsyncSteps, ShellAuthorizer, SyncSteps
from adapter.errors import ProviderError
from adapter.protocol.flows import Flow
from adapter.protocol.uma import Permission
from adapter.state import AdapterState
from adapter.web import _guard
from adapter.web._steps import Identity, NeedFlow, NeedIntrospection, NeedMetadata, WebRequest
from tests.unit.test_enforcer import Server, enforcer, identity

# -- the permission's text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bank Account#view", Permission("Bank Account", ("view",))),
        (" Bank Account # view , delete ", Permission("Bank Account", ("view", "delete"))),
        ("Bank Account", Permission("Bank Account")),
        ("Bank Account#", Permission("Bank Account")),
        ("#view", Permission(None, ("view",))),
    ],
)
def test_a_permission_names_a_resource_or_scopes(text: str, expected: Permission) -> None:
    assert _guard.parse_permission(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "#", " # , ", "#,"])
def test_a_permission_naming_nothing_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r'"Bank Account#view"'):
        _guard.parse_permission(text)


def test_the_idioms_refuse_a_malformed_permission_when_the_route_is_declared() -> None:
    from adapter.integrations.fastapi import require as fastapi_require
    from adapter.integrations.flask import OIDC
    from adapter.integrations.starlette import require as starlette_require

    with pytest.raises(ValueError, match="name a resource"):
        starlette_require(permission="#")
    with pytest.raises(ValueError, match="name a resource"):
        fastapi_require(permission="")
    with pytest.raises(ValueError, match="name a resource"):
        OIDC(config="never-read.toml").require(permission=" ")
    assert fastapi_require(permission="Bank Account#view,delete").permission == (
        "Bank Account#view, delete"
    ), "as the 403 and the logs name it"


# -- the shell's authorizer ---------------------------------------------------------------------


class Recording(Server):
    """The stand-in, noting whether each grant named the caller as ``subject_token`` (a bearer
    request) or sent the token as the grant's bearer credential (a session)."""

    def __init__(self, *, down: bool = False) -> None:
        super().__init__(down=down)
        self.subject_tokens: list[bool] = []

    def token(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        if form.get("grant_type") != ["client_credentials"]:
            self.subject_tokens.append("subject_token" in form)
        return super().token(request)

    def grants(self) -> list[str]:
        return [call for call in self.calls if call.startswith("grant")]


class SyncIO:
    """The steps a check needs, done at once (a WSGI shell's SyncSteps, without a client)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def metadata(self) -> Any:
        return self.server.perform(NeedMetadata())

    def introspection(self, step: NeedIntrospection, state: AdapterState) -> Any:
        return self.server.perform(step)

    def flow(self, flow: Flow[Any], state: AdapterState, timeout: float | None) -> Any:
        return self.server.perform(NeedFlow(flow))


class AsyncIO(AsyncSteps):
    """An ASGI shell's steps, awaited (the stand-in answers at once)."""

    def __init__(self, server: Server) -> None:  # no shell, no client
        self.server = server

    async def metadata(self) -> Any:
        return self.server.perform(NeedMetadata())

    async def introspection(self, step: NeedIntrospection, state: AdapterState) -> Any:
        return self.server.perform(step)

    async def flow(self, flow: Flow[Any], state: AdapterState, timeout: float | None) -> Any:
        return self.server.perform(NeedFlow(flow))


@pytest.fixture
def server() -> Iterator[Recording]:
    made = Recording()
    yield made
    made.client.close()


def authorizer(server: Server, *, asynchronous: bool = False) -> ShellAuthorizer:
    io = AsyncIO(server) if asynchronous else cast(SyncSteps, SyncIO(server))
    made = ShellAuthorizer(cast(AdapterState, None), io)
    made.enforcer = enforcer()
    return made


def with_authorizer(user: str, made: ShellAuthorizer, csrf_token: str | None = None) -> Identity:
    """An identity as the core makes it: a session's carries a CSRF token, a bearer's none."""
    return Identity(
        identity(user).claims,
        user,
        frozenset(),
        frozenset(),
        frozenset(),
        f"{user}-token",
        csrf_token=csrf_token,
        authorizer=made,
    )


def test_a_wsgi_identity_asks_through_the_shells_steps_once(server: Recording) -> None:
    bob = with_authorizer("bob", authorizer(server))
    assert bob.has_permission("res-2#view") is True
    assert bob.has_permission("res-2#view") is True
    assert server.grants() == ["grant bob res-2#view"], "remembered: asked once"
    assert bob.has_permission("res-2#delete") is False
    assert bob.has_permission("res-2#delete") is False
    assert len(server.grants()) == 2, "a denial is remembered too"
    assert server.subject_tokens == [True, True], "a bearer token's subject (no ID token)"


def test_an_asgi_identity_awaits_the_same(server: Recording) -> None:
    bob = with_authorizer("bob", authorizer(server, asynchronous=True))

    async def ask() -> list[bool]:
        return [
            await bob.has_permission_async("res-2#view"),
            await bob.has_permission_async("res-2#view"),
            await bob.has_permission_async("res-2#delete"),
        ]

    assert asyncio.run(ask()) == [True, True, False]
    assert len(server.grants()) == 2
    with pytest.raises(RuntimeError, match="has_permission_async"):
        bob.has_permission("res-2#view")  # the WSGI call in an ASGI app


def test_a_sessions_token_is_the_grants_bearer_credential(server: Recording) -> None:
    alice = with_authorizer("alice", authorizer(server), csrf_token="a session's CSRF token")
    assert alice.has_permission("res-1#view") is True
    assert server.subject_tokens == [False]


def test_the_server_down_raises_never_a_yes() -> None:
    down = Recording(down=True)
    bob = with_authorizer("bob", authorizer(down))
    with pytest.raises(ProviderError):
        bob.has_permission("res-2#view")
    down.client.close()


def test_a_malformed_permission_and_a_missing_enforcer_are_loud(server: Recording) -> None:
    made = authorizer(server)
    bob = with_authorizer("bob", made)
    with pytest.raises(ValueError, match="name a resource"):
        bob.has_permission("#")
    made.enforcer = None
    with pytest.raises(_guard.EnforcerMissing, match="configure policy-enforcer"):
        bob.has_permission("res-2#view")
    assert server.calls == []


# -- the idioms' decision -----------------------------------------------------------------------


class Fixed:
    """An authorizer that answers as told (or raises)."""

    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer

    def has_permission(self, identity: Identity, permission: str) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def told(answer: bool | Exception | None) -> Identity:
    made = Fixed(answer) if answer is not None else None
    return Identity({"sub": "bob"}, "bob", frozenset(), frozenset(), frozenset(), authorizer=made)


API = WebRequest("GET", "/delete", "", {"accept": "application/json", "authorization": "x"}, {})


def test_granted_passes_and_denied_is_the_403_of_a_refused_rule() -> None:
    assert _guard.asked(told(True), "res#view") == "granted"
    assert _guard.permission_answer("granted", told(True), "res#view", API, "/logout") is None
    assert _guard.asked(told(False), "res#view") == "denied"
    denied = _guard.permission_answer("denied", told(False), "res#view", API, "/logout")
    assert denied is not None
    assert denied.status == 403
    assert json.loads(denied.body) == {
        "error": "forbidden",
        "missing": ["res#view"],
        "kind": "permission",
    }
    assert ("WWW-Authenticate", 'Bearer error="insufficient_scope"') in denied.headers


def test_the_server_unreachable_is_a_503() -> None:
    verdict = _guard.asked(told(ProviderError("connection refused")), "res#view")
    assert verdict == "unavailable"
    answer = _guard.permission_answer(verdict, told(None), "res#view", API, "/logout")
    assert answer is not None
    assert answer.status == 503
    assert json.loads(answer.body)["error"] == "temporarily_unavailable"
    assert ("Retry-After", "5") in answer.headers


def test_the_async_idioms_decide_the_same() -> None:
    async def ask() -> list[str]:
        return [
            await _guard.asked_async(told(True), "res#view"),
            await _guard.asked_async(told(False), "res#view"),
            await _guard.asked_async(told(ProviderError("down")), "res#view"),
        ]

    assert asyncio.run(ask()) == ["granted", "denied", "unavailable"]


def test_without_a_policy_enforcer_the_idioms_fail_loudly() -> None:
    with pytest.raises(_guard.EnforcerMissing, match=r"configure policy-enforcer .*DISABLED"):
        _guard.asked(told(None), "res#view")
    with pytest.raises(_guard.EnforcerMissing, match="configure policy-enforcer"):
        asyncio.run(_guard.asked_async(told(None), "res#view"))
