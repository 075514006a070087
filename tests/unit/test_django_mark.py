"""The Django integration's identity mark (adapter/integrations/django): kept per identity
while it lives, and per what the settings say of its tenant (``admin_tenants``)."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from adapter.web._steps import Identity


def identity(tenant: str | None) -> Identity:
    claims: dict[str, Any] = {"sub": "alice", "email": "a@example.com"}
    return Identity(claims, "alice", frozenset({"admin"}), frozenset(), frozenset(), tenant=tenant)


def test_a_mark_is_kept_per_identity_and_changes_with_admin_tenants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapter.integrations import django as integration

    made = identity("acme")
    settings = type("S", (), {"maps_roles": lambda self, tenant: tenant in admin})()
    admin: set[str] = set()
    monkeypatch.setattr(integration, "adapter_settings", lambda: settings)
    before = integration.identity_mark(made)
    assert integration.identity_mark(made) == before, "the same identity: the same mark"
    admin.add("acme")
    assert integration.identity_mark(made) != before, "its tenant entered admin_tenants"


def test_a_mark_is_dropped_with_its_identity() -> None:
    from adapter.integrations import django as integration

    made = identity(None)
    integration.identity_mark(made)
    key = (id(made), None)
    assert key in integration._MARKS
    del made
    gc.collect()  # other tests' identities may go too: only this one's key is asserted
    assert key not in integration._MARKS, "never keeps an identity (or its tokens) alive"
