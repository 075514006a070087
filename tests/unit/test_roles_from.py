"""``roles-from`` one function at a time (adapter/web/_roles.py): which tokens go to the
server, what the introspection answer gives, what is kept, and the one warning. The whole path
against the real test identity server is tests/integration/test_lightweight_tokens.py."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Mapping
from typing import Any

import pytest

from adapter.errors import ValidationError
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import ValidatedTokenCache
from adapter.web import _roles
from adapter.web._steps import NeedIntrospection, NeedMetadata

METADATA = ProviderMetadata(
    issuer="https://sso.example.com",
    token_endpoint="https://sso.example.com/token",
    introspection_endpoint="https://sso.example.com/introspect",
)
ROLES = {"realm_access": {"roles": ["admin"]}, "resource_access": {"app": {"roles": ["ops"]}}}
LIGHT = {"sub": "alice", "exp": time.time() + 86400, "scope": "openid"}  # outlives any run


def drive(
    flow: Generator[Any, Any, Mapping[str, Any]], answer: dict[str, Any]
) -> tuple[Mapping[str, Any], int]:
    """Run ``with_roles``: metadata, then ``answer`` to each introspection; (result, calls)."""
    calls = 0
    try:
        step = next(flow)
        while True:
            if isinstance(step, NeedMetadata):
                step = flow.send(METADATA)
            else:
                assert isinstance(step, NeedIntrospection)
                assert step.key.startswith("roles:"), "its own flight, never the token itself"
                assert "tok" not in step.key
                calls += 1
                step = flow.send(answer)
    except StopIteration as done:
        return done.value, calls


@pytest.mark.parametrize(
    ("roles_from", "claims", "asks"),
    [
        ("token", LIGHT, False),
        ("token", {**LIGHT, **ROLES}, False),
        ("auto", LIGHT, True),
        ("auto", {**LIGHT, "realm_access": {"roles": []}}, False),  # has them: none granted
        ("introspection", {**LIGHT, **ROLES}, True),
    ],
)
def test_which_tokens_go_to_the_server(
    roles_from: str, claims: Mapping[str, Any], asks: bool
) -> None:
    assert _roles.needs_introspection(roles_from, claims) is asks


def test_auto_takes_the_servers_roles_once_per_token() -> None:
    cache = ValidatedTokenCache()
    answer = {"active": True, "sub": "alice", **ROLES, "exp": LIGHT["exp"]}
    claims, calls = drive(_roles.with_roles("auto", cache, "tok-1", LIGHT), answer)
    assert calls == 1
    assert claims["realm_access"] == {"roles": ["admin"]}
    assert claims["resource_access"] == {"app": {"roles": ["ops"]}}
    assert claims["sub"] == "alice"
    again, calls = drive(_roles.with_roles("auto", cache, "tok-1", LIGHT), answer)
    assert calls == 0, "kept until the token expires"
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(claims))  # kept read-only
    _, calls = drive(_roles.with_roles("auto", cache, "tok-2", LIGHT), answer)
    assert calls == 1, "another token: asked again"


def test_introspection_replaces_the_tokens_own_roles() -> None:
    token_roles = {**LIGHT, "realm_access": {"roles": ["admin", "stale"]}}
    answer = {"active": True, "realm_access": {"roles": ["viewer"]}}
    claims, _ = drive(
        _roles.with_roles("introspection", ValidatedTokenCache(), "t", token_roles), answer
    )
    assert claims["realm_access"] == {"roles": ["viewer"]}


def test_a_token_the_server_calls_inactive_is_refused() -> None:
    flow = _roles.with_roles("auto", ValidatedTokenCache(), "tok", LIGHT)
    with pytest.raises(ValidationError, match="not active"):
        drive(flow, {"active": False})


def test_roleless_tokens_read_from_the_token_are_logged_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "adapter.web._roles")
    issuer = f"https://sso.example.com/{time.time_ns()}"  # a client no other test warned about
    for _ in range(3):
        _roles.note_roleless("token", issuer, "app", LIGHT)
    _roles.note_roleless("token", issuer, "other", {**LIGHT, **ROLES})  # has roles: nothing
    _roles.note_roleless("auto", issuer, "third", LIGHT)  # auto: nothing to say
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "roles-from" in warned[0]
    assert "'app'" in warned[0]
