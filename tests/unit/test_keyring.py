"""The key ring: algorithms checked against keys, rotation states, and the published JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import JWKRegistry

from adapter.config.key_options import KeyState
from adapter.errors import ConfigError
from adapter.jose import PrivateKey, algorithm_mismatch, default_algorithm
from adapter.keys.generate import parse_subject, self_signed_certificate
from adapter.keys.keyring import KeyRing, SigningKey, default_kid

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}

# Generating RSA keys is slow; a small pool serves every test and hypothesis example.
KEYS: dict[str, PrivateKey] = {
    "RSA-2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "RSA-3072": rsa.generate_private_key(public_exponent=65537, key_size=3072),
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-384": ec.generate_private_key(ec.SECP384R1()),
    "P-521": ec.generate_private_key(ec.SECP521R1()),
    "Ed25519": ed25519.Ed25519PrivateKey.generate(),
}
ALGS_FOR = {
    "RSA-2048": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    "RSA-3072": ["RS256", "PS512"],
    "P-256": ["ES256"],
    "P-384": ["ES384"],
    "P-521": ["ES512"],
    "Ed25519": ["EdDSA"],
}
CERTS = {
    name: self_signed_certificate(key, parse_subject(f"CN={name}"), 30, ALGS_FOR[name][0])
    for name, key in KEYS.items()
}


def signing_key(name: str = "P-256", **overrides: object) -> SigningKey:
    key = KEYS[name]
    values: dict[str, object] = {
        "kid": default_kid(key.public_key()),
        "alg": ALGS_FOR[name][0],
        "private_key": key,
        "source": name,
    }
    values.update(overrides)
    return SigningKey(**values)  # type: ignore[arg-type]


def test_default_kid_is_base64url_sha256_of_spki() -> None:
    public = KEYS["RSA-2048"].public_key()
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    expected = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()
    assert default_kid(public) == expected
    assert len(expected) == 43


@pytest.mark.parametrize(
    ("alg", "name", "fits"),
    [
        ("RS256", "RSA-2048", True),
        ("PS384", "RSA-2048", True),
        ("RS256", "P-256", False),
        ("ES256", "P-256", True),
        ("ES256", "P-384", False),
        ("ES384", "P-256", False),
        ("ES512", "P-521", True),
        ("EdDSA", "Ed25519", True),
        ("EdDSA", "RSA-2048", False),
        ("PS256", "Ed25519", False),
        ("HS256", "RSA-2048", False),
        ("RS999", "RSA-2048", False),
    ],
)
def test_algorithm_must_fit_the_key(alg: str, name: str, fits: bool) -> None:
    problem = algorithm_mismatch(alg, KEYS[name])
    assert (problem is None) is fits
    if not fits:
        with pytest.raises(ValueError, match=alg.replace("999", "")):
            signing_key(name, alg=alg)


def test_default_algorithms_follow_the_key_type() -> None:
    assert [default_algorithm(KEYS[n]) for n in ("RSA-2048", "P-384", "P-521", "Ed25519")] == [
        "RS256",
        "ES384",
        "ES512",
        "EdDSA",
    ]


@pytest.mark.parametrize("name", list(KEYS))
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_signatures_verify_with_joserfc(name: str) -> None:
    """Every algorithm's raw signature is a valid JWS signature (checked by joserfc)."""
    from joserfc import jws

    for alg in ALGS_FOR[name]:
        key = signing_key(name, alg=alg)
        header = base64.urlsafe_b64encode(json.dumps({"alg": alg}).encode()).rstrip(b"=")
        payload = base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=")
        signing_input = header + b"." + payload
        signature = base64.urlsafe_b64encode(key.sign(signing_input)).rstrip(b"=")
        token = (signing_input + b"." + signature).decode()
        public = JWKRegistry.import_key(key.public_jwk())
        verified = jws.deserialize_compact(token, public, algorithms=[alg])
        assert verified.payload == b'{"sub":"x"}'


def test_one_configured_active_key_signs() -> None:
    active = signing_key("P-256")
    upcoming = signing_key("P-384", state=KeyState.NEXT)
    old = signing_key("Ed25519", state=KeyState.RETIRED)
    ring = KeyRing([old, active, upcoming], now=NOW)
    assert ring.active_at(NOW) is active
    assert [ring.state_at(k, NOW) for k in ring.keys] == [
        KeyState.RETIRED,
        KeyState.ACTIVE,
        KeyState.NEXT,
    ]
    assert [k["kid"] for k in json.loads(ring.jwks_bytes)["keys"]] == [
        old.kid,
        active.kid,
        upcoming.kid,
    ], "next, active and retired keys are all published, in configuration order"


def test_activate_at_switches_by_itself() -> None:
    current = signing_key("P-256")
    staged = signing_key("P-384", activate_at=NOW + timedelta(days=3), state=KeyState.NEXT)
    ring = KeyRing([current, staged], now=NOW)
    assert ring.active_at(NOW) is current
    assert ring.state_at(staged, NOW) is KeyState.NEXT
    later = NOW + timedelta(days=3)
    assert ring.active_at(later - timedelta(microseconds=1)) is current
    assert ring.active_at(later) is staged
    assert ring.state_at(current, later) is KeyState.RETIRED
    assert ring.state_at(staged, later) is KeyState.ACTIVE


def test_newest_activated_key_wins() -> None:
    first = signing_key("P-256", activate_at=NOW - timedelta(days=10), state=KeyState.NEXT)
    second = signing_key("P-384", activate_at=NOW - timedelta(days=1), state=KeyState.NEXT)
    third = signing_key("P-521", activate_at=NOW + timedelta(days=1), state=KeyState.NEXT)
    ring = KeyRing([third, first, second], now=NOW)
    assert ring.active_at(NOW) is second
    assert ring.state_at(first, NOW) is KeyState.RETIRED
    assert ring.state_at(third, NOW) is KeyState.NEXT


def test_two_active_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="both configured active"):
        KeyRing([signing_key("P-256"), signing_key("P-384")], now=NOW)


def test_same_activation_time_is_refused() -> None:
    when = NOW - timedelta(hours=1)
    keys = [
        signing_key("P-256", activate_at=when, state=KeyState.NEXT),
        signing_key("P-384", activate_at=when, state=KeyState.NEXT),
    ]
    with pytest.raises(ConfigError, match="both activate at"):
        KeyRing(keys, now=NOW)


def test_no_active_key_now_is_refused() -> None:
    staged = signing_key("P-256", activate_at=NOW + timedelta(days=1), state=KeyState.NEXT)
    with pytest.raises(ConfigError, match="no key is active now"):
        KeyRing([staged, signing_key("P-384", state=KeyState.NEXT)], now=NOW)


def test_duplicate_kid_is_refused() -> None:
    with pytest.raises(ConfigError, match="kid 'same'"):
        KeyRing([signing_key("P-256", kid="same"), signing_key("P-384", kid="same",
                 state=KeyState.NEXT)], now=NOW)  # fmt: skip


def test_empty_ring_publishes_an_empty_set() -> None:
    ring = KeyRing([], now=NOW)
    assert ring.jwks_bytes == b'{"keys":[]}'
    assert ring.active_at(NOW) is None


def test_jwks_bytes_are_deterministic_with_a_strong_etag() -> None:
    def build() -> KeyRing:
        return KeyRing(
            [signing_key("RSA-2048", cert_chain=(CERTS["RSA-2048"],)), signing_key(
                "Ed25519", state=KeyState.NEXT)], now=NOW)  # fmt: skip

    first, second = build(), build()
    assert first.jwks_bytes == second.jwks_bytes
    assert first.etag == second.etag
    assert first.etag.startswith('"')
    assert first.etag.endswith('"')
    assert not first.etag.startswith("W/")
    other = KeyRing([signing_key("P-256")], now=NOW)
    assert other.etag != first.etag


def test_repr_shows_no_key_material() -> None:
    key = signing_key("RSA-2048")
    numbers = KEYS["RSA-2048"].private_numbers()  # type: ignore[union-attr]
    text = repr(KeyRing([key], now=NOW)) + repr(key)
    assert str(numbers.d) not in text
    assert "RSA-2048" in text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    choices=st.lists(
        st.tuples(
            st.sampled_from(sorted(KEYS)),
            st.booleans(),  # with a certificate
            st.one_of(st.none(), st.text("abcdef0123456789-_", min_size=1, max_size=20)),
            st.integers(min_value=0, max_value=5),  # which algorithm of the key's family
        ),
        min_size=1,
        max_size=len(KEYS),
        unique_by=lambda c: c[0],
    )
)
def test_jwks_has_public_members_only_and_imports_to_the_same_key(
    choices: list[tuple[str, bool, str | None, int]],
) -> None:
    keys = []
    for index, (name, with_cert, kid, alg_index) in enumerate(choices):
        algs = ALGS_FOR[name]
        keys.append(
            signing_key(
                name,
                alg=algs[alg_index % len(algs)],
                kid=f"{kid}-{index}" if kid else default_kid(KEYS[name].public_key()),
                cert_chain=(CERTS[name],) if with_cert else (),
                state=KeyState.ACTIVE if index == 0 else KeyState.NEXT,
            )
        )
    ring = KeyRing(keys, now=NOW)
    published = json.loads(ring.jwks_bytes)["keys"]
    assert len(published) == len(keys)
    for jwk, key in zip(published, keys, strict=True):
        assert not PRIVATE_MEMBERS & set(jwk), f"private member published: {sorted(jwk)}"
        assert jwk["kid"] == key.kid
        assert jwk["alg"] == key.alg
        assert jwk["use"] == "sig"
        imported = JWKRegistry.import_key(jwk)
        assert not imported.is_private
        ours = key.private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        theirs = imported.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert theirs == ours
        if key.cert_chain:
            der = key.cert_chain[0].public_bytes(Encoding.DER)
            assert base64.b64decode(jwk["x5c"][0]) == der
            assert jwk["x5t#S256"] == key.x5t_s256
        else:
            assert not {"x5c", "x5t", "x5t#S256"} & set(jwk)


def test_a_retired_key_never_signs_even_with_a_past_activate_at() -> None:
    active = signing_key("P-256")
    retired = signing_key("P-384", state=KeyState.RETIRED, activate_at=NOW - timedelta(days=1))
    ring = KeyRing([active, retired], now=NOW)
    assert ring.active_at(NOW) is active
    assert ring.state_at(retired, NOW) is KeyState.RETIRED


def test_ring_is_read_only_and_wants_aware_times() -> None:
    ring = KeyRing([signing_key("P-256")], now=NOW)
    with pytest.raises(AttributeError):
        ring.jwks_bytes = b"{}"  # type: ignore[misc]
    with pytest.raises(ValueError, match="timezone-aware"):
        ring.active_at(datetime(2026, 1, 1))
