"""DPoP at the resource server (RFC 9449 §7, docs/fapi.md): the adapter in bearer mode in front
of an API, with DPoP-bound access tokens from the real test identity server (a
client_credentials grant with a DPoP proof: the token carries ``cnf.jkt``). Accepted with a
fresh proof of the bound key; refused: the token as ``Bearer``, a replayed proof (also on a
second process sharing Redis), a proof for another URL or method, without ``ath``, by another
key, 10 minutes old, with ``alg: none`` or HS256; ``dpop = "required"`` refuses bearer tokens."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import OIDCWSGIMiddleware
from adapter.protocol.dpop import DPoPKey, access_token_hash, make_proof
from tests.idp_server import IdentityServer
from tests.redis_server import RedisServer
from tests.web_client import client_api, web_client

SECRET = "dpop-client-secret-" + "d" * 40
API = "urn:oidc-adapter:test-api"
APP = "http://127.0.0.1:8765"
URL = f"{APP}/api/reports"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    with IdentityServer([web_client(SECRET)], tmp_dir=tmp_path_factory.mktemp("dpop")) as server:
        yield server


def bound_token(idp: IdentityServer, key: DPoPKey) -> str:
    """A client_credentials access token bound to ``key`` (a DPoP proof at the token endpoint)."""
    endpoint = idp.metadata["token_endpoint"]
    answer = httpx.post(
        endpoint,
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", SECRET),
        headers={"DPoP": make_proof(key, "POST", endpoint)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    return str(answer.json()["access_token"])


def unverified(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def middleware(directory: Path, idp: IdentityServer, extra: str = "") -> OIDCWSGIMiddleware:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nbearer-only = true\n'
        f'token-audiences = ["{API}"]\n{extra}'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return OIDCWSGIMiddleware(client_api, path)


def call(
    app: OIDCWSGIMiddleware, headers: dict[str, str], method: str = "GET", base_url: str = APP
) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base_url) as client:
        return client.request(method, "/api/reports", headers=headers)


def dpop(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def assert_refused(answer: httpx.Response, error: str) -> None:
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("DPoP "), challenge
    assert f'error="{error}"' in challenge
    assert 'algs="' in challenge


@pytest.fixture(scope="module")
def bound(idp: IdentityServer) -> tuple[DPoPKey, str]:
    key = DPoPKey.generate("ES256")
    token = bound_token(idp, key)
    assert unverified(token)["cnf"] == {"jkt": key.jkt}  # the server bound it to our key
    return key, token


def test_a_bound_token_with_a_fresh_proof_is_accepted(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    key, token = bound
    app = middleware(tmp_path, idp)
    for _ in range(2):  # each request its own proof
        answer = call(app, dpop(token, make_proof(key, "GET", URL, access_token=token)))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"client": "web"}
    app.close()


def test_a_bound_token_as_bearer_is_refused(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    _, token = bound
    app = middleware(tmp_path, idp)
    answer = call(app, {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    app.close()


def forged(key: DPoPKey, header: dict[str, Any], claims: dict[str, Any], sign: bool) -> str:
    """A proof with a chosen header (alg none, HS256), signed with junk or not at all."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    head = {"typ": "dpop+jwt", "jwk": key.public_jwk, **header}
    return f"{part(head)}.{part(claims)}." + ("c2lnbmF0dXJl" if sign else "")


def test_proofs_that_prove_nothing_are_refused(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    key, token = bound
    app = middleware(tmp_path, idp)
    other = DPoPKey.generate("ES256")
    now = time.time()
    claims = {"jti": "x1", "htm": "GET", "htu": URL, "iat": int(now),
              "ath": access_token_hash(token)}  # fmt: skip
    cases = {
        "another URL": make_proof(key, "GET", f"{APP}/api/other", access_token=token),
        "another method": make_proof(key, "POST", URL, access_token=token),
        "no ath": make_proof(key, "GET", URL),
        "10 minutes old": make_proof(key, "GET", URL, access_token=token, now=now - 600),
        "alg none": forged(key, {"alg": "none"}, claims, sign=False),
        "HS256": forged(key, {"alg": "HS256"}, claims, sign=True),
    }
    for case, proof in cases.items():
        answer = call(app, dpop(token, proof))
        assert answer.status_code == 401, case
        assert_refused(answer, "invalid_dpop_proof")
    # A valid proof by a key the token is not bound to: the token is refused.
    stranger = call(app, dpop(token, make_proof(other, "GET", URL, access_token=token)))
    assert_refused(stranger, "invalid_token")
    # A POST needs a POST's proof: the same proof kind passes for the method it names.
    posted = call(app, dpop(token, make_proof(key, "POST", URL, access_token=token)), "POST")
    assert posted.status_code == 200, posted.text
    app.close()


def test_a_replayed_proof_is_refused_here_and_on_another_process_sharing_redis(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    key, token = bound
    alone = middleware(tmp_path, idp)
    proof = make_proof(key, "GET", URL, access_token=token)
    assert call(alone, dpop(token, proof)).status_code == 200
    assert_refused(call(alone, dpop(token, proof)), "invalid_dpop_proof")
    alone.close()
    with RedisServer(tmp_path / "redis") as redis:
        shared = f'redis-url = "{redis.url}"\nsession-store = "redis"\n'
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        here = middleware(tmp_path / "a", idp, shared)
        middleware(tmp_path / "b", idp, shared).close()  # its configuration, for the other process
        with other_process(tmp_path / "b" / "adapter.toml") as there:
            url = f"{there}/api/reports"  # both answer for that URL: the proofs name it
            proof = make_proof(key, "GET", url, access_token=token)
            assert call(here, dpop(token, proof), base_url=there).status_code == 200
            replayed = httpx.get(url, headers=dpop(token, proof))
            assert_refused(replayed, "invalid_dpop_proof")  # the other process saw it in Redis
            fresh = make_proof(key, "GET", url, access_token=token)
            assert httpx.get(url, headers=dpop(token, fresh)).status_code == 200
            assert_refused(call(here, dpop(token, fresh), base_url=there), "invalid_dpop_proof")
        here.close()


SERVE = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server
from adapter import OIDCWSGIMiddleware
from tests.web_client import client_api

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

app = OIDCWSGIMiddleware(client_api, sys.argv[1])
server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def other_process(config: Path) -> Iterator[str]:
    """The adapter with ``config`` in front of ``client_api`` in another Python process (its
    own proof memory), on a port of its choosing: its base URL once it listens."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(config)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), "the other process did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_dpop_required_refuses_bearer_tokens_with_a_dpop_challenge(
    idp: IdentityServer, tmp_path: Path
) -> None:
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", SECRET),
    )
    plain = answer.json()["access_token"]
    required = middleware(tmp_path, idp, 'dpop = "required"\n')
    refused = call(required, {"Authorization": f"Bearer {plain}"})
    assert_refused(refused, "invalid_token")
    nothing = call(required, {})
    assert nothing.status_code == 401
    assert nothing.headers["www-authenticate"].startswith("DPoP algs=")
    required.close()
    allowed = middleware(tmp_path, idp)
    assert call(allowed, {"Authorization": f"Bearer {plain}"}).status_code == 200
    allowed.close()


def test_an_access_rule_asks_for_dpop_on_its_paths_only(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    """``[[access]] dpop = true``: a bearer token is refused there with a DPoP challenge (and
    served elsewhere); a DPoP token with its proof passes."""
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", SECRET),
    )
    plain = answer.json()["access_token"]
    rule = '[[access]]\npath = "/api/*"\ndpop = true\n'
    app = middleware(tmp_path, idp, "")
    app.close()
    path = tmp_path / "adapter.toml"
    path.write_text(path.read_text() + rule)
    app = OIDCWSGIMiddleware(client_api, path)
    assert_refused(call(app, {"Authorization": f"Bearer {plain}"}), "invalid_token")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP) as client:
        elsewhere = client.get("/reports", headers={"Authorization": f"Bearer {plain}"})
    assert elsewhere.status_code == 200, elsewhere.text
    key, token = bound
    proven = call(app, dpop(token, make_proof(key, "GET", URL, access_token=token)))
    assert proven.status_code == 200, proven.text
    app.close()


def test_a_proof_cannot_be_moved_by_the_host_header(
    idp: IdentityServer, bound: tuple[DPoPKey, str], tmp_path: Path
) -> None:
    """A proof for https://api.example/admin/delete sent to /api/reports with
    ``Host: api.example/admin/delete?`` (the host that makes the URLs equal): refused."""
    key, token = bound
    app = middleware(tmp_path, idp)
    proof = make_proof(key, "GET", "http://127.0.0.1:8765/admin/delete", access_token=token)
    answer = call(app, {**dpop(token, proof), "Host": "127.0.0.1:8765/admin/delete?"})
    assert_refused(answer, "invalid_dpop_proof")
    app.close()
