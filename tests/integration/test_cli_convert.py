"""Keycloak users can rotate: ``config convert``, then ``keys rotate`` (issue 13, item 1).

The CLI runs as a real process. The last tests run the whole path against the test identity
server: a keycloak.json as Keycloak exports it (secrets as ``${env.…}``) is converted, the
result loads to the same issuer and kid, a rotation is staged with ``keys rotate --write``, the
app (the real WSGI middleware on a socket) publishes the next key, the server fetches the key
set while the old key still signs, and after the switch the server issues a token for an
assertion signed by the new key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from adapter import OIDCWSGIMiddleware, load_config, load_key_ring
from tests.app_server import hello
from tests.conftest import CliRunner
from tests.idp_server import IdentityServer

STORE_PASSWORD = "St0re-Pa55-convert"
CLIENT_SECRET = "literal-client-secret-0f9c1b7e"
ENV = {"STORE_PW": STORE_PASSWORD}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def clean(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """No traceback and no secret anywhere in what the command printed."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert STORE_PASSWORD not in output
    assert CLIENT_SECRET not in output
    return result


def generate(cli: CliRunner, alias: str, out: str) -> str:
    made = clean(cli("keys", "generate", "--alias", alias, "--out", out,
                     "--store-password-env", "STORE_PW", env=ENV))  # fmt: skip
    assert made.returncode == 0, made.stderr
    return re.search(r"^kid:\s+(\S+)$", made.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)
    return path


def keycloak_jwt(base: str, realm: str, client_id: str) -> dict[str, Any]:
    """A keycloak.json for "Signed JWT" as the admin console exports it, passwords as
    ``${env.…}`` references (how Keycloak's adapters keep them out of the file)."""
    return {
        "realm": realm,
        "auth-server-url": base,
        "ssl-required": "external",
        "resource": client_id,
        "credentials": {
            "jwt": {
                "client-keystore-file": "app.p12",
                "client-keystore-type": "PKCS12",
                "client-keystore-password": "${env.STORE_PW}",
                "client-key-password": "${env.STORE_PW}",
                "client-key-alias": "app",
                "token-timeout": 10,
            }
        },
        "confidential-port": 0,
    }


def header(assertion: str) -> dict[str, Any]:
    part = assertion.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


# --- convert, offline --------------------------------------------------------------------------


def test_a_literal_secret_becomes_a_variable_to_set(tmp_path: Path, cli: CliRunner) -> None:
    write_json(
        tmp_path / "keycloak.json",
        {
            "realm": "demo",
            "auth-server-url": "https://sso.example.com/",
            "resource": "app",
            "credentials": {"secret-jwt": {"secret": CLIENT_SECRET, "algorithm": "HS512"}},
            "enable-cors": True,
        },
    )

    result = clean(cli("config", "convert", "--config", "keycloak.json"))

    assert result.returncode == 0, result.stderr
    body = result.stdout.split("\n\n", 1)[1]
    assert body == (
        'issuer = "https://sso.example.com/realms/demo"\n'
        'client-id = "app"\n'
        "\n[credentials]\n"
        'method = "client_secret_jwt"\n'
        'secret-env = "OIDC_CLIENT_SECRET"\n'
        'algorithm = "HS512"\n'
        "assertion-lifetime = 10\n"
    )
    assert result.stderr.splitlines() == [
        "oidc-adapter: environment: set OIDC_CLIENT_SECRET to the credentials.secret-jwt.secret "
        "written in keycloak.json (the new file names the variable, not the value)",
        "oidc-adapter: left out: enable-cors (Java adapters only)",
    ]
    converted = tmp_path / "converted.toml"
    converted.write_text(result.stdout)
    check = clean(cli("config", "check", "converted.toml", env={"OIDC_CLIENT_SECRET": "x" * 64}))
    assert check.returncode == 0, check.stderr
    assert "method:        client_secret_jwt (assertion lifetime 10 s" in check.stdout


def test_env_references_stay_references(tmp_path: Path, cli: CliRunner) -> None:
    generate(cli, "app", "app.p12")
    write_json(
        tmp_path / "keycloak.json",
        keycloak_jwt("https://${env.SSO_HOST}/", "demo", "app"),
    )
    env = {**ENV, "SSO_HOST": "sso.example.com"}

    result = clean(
        cli("config", "convert", "--config", "keycloak.json", "--out", "a.toml", env=env)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrote a.toml: issuer https://sso.example.com/realms/demo, client app, private_key_jwt "
        "(assertion lifetime 10 s, audience issuer)",
        "environment: SSO_HOST (as for keycloak.json)",
        "environment: STORE_PW (as for keycloak.json)",
        "left out: confidential-port (Java adapters only: https is decided by ssl-required, "
        "redirect-uri and the request)",
        "next: oidc-adapter config check a.toml",
        "then, to stage a new key (a dry run until --write): oidc-adapter keys rotate --config "
        f"a.toml --alias app-{datetime.now(UTC):%Y-%m-%d} --store-password-env STORE_PW",
    ]
    assert "confidential-port" not in (tmp_path / "a.toml").read_text()
    text = (tmp_path / "a.toml").read_text()
    assert 'auth-server-url = "https://${env.SSO_HOST}/"' in text
    assert 'password-env = "STORE_PW"' in text
    assert 'key-password-env = "STORE_PW"' in text
    assert (tmp_path / "a.toml").stat().st_mode & 0o777 == 0o600
    again = clean(cli("config", "convert", "--config", "keycloak.json", "--out", "a.toml", env=env))
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        "oidc-adapter: error: a.toml: already exists; choose another --out or remove it"
    ]


def test_convert_into_another_directory_keeps_the_keystore_found(
    tmp_path: Path, cli: CliRunner
) -> None:
    generate(cli, "app", "app.p12")
    write_json(tmp_path / "keycloak.json", keycloak_jwt("https://sso.example.com", "r", "app"))
    (tmp_path / "native").mkdir()

    result = clean(cli("config", "convert", "--config", "keycloak.json", "--out",
                       "native/adapter.toml", env=ENV))  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert 'keystore = "../app.p12"' in (tmp_path / "native" / "adapter.toml").read_text()
    shown = clean(cli("keys", "show", "--config", "native/adapter.toml", "--json", env=ENV))
    assert shown.returncode == 0, shown.stderr


def test_a_native_file_is_not_converted(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "adapter.toml").write_text(
        'issuer = "https://sso.example.com/r"\nclient-id = "a"\n[credentials]\n'
        'method = "client_secret_basic"\nsecret-env = "S"\n'
    )

    result = clean(cli("config", "convert", "--config", "adapter.toml", env={"S": "s"}))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "oidc-adapter: error: adapter.toml: is in the native format already; nothing to convert"
    ]


# --- keys rotate: the way there, and a rotation already staged ---------------------------------


def test_keys_rotate_on_keycloak_json_explains_the_conversion(
    tmp_path: Path, cli: CliRunner
) -> None:
    generate(cli, "app", "app.p12")
    write_json(tmp_path / "keycloak.json", keycloak_jwt("https://sso.example.com", "r", "app"))

    result = clean(cli("keys", "rotate", "--config", "keycloak.json", "--alias", "next",
                       "--store-password-env", "STORE_PW", env=ENV))  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "oidc-adapter: error: --config: keycloak.json is a keycloak.json, which holds a single "
        "key: no rotation can be staged in it; convert it first: oidc-adapter config convert "
        "--config keycloak.json --out adapter.toml, then rotate with that file"
    ]
    assert not (tmp_path / "next.p12").exists()


def test_a_second_rotation_needs_force(tmp_path: Path, cli: CliRunner) -> None:
    generate(cli, "app", "app.p12")
    write_json(tmp_path / "keycloak.json", keycloak_jwt("https://sso.example.com", "r", "app"))
    converted = clean(cli("config", "convert", "--config", "keycloak.json", "--out",
                          "adapter.toml", env=ENV))  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    rotate = ("keys", "rotate", "--config", "adapter.toml", "--store-password-env", "STORE_PW",
              "--write")  # fmt: skip

    first = clean(cli(*rotate, "--alias", "next-1", env=ENV))
    assert first.returncode == 0, first.stderr
    when = re.search(r'activate-at = "(\S+)"', first.stdout).group(1)  # type: ignore[union-attr]

    second = clean(cli(*rotate, "--alias", "next-2", env=ENV))

    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"oidc-adapter: error: --force: credentials.keys[1] (next-1.p12) is already staged as "
        f"next (takes over at {when}); let that rotation finish first, or pass --force to "
        "stage another beside it"
    ]
    assert not (tmp_path / "next-2.p12").exists(), "refused before any key was made"

    forced = clean(cli(*rotate, "--alias", "next-2", "--force", "--activate-in", "7200", env=ENV))

    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.splitlines() == [
        f"oidc-adapter: warning: credentials.keys[1] (next-1.p12) is already staged as next "
        f"(takes over at {when}); staging another beside it (--force)"
    ]


# --- the whole path against the identity server ------------------------------------------------


@dataclass
class Setup:
    idp: IdentityServer
    app_url: str
    app_port: int
    directory: Path


def free_port() -> int:
    probe = make_server("127.0.0.1", 0, hello)
    port: int = probe.server_port
    probe.server_close()
    return port


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One identity server: the converted client publishes its keys at the app's /k_jwks (the
    server has never fetched them), a secret client checks that token needs no web setting."""
    directory = tmp_path_factory.mktemp("convert")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients = [
        {
            "client_id": "converted",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": f"{url}/k_jwks",
        },
        {
            "client_id": "web-free",
            "client_secret": CLIENT_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
        },
    ]
    no_redirects = {
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
    }
    with IdentityServer(
        [{**client, **no_redirects} for client in clients],
        tmp_dir=directory,
        issuer="http://127.0.0.1:{port}/realms/test",
    ) as idp:
        yield Setup(idp, url, port, directory)


@pytest.fixture
def served(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[OIDCWSGIMiddleware]]:
    """Serves, on the app's port, whatever middleware the test puts in the list."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    holder: list[OIDCWSGIMiddleware] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return holder[0](environ, start_response)

    server = make_server("127.0.0.1", setup.app_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        server.shutdown()
        for middleware in holder:
            middleware.close()


def wait_for(condition: Any, timeout: float = 15) -> None:
    """Poll ``condition`` until true (the condition is the synchronisation point)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_converted_keycloak_json_rotates_and_the_server_accepts_the_new_key(
    setup: Setup, served: list[OIDCWSGIMiddleware], cli: CliRunner, tmp_path: Path
) -> None:
    idp = setup.idp
    old_kid = generate(cli, "app", "app.p12")
    base, _, realm = idp.issuer.rpartition("/realms/")
    keycloak = write_json(tmp_path / "keycloak.json", keycloak_jwt(base + "/", realm, "converted"))

    # 1. Convert: the same issuer and kid, no secret in the new file.
    converted = clean(cli("config", "convert", "--config", "keycloak.json", "--out",
                          "adapter.toml", env=ENV))  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    assert "environment: STORE_PW (as for keycloak.json)" in converted.stdout.splitlines()
    toml = tmp_path / "adapter.toml"
    assert STORE_PASSWORD not in toml.read_text()
    original, native = load_config(keycloak), load_config(toml)
    assert native.issuer == original.issuer == idp.issuer
    assert native.client_id == "converted"
    assert load_key_ring(native).active().kid == load_key_ring(original).active().kid == old_kid

    # 2. The app serves the converted file; stage the next key a few seconds ahead.
    served.append(OIDCWSGIMiddleware(hello, toml))
    rotated = clean(cli("keys", "rotate", "--config", "adapter.toml", "--alias", "app-next",
                        "--store-password-env", "STORE_PW", "--activate-in", "3", "--write",
                        env=ENV))  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    new_kid = re.search(r"kid (\S+) takes over", rotated.stdout).group(1)  # type: ignore[union-attr]
    assert served[0].reload(), "the written file loads"
    published = httpx.get(f"{setup.app_url}/k_jwks").json()
    assert [key["kid"] for key in published["keys"]] == [old_kid, new_kid]

    # 3. A token while the old key signs: the server fetches the key set, with the next key.
    before = clean(cli("token", "--config", "adapter.toml", env=ENV))
    assert before.returncode == 0, before.stderr + idp.logs()[-2000:]
    assert f'"url":"{setup.app_url}/k_jwks"' in idp.logs(), "the server fetched /k_jwks"

    # 4. After the switch (activate-at, no edit), the new key signs and the server accepts it.
    ring = load_key_ring(load_config(toml, web=False))
    wait_for(lambda: ring.active().kid == new_kid)
    assertion = clean(cli("assertion", "--config", "adapter.toml", env=ENV))
    assert assertion.returncode == 0, assertion.stderr
    signed = assertion.stdout.strip()
    assert header(signed)["kid"] == new_kid
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_id": "converted",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )
    assert answer.status_code == 200, answer.text + idp.logs()[-2000:]
    assert answer.json()["access_token"]
    after = clean(cli("token", "--config", "adapter.toml", env=ENV))
    assert after.returncode == 0, after.stderr
    assert datetime.now(UTC) >= ring.keys[1].activate_at  # type: ignore[operator]


def test_token_needs_no_web_setting(setup: Setup, cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "adapter.toml").write_text(
        f'issuer = "{setup.idp.issuer}"\nclient-id = "web-free"\n'
        'session-secret-env = "NO_SUCH_SESSION_SECRET"\npublic-paths = "not a list"\n'
        '[credentials]\nmethod = "client_secret_basic"\nsecret-env = "WEB_FREE_SECRET"\n'
    )
    env = {"WEB_FREE_SECRET": CLIENT_SECRET}
    assert "NO_SUCH_SESSION_SECRET" not in os.environ

    result = clean(cli("token", "--config", "adapter.toml", env=env))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["token_type"].lower() == "bearer"


# Keycloak's documented policy-enforcer block, with a pattern, a DISABLED path and claims.
POLICY_ENFORCER: dict[str, Any] = {
    "enforcement-mode": "ENFORCING",
    "on-deny-redirect-to": None,  # as some exports write an unset field: left out of TOML
    "paths": [
        {
            "path": "/users/*",
            "methods": [
                {"method": "GET", "scopes": ["urn:app.com:scopes:view"]},
                {"method": "POST", "scopes": ["urn:app.com:scopes:create"]},
            ],
        },
        {
            "name": "Bank Account",
            "path": "/account/{id}",
            "methods": [
                {"method": "DELETE", "scopes": ["delete"], "scopes-enforcement-mode": "ANY"}
            ],
            "claim-information-point": {"claims": {"a": "{request.parameter['a']}"}},
        },
        {"path": "/public/*", "enforcement-mode": "DISABLED"},
    ],
    "path-cache": {"max-entries": 10, "lifespan": 1000},
    "lazy-load-paths": True,
    "user-managed-access": {},
}


def test_the_policy_enforcer_block_is_carried_into_toml(tmp_path: Path, cli: CliRunner) -> None:
    """The converted file has [policy-enforcer] and loads to the same enforcer."""
    source = write_json(
        tmp_path / "keycloak.json",
        {
            "realm": "demo",
            "auth-server-url": "https://sso.example.com/",
            "resource": "app",
            "public-client": True,
            "policy-enforcer": POLICY_ENFORCER,
        },
    )

    result = clean(cli("config", "convert", "--config", "keycloak.json", "--out", "a.toml"))

    assert result.returncode == 0, result.stderr
    text = (tmp_path / "a.toml").read_text()
    assert "\n[policy-enforcer]\n" in text
    assert "\n[[policy-enforcer.paths]]\n" in text
    assert "left out: policy-enforcer" not in result.stderr
    converted = load_config(tmp_path / "a.toml").policy_enforcer
    assert converted is not None
    assert converted == load_config(source).policy_enforcer
    assert [path.path for path in converted.paths] == ["/users/*", "/account/{id}", "/public/*"]
    check = clean(cli("config", "check", "a.toml"))
    assert check.returncode == 0, check.stderr
    assert "enforcer:      ENFORCING, 3 path(s), 1 DISABLED" in check.stdout
