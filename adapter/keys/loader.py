"""Configured keys -> a :class:`KeyRing`: open each keystore, pick the entry, check it.

This is where a configuration meets the files it names, so every error is re-worded to start
with the configuration field (``credentials.keys[1]``) that points at the file.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter.config import AdapterConfig, KeyConfig
from adapter.config.key_options import (
    EC_KEY_MANAGEMENT,
    KEY_MANAGEMENT_ALGORITHMS,
    RSA_KEY_MANAGEMENT,
    KeyState,
)
from adapter.config.profile import FAPI_RSA_DEFAULT, Profile, key_algorithm_problem
from adapter.errors import ConfigError, KeystoreError
from adapter.jose import PrivateKey, algorithm_mismatch, default_algorithm, key_type_name
from adapter.keys.keyring import ClientKey, EncryptionKey, KeyRing, SigningKey, default_kid

if TYPE_CHECKING:
    from adapter.keys._entry import KeyEntry, PasswordNeeded


def load_key_ring(config: AdapterConfig, *, now: datetime | None = None) -> KeyRing:
    """Read every configured keystore and build the key ring (empty for secret methods).

    Errors start with the configuration file's path, like those of ``load_config``.
    """
    credentials = config.credentials
    try:
        keys = [
            load_client_key(key, credentials.algorithm, config.profile) for key in credentials.keys
        ]
        for key in keys:
            refuse_if_revoked(key, credentials.revoked_kids)
        ring = KeyRing(keys, now=now)
        _check_encrypted_id_tokens(config, ring)
        return ring
    except ConfigError as exc:
        if config.source is None:
            raise
        error = type(exc)(f"{config.source}: {exc}")
    raise error


def load_client_key(
    key: KeyConfig, default_alg: str | None, profile: Profile = "none"
) -> ClientKey:
    """One configured key, signing or encryption as its ``use`` says."""
    if key.use == "enc":
        return load_encryption_key(key)
    return load_signing_key(key, default_alg, profile)


def load_signing_key(
    key: KeyConfig, default_alg: str | None, profile: Profile = "none"
) -> SigningKey:
    """One configured key, loaded and checked against its algorithm (and the ``profile``'s:
    an RSA key without one signs PS256 under FAPI 2.0, never RS256)."""
    entry = _entry(key)
    alg = _algorithm(key, default_alg or entry.alg, entry.private_key, profile)
    state = _state(key)
    return SigningKey(
        kid=key.kid or entry.kid or default_kid(entry.private_key.public_key()),
        alg=alg,
        private_key=entry.private_key,
        cert_chain=entry.cert_chain,
        state=state,
        activate_at=key.activate_at,
        source=f"{key.field} ({key.keystore.name}{'#' + entry.alias if entry.alias else ''})",
    )


def load_encryption_key(key: KeyConfig) -> EncryptionKey:
    """One configured ``use = "enc"`` key, loaded and checked against its key-management
    algorithm (RSA-OAEP-256 for an RSA key and ECDH-ES+A256KW for an EC key unless set)."""
    entry = _entry(key)
    private_key = entry.private_key
    written = key.algorithm or (entry.alg if entry.alg in KEY_MANAGEMENT_ALGORITHMS else None)
    allowed: tuple[str, ...]
    if isinstance(private_key, rsa.RSAPrivateKey):
        allowed, default = RSA_KEY_MANAGEMENT, "RSA-OAEP-256"
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        allowed, default = EC_KEY_MANAGEMENT, "ECDH-ES+A256KW"
    else:
        raise ConfigError(
            f"{key.field}.use: an {key_type_name(private_key)} key cannot decrypt "
            f"({key.keystore}); an encryption key is RSA (2048 bits or more) or EC P-256, "
            "P-384 or P-521"
        )
    alg = written or default
    if alg not in allowed:
        raise ConfigError(
            f"{key.field}.algorithm: {alg} needs "
            f"{'an EC' if alg in EC_KEY_MANAGEMENT else 'an RSA'} key, this is "
            f"{key_type_name(private_key)} ({key.keystore}); use one of {', '.join(allowed)}"
        )
    return EncryptionKey(
        kid=key.kid or entry.kid or default_kid(private_key.public_key()),
        alg=alg,
        private_key=private_key,
        cert_chain=entry.cert_chain,
        state=_state(key),
        activate_at=key.activate_at,
        decrypt_until=key.decrypt_until,
        source=f"{key.field} ({key.keystore.name}{'#' + entry.alias if entry.alias else ''})",
    )


def _state(key: KeyConfig) -> KeyState:
    state = KeyState(key.state) if key.state else None
    if state is None:
        state = KeyState.NEXT if key.activate_at else KeyState.ACTIVE
    return state


def _check_encrypted_id_tokens(config: AdapterConfig, ring: KeyRing) -> None:
    """With ``id-token-encrypted-response-alg`` set, a published encryption key must have
    that algorithm: the server finds the key to encrypt to by it."""
    alg = config.id_token_encrypted_response_alg
    if alg is None:
        return
    if not any(key.alg == alg and key.published for key in ring.encryption_keys):
        raise ConfigError(
            f"id-token-encrypted-response-alg: no published encryption key has algorithm {alg}; "
            f'add a [[credentials.keys]] entry with use = "enc" and algorithm = "{alg}" (the '
            "server encrypts to a key of the client's JWKS with this alg)"
        )


def _entry(key: KeyConfig) -> KeyEntry:
    # The readers (and cryptography.x509) load with the first keystore: an app whose client
    # authenticates with a secret never imports them.
    from adapter.keys._entry import PasswordNeeded
    from adapter.keys.keystore import read_keystore, select_entry

    try:
        entries = read_keystore(
            key.keystore,
            type=key.type,
            password=key.password.reveal() if key.password else None,
            key_password=key.key_password.reveal() if key.key_password else None,
            certificate=key.certificate,
        )
        entry = select_entry(key.keystore, entries, key.alias)
    except PasswordNeeded as exc:
        raise KeystoreError(_missing_password(key, exc)) from None
    except KeystoreError as exc:
        raise KeystoreError(f"{key.field}: {exc}") from None
    return entry


def _algorithm(
    key: KeyConfig, default_alg: str | None, private_key: PrivateKey, profile: Profile
) -> str:
    """What ``key`` signs: as configured, else as its keystore or the credentials say, else
    the key type's default (PS256 for RSA under a FAPI profile, which refuses RS256)."""
    alg = key.algorithm or default_alg or default_algorithm(private_key)
    if profile != "none" and alg == "RS256" and not (key.algorithm or default_alg):
        alg = FAPI_RSA_DEFAULT
    refused = key_algorithm_problem(profile, alg)
    if refused:
        raise ConfigError(f"{key.field}.algorithm: {refused} ({key.keystore})")
    problem = algorithm_mismatch(alg, private_key)
    if problem:
        raise ConfigError(
            f"{key.field}.algorithm: {problem} ({key.keystore}); set the algorithm that fits "
            "this key"
        )
    return alg


def refuse_if_revoked(key: ClientKey, revoked: frozenset[str]) -> None:
    """A revoked key never comes back: not by its kid, nor under another ``kid`` (the kid
    Keycloak computes from the public key is checked too, so a renamed copy is caught)."""
    names = {key.kid, default_kid(key.private_key.public_key())} & revoked
    if names:
        raise ConfigError(
            f"{key.source}: kid {sorted(names)[0]} is listed in credentials.revoked-kids; a "
            "revoked key must not sign or be published again: remove this entry (stage a new "
            "key with oidc-adapter keys rotate)"
        )


def _missing_password(key: KeyConfig, needed: PasswordNeeded) -> str:
    """The message for a password the configuration does not give: the field that gives it."""
    name = key.lock_fields[0 if needed.which == "store" else 1]
    if key.lock_fields[0] == "password":  # native: a variable or a file keeps it out of here
        fix = f"set {name}-env (or {name}-file, or {name})"
    else:  # keycloak.json: the value, or a ${env.VAR} reference to it
        fix = f'set {name}, e.g. "${{env.KEYSTORE_PASSWORD}}"'
    return f"{key.field}.{name}: {needed.problem}; {fix}"
