"""Which key is "previous" after a switch, and for how long (the invalid_client retry)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapter import load_config
from adapter.config.key_options import KeyState
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing, SigningKey, default_kid
from adapter.state import AdapterState

CONFIG = load_config({"issuer": "https://sso.example.com/r", "client-id": "app",
                      "public-client": True})  # fmt: skip


def key(state: KeyState = KeyState.ACTIVE, activate_at: float | None = None) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    when = datetime.fromtimestamp(activate_at, UTC) if activate_at else None
    return SigningKey(kid=default_kid(private.public_key()), alg="ES256", private_key=private,
                      state=state, activate_at=when)  # fmt: skip


def state(*keys: SigningKey, previous: AdapterState | None = None) -> AdapterState:
    return AdapterState.load(CONFIG, key_ring=KeyRing(keys), previous=previous)


def test_an_edit_switch_falls_back_to_the_old_key_within_the_grace() -> None:
    a, b = key(), key(KeyState.NEXT)
    first = state(a, b)
    retired_a = SigningKey(**{**_fields(a), "state": KeyState.RETIRED})  # type: ignore[arg-type]
    active_b = SigningKey(**{**_fields(b), "state": KeyState.ACTIVE})  # type: ignore[arg-type]
    second = state(retired_a, active_b, previous=first)
    now = time.time()
    assert second.fallback_key(120, now).kid == a.kid  # type: ignore[union-attr]
    assert second.fallback_key(120, now + 121) is None, "outside the grace window"
    assert second.fallback_key(0, now) is None, "grace 0 disables it"


def test_a_removed_key_never_comes_back() -> None:
    a, b = key(), key(KeyState.NEXT)
    first = state(a, b)
    only_b = state(SigningKey(**{**_fields(b), "state": KeyState.ACTIVE}), previous=first)  # type: ignore[arg-type]
    assert only_b.fallback_key(120) is None


def test_an_activate_at_switch_uses_the_timeline() -> None:
    soon = time.time() + 0.5
    a, b = key(), key(KeyState.NEXT, activate_at=soon)
    ring_state = state(a, b)
    assert ring_state.fallback_key(120, soon - 0.1) is None, "before the switch: no fallback"
    assert ring_state.fallback_key(120, soon + 1).kid == a.kid  # type: ignore[union-attr]
    assert ring_state.fallback_key(120, soon + 121) is None
    # A reload after the switch keeps the memory of it (same signer, same switch time).
    again = state(a, b, previous=ring_state)
    assert again.fallback_key(120, soon + 1).kid == a.kid  # type: ignore[union-attr]


def test_reload_may_not_change_the_server_or_connection_settings() -> None:
    first = state(key())
    other = load_config({"issuer": "https://sso.example.com/r", "client-id": "app",
                         "public-client": True, "socket-timeout-millis": 1})  # fmt: skip
    with pytest.raises(ConfigError, match="socket-timeout-millis: changed"):
        AdapterState.load(other, key_ring=first.ring, previous=first)


def _fields(signing: SigningKey) -> dict[str, object]:
    return {"kid": signing.kid, "alg": signing.alg, "private_key": signing.private_key,
            "state": signing.state, "activate_at": signing.activate_at}  # fmt: skip
