"""The adapter's state: configuration, key ring and what derives from them, as one snapshot.

A state is built completely and validated before anything uses it, then swapped in with one
assignment (DESIGN.md rule 2); a request reads the reference once and works with that snapshot
to the end, so the key that signs its assertion is always one its JWKS publishes. A state also
remembers which key signed before a key switch, for the grace window in which a server with an
old JWKS cache may still refuse the new key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapter.config import AdapterConfig, load_config
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing, SigningKey
from adapter.keys.loader import load_key_ring

# What a running adapter's provider and HTTP client were built with: a reload may not change it.
_FIXED_AT_START = (
    "issuer",
    "client_id",
    "public_key_cache_ttl",
    "min_time_between_jwks_requests",
    "connection_timeout_millis",
    "socket_timeout_millis",
    "ssl_required",
    "endpoint_hosts",
    "truststore",
    "truststore_password",
    "truststore_type",
    "disable_trust_manager",
    "allow_any_hostname",
    "i_understand_tls_is_disabled",
    "backchannel_url",
    "proxy",
)
_FIXED_WEB_SETTINGS = ("session_store", "redis_url", "redis_prefix")


@dataclass(frozen=True, eq=False)
class AdapterState:
    """One consistent snapshot. ``replaced`` is the key an edit switched away from, and when."""

    config: AdapterConfig
    ring: KeyRing
    loaded_at: float = field(default_factory=time.time)
    replaced: SigningKey | None = None
    replaced_at: float = 0.0
    derived: dict[str, Any] = field(default_factory=dict, repr=False)  # per-state caches

    @classmethod
    def load(
        cls,
        source: AdapterConfig | str | Path,
        *,
        previous: AdapterState | None = None,
        key_ring: KeyRing | None = None,
    ) -> AdapterState:
        """Load and validate everything; raises :class:`ConfigError` and changes nothing."""
        config = source if isinstance(source, AdapterConfig) else load_config(source)
        ring = key_ring if key_ring is not None else load_key_ring(config)
        _load_what_requests_will_use(config, ring)
        if previous is None:
            return cls(config, ring)
        for name in _FIXED_WEB_SETTINGS:  # the store and its connection are built at start
            if getattr(config.web, name) != getattr(previous.config.web, name):
                raise ConfigError(
                    f"{name.replace('_', '-')}: changed; a reload keeps the session store it "
                    "started with (restart to change it)"
                )
        for name in _FIXED_AT_START:
            if getattr(config, name) != getattr(previous.config, name):
                raise ConfigError(
                    f"{name.replace('_', '-')}: changed; a reload keeps the identity server, the "
                    "client and the connection settings it started with (restart to change them)"
                )
        now = time.time()
        old, new = _active(previous.ring, now), _active(ring, now)
        if old is not None and new is not None and old.kid != new.kid:
            return cls(config, ring, replaced=old, replaced_at=now)
        # Same signer: whatever switch led to it (by time or by an earlier edit) still counts.
        earlier = previous.previous_signer(now)
        if earlier is None:
            return cls(config, ring)
        return cls(config, ring, replaced=earlier[0], replaced_at=earlier[1])

    def previous_signer(self, now: float | None = None) -> tuple[SigningKey, float] | None:
        """The key that signed before the current one, and when the current one took over.

        Only a key this state still publishes counts: a key removed from the configuration
        (retired for good, or compromised) never signs again, grace window or not.
        """
        moment = time.time() if now is None else now
        current = _active(self.ring, moment)
        if current is None:
            return None
        switched = self.ring.switch_at(moment)
        candidates = []
        if switched is not None and switched[0] is not None:
            candidates.append((switched[0], switched[1]))
        if self.replaced is not None and self.replaced.kid != current.kid:
            candidates.append((self.replaced, self.replaced_at))
        published = {key.kid: key for key in self.ring.keys}
        usable = [(published[k.kid], at) for k, at in candidates if k.kid in published]
        return max(usable, key=lambda c: c[1]) if usable else None

    def fallback_key(self, grace: float, now: float | None = None) -> SigningKey | None:
        """The key that signed before the current one, while the switch is ``grace`` s old.

        Switches by ``activate-at`` are read from the ring's timeline; switches by an edit from
        ``replaced``. Outside the window (or with no switch) there is no fallback.
        """
        moment = time.time() if now is None else now
        earlier = self.previous_signer(moment)
        if earlier is None or grace <= 0 or moment - earlier[1] >= grace:
            return None
        return earlier[0]

    def key_states(self, now: datetime | None = None) -> list[dict[str, str]]:
        """Each key's kid, algorithm, effective state and activation time, for status pages."""
        moment = now or datetime.now(UTC)
        return [
            {
                "kid": key.kid,
                "alg": key.alg,
                "state": self.ring.state_at(key, moment).value,
                **({"activate_at": key.activate_at.isoformat()} if key.activate_at else {}),
            }
            for key in self.ring.keys
        ] + [
            {
                "kid": key.kid,
                "alg": key.alg,
                "use": "enc",
                "state": self.ring.state_at(key, moment).value,
                **({"activate_at": key.activate_at.isoformat()} if key.activate_at else {}),
            }
            for key in self.ring.encryption_keys
        ]


def _active(ring: KeyRing, now: float | None = None) -> SigningKey | None:
    if not ring.keys:
        return None
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return ring.active_at(moment)


def _load_what_requests_will_use(config: AdapterConfig, ring: KeyRing) -> None:
    """Import the libraries this configuration's requests will need now, with the state (at
    start-up, or with a reload: the file watcher's thread, SIGHUP or the app's call): not at
    ``import adapter`` (an app that never uses them does not pay) and not in a request (an
    ASGI event loop would stall on the import)."""
    if config.web.client_certificate_header is not None:
        import cryptography.x509  # noqa: F401 - the forwarded client certificates (web/_mtls)
    if ring.encryption_keys:
        import joserfc.jwe  # noqa: F401 - encrypted ID tokens and responses (protocol/jwe)
    if config.policy_enforcer is not None and config.policy_enforcer.enforced:
        import adapter.web._enforcer  # noqa: F401 - the policy enforcer, its UMA calls
