"""The benchmarks run (a handful of iterations each): the code cannot rot. Speed is not tested.

Nothing here looks at the sign or size of a timing: a few iterations on a shared machine say
nothing about either. What is checked is that every section produces its rows, each with
numbers, and how the table reads a value that is noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.__main__ import main, table
from bench.dpop import dpop_rows
from bench.measure import Row, added
from bench.tenants import TENANTS, tenants_rows

SECTIONS = {
    "requests": (
        "ASGI bare ASGI app",
        "ASGI Starlette",
        "ASGI bearer",
        "WSGI Flask app",
        "ASGI anonymous, public page",
        "ASGI anonymous, protected -> 401",
        "ASGI anonymous, protected -> 302",
        "ASGI signed in, memory store",
        "ASGI static file",
        "WSGI anonymous, public page",
        "WSGI anonymous, protected -> 401",
        "WSGI anonymous, protected -> 302",
        "WSGI bearer, token seen before",
    ),
    "/k_jwks": ("/k_jwks: middleware", "/k_jwks 304"),
    "tenants": (
        "tenants: signed in at the last of 50 (prefix) vs 1 tenant",
        "tenants: signed in, 1-tenant file vs plain configuration",
        "tenants: bearer seen before, routed by iss among 50 vs plain app",
        "tenants: start-up, 8 tenants (client secret)",
        "tenants: start-up, 8 tenants (PEM key)",
    ),
    "redis": ("Redis store, session seen before", "Redis store, first request", "Redis: logout"),
    "assertions": ("assertion RS256", "assertion PS256", "assertion ES256", "assertion EdDSA"),
    "validation": ("validation RS256 first seen", "validation cached token"),
    "dpop": (
        "DPoP proof ES256: make_proof vs raw sign + DER->raw",
        "DPoP proof ES256: make_proof vs raw DER sign alone",
        "DPoP proof EdDSA: make_proof vs raw sign",
        "DPoP request ES256, first-seen token",
        "DPoP request PS256, first-seen token",
        "DPoP request, token seen before",
    ),
    "roles": ("lightweight token, roles from kept introspection vs JWT with roles",),
    "peers: bearer APIs": (
        "bearer, token seen before: oidc-adapter vs fastapi-keycloak-middleware (FastAPI)",
        "bearer, first-seen token: oidc-adapter vs fastapi-keycloak-middleware (FastAPI)",
        "token check, first seen (cold): oidc-adapter vs python-keycloak decode_token (JWKS)",
        "token check, seen before (cached): oidc-adapter vs python-keycloak decode_token (JWKS)",
    ),
    "peers: WSGI sign-in": (
        "Django session request: oidc-adapter vs mozilla-django-oidc (SessionRefresh)",
        "DRF bearer: oidc-adapter vs mozilla-django-oidc (OIDCAuthentication)",
        "Flask session request: oidc-adapter vs flask-oidc",
    ),
    "many sessions": (
        "500 distinct sessions round-robin: throughput vs SessionMiddleware",
        "500 distinct sessions: remembered decisions' memory at the byte bound",
    ),
    "login": (
        "login round trip: oidc-adapter vs authlib (Starlette client)",
        "callback: oidc-adapter vs authlib authorize_access_token + session write",
    ),
    "cold paths": (
        "unseen session: first request vs SessionMiddleware's cookie open",
        "import: adapter (WSGI) vs flask",
        "import: adapter (ASGI) vs starlette",
        "first request after start (discovery + JWKS once) vs request seen before",
    ),
    "policy enforcer": (
        "ASGI signed in, enforcer decision remembered: added vs SessionMiddleware's",
        "ASGI signed in, enforcer decision remembered vs no enforcer",
    ),
    "encrypted ID tokens": (
        "encrypted ID token RSA-OAEP-256/A256GCM: decrypt + verify vs raw cryptography ops",
    ),
    "http": (
        "HTTP wrk, uvicorn h11, 1 worker: anonymous public page, req per CPU-second",
        "HTTP wrk, uvicorn h11, 1 worker: signed in (cookie seen before), p99",
        "HTTP wrk, uvicorn httptools+uvloop, 2 workers: signed in (cookie seen before), req/s",
        "HTTP wrk, uvicorn httptools+uvloop, 2 workers: signed in, Redis store",
    ),
    "memory": ("memory, 200 session requests", "memory, 100 bearer tokens"),
}


def test_every_benchmark_runs_and_produces_rows(tmp_path: Path) -> None:
    output = tmp_path / "rows.json"
    assert main(["--quick", "--json", str(output)]) == 0
    rows = json.loads(output.read_text())
    names = [row["name"] for row in rows]
    for section, parts in SECTIONS.items():
        for part in parts:
            assert any(name.startswith(part) for name in names), f"{section}: no {part!r} row"
    for row in rows:
        assert set(row) == {
            "name", "value", "baseline", "ratio", "target", "meets_target", "noise",
        }  # fmt: skip
        assert all(isinstance(row[key], float | int) for key in ("value", "baseline", "ratio"))
        assert math.isfinite(row["value"]), row
        assert isinstance(row["noise"], bool)
        if row["noise"]:
            assert row["meets_target"] is None, "noise never meets (or misses) a target"
    # Every target is a ratio against something timed in the same run, none a µs constant.
    assert not [name for name in names if "absolute" in name]
    assert "validation cached token vs raw RS256 verify" in names
    assert "ASGI bearer, token seen before: added per request vs SessionMiddleware's" in names


def test_the_tenants_rows_run_on_their_own(tmp_path: Path) -> None:
    """Issue 22's rows, a few calls each: 50 tenants and 1 built from their files, each request
    answered 200 (the rows assert it), and the start-up rows for a few tenants."""
    rows = tenants_rows(10, tmp_path, quick=True)
    targets = {row.name: row.target for row in rows}
    assert targets == {
        f"tenants: signed in at the last of {TENANTS} (prefix) vs 1 tenant": 1.05,
        "tenants: signed in, 1-tenant file vs plain configuration": None,
        f"tenants: bearer seen before, routed by iss among {TENANTS} vs plain app": 1.10,
        "tenants: start-up, 8 tenants (client secret), s per 50 vs 50 plain apps": None,
        "tenants: start-up, 8 tenants (PEM key), s per 50 vs 50 plain apps": None,
    }
    assert all(row.value > 0 and row.baseline > 0 for row in rows)
    assert len(list((tmp_path / "fifty" / "tenants").iterdir())) == TENANTS
    assert {p.suffix for p in (tmp_path / "fifty" / "tenants").iterdir()} == {".json", ".toml"}


def test_the_dpop_rows_run_on_their_own() -> None:
    """Issue 23's rows, a few calls each: proofs against the raw signature, and DPoP requests
    let in by the adapter in bearer mode (the rows assert 200), with their targets."""
    rows = dpop_rows(10, 5, 2)
    targets = {row.name: row.target for row in rows}
    assert targets == {
        "DPoP proof ES256: make_proof vs raw sign + DER->raw (r||s)": 1.15,
        "DPoP proof ES256: make_proof vs raw DER sign alone": None,
        "DPoP proof EdDSA: make_proof vs raw sign": 1.15,
        **{
            f"DPoP request {alg}, first-seen token: proof + token check vs bearer first check": 1.6
            for alg in ("ES256", "EdDSA", "PS256")
        },
        **{
            f"DPoP request {alg}, first-seen token vs bearer first check"
            " + proof signature verify": None
            for alg in ("ES256", "EdDSA", "PS256")
        },
        "DPoP request, token seen before (proof checked): added vs SessionMiddleware's": None,
    }
    assert all(math.isfinite(row.value) and row.baseline > 0 for row in rows)


def test_the_jwe_row_runs_on_its_own() -> None:
    """Issue 24's row, a few calls: the adapter's decrypt + verify of an encrypted ID token
    (the row checks it decrypts and verifies) against the raw operations, with its target."""
    from bench.jwe import jwe_rows

    rows = jwe_rows(10)
    assert {row.name: row.target for row in rows} == {
        "encrypted ID token RSA-OAEP-256/A256GCM: decrypt + verify vs raw cryptography ops": 1.3
    }
    assert all(math.isfinite(row.value) and row.baseline > 0 for row in rows)


def test_the_es256_baseline_is_a_jws_signature() -> None:
    """The ES256 baseline's r || s is what the adapter's signer makes: a valid JWS signature."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from adapter.jose import verify_signature
    from bench.dpop import raw_es256

    key = ec.generate_private_key(ec.SECP256R1())
    sign = raw_es256(key)
    for data in (b"a", b"b" * 300, b"c" * 1000):
        assert verify_signature("ES256", key.public_key(), data, sign(data))


def test_a_negative_or_noisy_value_reads_noise_never_yes() -> None:
    rows = [
        Row("negative added cost", -1e-6, 10e-6, 1 / 3),
        Row("within its noise", 1e-6, 10e-6, 1 / 3, noise=2e-6),
        Row("baseline within its noise", 3e-6, 1e-6, 2.0, baseline_noise=5e-6),
        Row("clear", 2e-6, 10e-6, 1 / 3, noise=0.5e-6),
    ]
    lines = table(rows).splitlines()[1:]
    assert [line.split()[-1] for line in lines] == ["noise", "noise", "noise", "yes"]
    assert [row.meets_target for row in rows] == [None, None, None, True]


def test_added_is_the_median_difference_with_its_spread() -> None:
    steady = added([12.0, 12.1, 11.9, 12.0, 12.0], [10.0, 10.0, 10.0, 10.0, 10.0])
    assert steady.value == 2.0
    assert steady.noise < steady.value
    erratic = added([11.0, 9.0, 13.0, 8.0, 12.0], [10.0, 10.0, 10.0, 10.0, 10.0])
    assert erratic.value == 1.0
    assert erratic.noise >= erratic.value, "rounds that disagree on the sign are noise"
