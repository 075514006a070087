"""A compromised key (issue 14): ``keys revoke`` through the real CLI, against the real
identity server fetching the app's ``/k_jwks`` from a real socket.

oidc-provider, like Keycloak, keeps the client keys it fetched and accepts any assertion one of
them verifies, so a stolen key stays good at the server after the app stops publishing it. The
test server's stand-in for Keycloak's ``clear-keys-cache`` (tests/idp/server.mjs,
``admin_clients``) empties that cache, which is how these tests make the server refetch: the
first test shows the stolen key accepted after the revocation and refused once the cache is
cleared. Each test has its own server, so no cache carries over.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapter import OIDCClient, OIDCWSGIMiddleware
from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.keys.keyring import default_kid
from tests.app_server import LateApp, hello, serve
from tests.conftest import CliRunner
from tests.idp_server import IdentityServer
from tests.web_client import jwks_uri_client

PASSWORD = "revoke-store-pw"
CLIENT = "revoke-app"
PLAIN = "revoke-plain"  # a client whose service account lacks "manage-realm"


@dataclass
class Key:
    name: str
    private: rsa.RSAPrivateKey
    kid: str


def make_key(directory: Path, name: str) -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = self_signed_certificate(private, common_name(name), 5, "RS256")
    write_keystore(directory / f"{name}.p12", "pkcs12", name, private, certificate, PASSWORD)
    return Key(name, private, default_kid(private.public_key()))


def key_table(key: Key, **schedule: str) -> str:
    lines = ["[[credentials.keys]]", f'keystore = "{key.name}.p12"', 'password-env = "STORE_PW"']
    lines += [f'{name.replace("_", "-")} = "{value}"' for name, value in schedule.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, issuer: str, client_id: str, tables: str, revoked: str = "") -> None:
    path.write_text(
        f'issuer = "{issuer}"\nclient-id = "{client_id}"\npublic-paths = ["/"]\n'
        'session-secret = "revoke-session-secret-0123456789abcdef"\n\n'
        f'[credentials]\nmethod = "private_key_jwt"\n{revoked}\n{tables}'
    )
    path.chmod(0o600)


@dataclass
class World:
    directory: Path
    idp: IdentityServer
    url: str  # the app, serving /k_jwks
    config: Path
    middleware: OIDCWSGIMiddleware
    a: Key
    b: Key

    def published(self) -> set[str]:
        return {k["kid"] for k in httpx.get(f"{self.url}/k_jwks").json()["keys"]}

    def assertion_status(self, key: Key, client_id: str = CLIENT) -> int:
        """A token request authenticated by an assertion the test signs itself with ``key``
        (a fresh jti every time), as an attacker holding the stolen key would."""
        response = httpx.post(
            self.idp.metadata["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": sign(key, client_id, self.idp.issuer),
            },
        )
        return response.status_code

    def admin_calls(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in self.idp.logs().splitlines()
            if '"admin.clear-keys-cache"' in line
        ]


def sign(key: Key, client_id: str, audience: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    claims = {
        "iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_urlsafe(24),
        "iat": now, "exp": now + 60,
    }  # fmt: skip
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = key.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Key A active, key B staged as next; the app serves /k_jwks on a real socket, taken
    before the identity server starts (tests/app_server.py's LateApp)."""
    monkeypatch.setenv("STORE_PW", PASSWORD)
    a, b = make_key(tmp_path, "key-a"), make_key(tmp_path, "key-b")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = LateApp()
    with serve("wsgi", late) as url:
        clients = [jwks_uri_client(client_id, f"{url}/k_jwks") for client_id in (CLIENT, PLAIN)]
        realm = "http://127.0.0.1:{port}/realms/test"
        with IdentityServer(clients, tmp_dir=tmp_path, issuer=realm, admin_clients=[CLIENT]) as idp:
            config = tmp_path / "adapter.toml"
            tables = key_table(a, state="active") + key_table(b, activate_at=later)
            write_config(config, idp.issuer, CLIENT, tables)
            late.app = middleware = OIDCWSGIMiddleware(hello, config)
            try:
                yield World(tmp_path, idp, url, config, middleware, a, b)
            finally:
                middleware.close()


def signing_kid(client: OIDCClient) -> str:
    header = client.client_assertion().split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def env() -> dict[str, str]:
    return {"STORE_PW": PASSWORD}


def test_a_stolen_key_is_refused_once_revoked_and_forgotten(world: World, cli: CliRunner) -> None:
    world.middleware.client.client_credentials()  # the server fetches A and B, and keeps them
    assert world.published() == {world.a.kid, world.b.kid}
    assert world.assertion_status(world.a) == 200, "the stolen key works before the revocation"

    revoked = cli("keys", "revoke", "--config", str(world.config), f"--kid={world.a.kid}",
                  "--write", env=env())  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoke kid {world.a.kid}" in revoked.stdout
    assert f"kid {world.b.kid} (credentials.keys[1]" in revoked.stdout
    assert "becomes the active key now" in revoked.stdout
    assert "Clear keys cache" in revoked.stdout  # what to do at the server
    assert PASSWORD not in revoked.stdout + revoked.stderr

    assert world.middleware.reload(), world.middleware.status
    assert world.published() == {world.b.kid}, "A leaves /k_jwks at the reload"
    assert signing_kid(world.middleware.client) == world.b.kid
    # The danger this issue is about: the server still holds A, and accepts it.
    assert world.assertion_status(world.a) == 200

    jwks_url = f"{world.url}/k_jwks"
    cleared = cli("keys", "revoke", "--config", str(world.config), f"--kid={world.a.kid}",
                  "--clear-server-cache", "--jwks-url", jwks_url, env=env())  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    assert "already revoked" in cleared.stdout
    assert "dropped its cached client keys" in cleared.stdout
    calls = world.admin_calls()
    assert [(c["client_id"], c["status"]) for c in calls] == [(CLIENT, 204)], calls

    # A token request with B makes the server fetch the JWKS again (B only) ...
    world.middleware.client.client_credentials()
    assert world.idp.wait_for_log(f"{world.url}/k_jwks")
    # ... and the stolen key is refused from then on; the previous-key retry never uses it.
    assert world.assertion_status(world.a) == 401
    state, _ = world.middleware.shell.core()
    assert state.fallback_key(grace=3600) is None
    config = world.config.read_text()
    assert f'revoked-kids = ["{world.a.kid}"]' in config
    assert 'keystore = "key-a.p12"' not in config


def test_revoke_and_clear_in_one_command(world: World, cli: CliRunner) -> None:
    world.middleware.client.client_credentials()
    reloader = world.middleware.shell.reloader
    assert reloader is not None
    thread = reloader.watch_in_thread(0.05)  # the app reloads by itself, as in production
    try:
        done = cli("keys", "revoke", "--config", str(world.config), f"--kid={world.a.kid}",
                   "--write", "--clear-server-cache", "--jwks-url", f"{world.url}/k_jwks",
                   env=env())  # fmt: skip
    finally:
        reloader.stop()
        thread.join(timeout=5)
    assert done.returncode == 0, done.stderr
    assert world.published() == {world.b.kid}
    assert [(c["client_id"], c["status"]) for c in world.admin_calls()] == [(CLIENT, 204)]
    world.middleware.client.client_credentials()
    assert world.assertion_status(world.a) == 401


def test_the_admin_call_is_authenticated_with_a_key_left_after_the_revocation(
    world: World, cli: CliRunner
) -> None:
    """revoke --write --clear-server-cache asks for its service-account token with the key that
    signs once the revoked one is gone (B), never with the revoked key (A): the server here
    first fetches the JWKS after the app dropped A, so a token signed with A is refused."""
    reloader = world.middleware.shell.reloader
    assert reloader is not None
    thread = reloader.watch_in_thread(0.05)
    try:
        done = cli("keys", "revoke", "--config", str(world.config), f"--kid={world.a.kid}",
                   "--write", "--clear-server-cache", "--jwks-url", f"{world.url}/k_jwks",
                   env=env())  # fmt: skip
    finally:
        reloader.stop()
        thread.join(timeout=5)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "dropped its cached client keys" in done.stdout
    assert [(c["client_id"], c["status"]) for c in world.admin_calls()] == [(CLIENT, 204)]


def test_a_refused_admin_call_names_the_missing_role(world: World, cli: CliRunner) -> None:
    plain = world.directory / "plain.toml"
    write_config(plain, world.idp.issuer, PLAIN, key_table(world.b, state="active"),
                 revoked=f'revoked-kids = ["{world.a.kid}"]\n')  # fmt: skip
    refused = cli("keys", "revoke", "--config", str(plain), f"--kid={world.a.kid}",
                  "--clear-server-cache", env=env())  # fmt: skip
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith("oidc-adapter: error: the identity server refused")
    assert "403" in lines[-1]
    assert "realm-management" in lines[-1]
    assert "manage-realm" in lines[-1]
    assert [(c["client_id"], c["status"]) for c in world.admin_calls()] == [(PLAIN, 403)]


def test_an_admin_token_from_the_environment_is_used(world: World, cli: CliRunner) -> None:
    plain = world.directory / "plain.toml"
    write_config(plain, world.idp.issuer, PLAIN, key_table(world.b, state="active"),
                 revoked=f'revoked-kids = ["{world.a.kid}"]\n')  # fmt: skip
    admin_token = world.middleware.client.client_credentials().access_token
    done = cli("keys", "revoke", "--config", str(plain), f"--kid={world.a.kid}",
               "--clear-server-cache", "--admin-token-env", "ADMIN_TOKEN",
               env={**env(), "ADMIN_TOKEN": admin_token})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert admin_token not in done.stdout + done.stderr
    assert [(c["client_id"], c["status"]) for c in world.admin_calls()] == [(CLIENT, 204)]


def test_a_revoked_key_named_again_is_refused_at_reload(world: World) -> None:
    before = world.published()
    text = world.config.read_text()
    world.config.write_text(
        text.replace("[credentials]\n", f'[credentials]\nrevoked-kids = ["{world.a.kid}"]\n')
    )
    assert not world.middleware.reload()
    status = world.middleware.status
    assert status is not None
    assert status.last_error is not None
    assert "revoked-kids" in status.last_error
    assert world.a.kid in status.last_error
    assert world.published() == before, "the old state keeps serving"
    world.middleware.client.client_credentials()
