"""The README's and the documentation's snippets are true (issue 13, item 8; issue 21): each
block that says ``<!-- run: tests/integration/test_readme.py::test_x -->`` is read here by that
test (``tests/docs_blocks.py:run_by``) and run or checked as written.

The configuration examples are loaded by the real CLI with keystores the CLI made; the key
workflow runs in a shell, command by command, with the installed ``oidc-adapter``; the command
lines name Makefile targets and pyproject extras that exist; the library program runs against
the test identity server (its login finished through the server's own forms); and each app
snippet runs as written next to a configuration for the test identity server: an anonymous API
client gets 401, alice signs in and is greeted, and where a route demands the admin role, bob
gets 403. ``tests/unit/test_docs_code.py`` fails when a block answers to no test.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

import adapter
from tests.conftest import CliRunner
from tests.docs_blocks import Block, one_run_by, run_by
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, authorization_code, web_client

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "readme-keystore-Pa55"
SECRET = "readme-client-secret-" + "r" * 40
SESSION_SECRET = "readme-session-secret-" + "s" * 24
API = "urn:oidc-adapter:test-api"  # the test identity server's default resource
LIBRARY_REDIRECT = "https://app.example.com/callback"
LIBRARY_KEY = ec.generate_private_key(ec.SECP256R1())
KID = "readme-key"
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}
ENVIRONMENT = {"KEYSTORE_PASSWORD": PASSWORD, "CLIENT_SECRET": SECRET}
VENV_BIN = Path(sys.executable).parent  # the installed oidc-adapter command


def by_document(blocks: list[Block]) -> dict[str, list[Block]]:
    grouped: dict[str, list[Block]] = {}
    for block in blocks:
        grouped.setdefault(block.document, []).append(block)
    return grouped


def issuer_and_client(block: Block) -> tuple[str, str]:
    """What ``config check`` must report for a TOML or keycloak.json example."""
    if block.language == "json":
        document = json.loads(block.text)
        issuer = f"{document['auth-server-url'].rstrip('/')}/realms/{document['realm']}"
        return issuer, document["resource"]
    document = tomllib.loads(block.text)
    return document["issuer"], document["client-id"]


def test_the_configuration_examples_load(
    request: pytest.FixtureRequest, tmp_path: Path, cli: CliRunner
) -> None:
    for number, block in enumerate(run_by(request.node.nodeid)):
        directory = tmp_path / str(number)
        directory.mkdir()
        name = "keycloak.json" if block.language == "json" else "adapter.toml"
        config = directory / name
        config.write_text(block.text)
        config.chmod(0o600)
        native = tomllib.loads(block.text) if block.language == "toml" else {}
        for key in native.get("credentials", {}).get("keys", []):  # made by the CLI, as users do
            store = directory / key["keystore"]
            store.parent.mkdir(parents=True, exist_ok=True)
            alias = key.get("alias", store.stem)
            made = cli("keys", "generate", "--alias", alias, "--out", str(store),
                       "--store-password-env", "KEYSTORE_PASSWORD", env=ENVIRONMENT)  # fmt: skip
            assert made.returncode == 0, made.stderr

        checked = cli("config", "check", str(config), env=ENVIRONMENT)

        assert checked.returncode == 0, f"{block.where}: {checked.stderr}"
        issuer, client_id = issuer_and_client(block)
        assert issuer in checked.stdout, block.where
        assert client_id in checked.stdout, block.where
        assert PASSWORD not in checked.stdout + checked.stderr
        assert SECRET not in checked.stdout + checked.stderr


def test_the_key_workflow_runs_as_written(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per page: its configuration as adapter.toml, then its shell blocks in a real shell with
    the installed ``oidc-adapter``; every key a command made ends up in the key ring."""
    monkeypatch.setenv("KEYSTORE_PASSWORD", PASSWORD)
    command = VENV_BIN / "oidc-adapter"
    assert command.exists(), f"{command}: pip install -e . installs the command"
    environment = {**os.environ, **ENVIRONMENT, "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin:/bin"}
    for document, blocks in by_document(run_by(request.node.nodeid)).items():
        directory = tmp_path / document.replace("/", "_")
        directory.mkdir()
        configs = [b for b in blocks if b.language == "toml"]
        assert len(configs) == 1, f"{document}: one configuration for its commands"
        (directory / "adapter.toml").write_text(configs[0].text)
        (directory / "adapter.toml").chmod(0o600)
        made = []
        for block in (b for b in blocks if b.language == "sh"):
            ran = subprocess.run(
                ["/bin/bash", "-euo", "pipefail", "-c", block.text],
                capture_output=True,
                text=True,
                check=False,
                cwd=directory,
                env=environment,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
            assert ran.returncode == 0, f"{block.where}: {ran.stdout}{ran.stderr}"
            assert PASSWORD not in ran.stdout + ran.stderr
            made += re.findall(r"keys (?:generate|rotate) .*--alias (\S+)", block.text)

        config = adapter.load_config(directory / "adapter.toml", web=False)
        ring = adapter.load_key_ring(config)
        assert len(ring.keys) == len(made), f"{document}: every key it made is configured"
        assert ring.active().kid == ring.keys[0].kid, "a rotation stages the new key as next"


def test_the_install_lines_name_real_extras(request: pytest.FixtureRequest) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for block in run_by(request.node.nodeid):
        for line in filter(str.strip, block.text.splitlines()):
            words = shlex.split(line.split("#")[0])
            assert words[:2] == ["pip", "install"], f"{block.where}: {line}"
            target = words[-1]
            if words[2] == "-e":
                assert target.startswith("."), line  # from a checkout
            else:
                assert target.startswith(pyproject["project"]["name"]), line  # from PyPI
            named = re.findall(r"\[([a-z,]+)\]", target)
            unknown = [e for group in named for e in group.split(",") if e not in extras]
            assert unknown == [], f"{block.where}: {line}"
            mentioned = set(re.findall(r"\[(\w+)\]", line)) - extras
            assert mentioned == set(), f"{block.where}: {line}"


def test_the_make_commands_name_real_targets(request: pytest.FixtureRequest) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for block in run_by(request.node.nodeid):
        for line in filter(str.strip, block.text.splitlines()):
            words = line.split("#")[0].split()
            assert words[0] == "make", f"{block.where}: {line}"
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.MULTILINE), line


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    """The test identity server with two clients: ``my-app`` (private_key_jwt with the key of
    ``key.pem``) for the library program, ``web`` for the app snippets."""
    my_app = {
        "client_id": "my-app",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [{**ECKey.import_key(LIBRARY_KEY.public_key()).as_dict(), "kid": KID}]},
        "grant_types": ["authorization_code", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [LIBRARY_REDIRECT],
    }
    directory = tmp_path_factory.mktemp("readme-idp")
    with IdentityServer([my_app, web_client(SECRET)], tmp_dir=directory, accounts=ACCOUNTS) as s:
        yield s


def test_the_library_program_runs_as_written(
    request: pytest.FixtureRequest,
    idp: IdentityServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "key.pem").write_bytes(
        LIBRARY_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (tmp_path / "key.pem").chmod(0o600)
    (tmp_path / "adapter.toml").write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "my-app"\ntoken-audiences = ["{API}"]\n'
        f'[credentials]\nmethod = "private_key_jwt"\n'
        f'[[credentials.keys]]\nkeystore = "key.pem"\nkid = "{KID}"\n'
    )
    monkeypatch.chdir(tmp_path)
    program = one_run_by(request.node.nodeid)
    script = tmp_path / "library.py"
    script.write_text(program.text)
    namespace = runpy.run_path(str(script), run_name="readme_library")

    ring, oidc = namespace["ring"], namespace["oidc"]
    assert ring.active().kid == KID
    assert json.loads(ring.jwks_bytes)["keys"][0]["kid"] == KID
    assert namespace["claims"]["aud"] == API  # a token for the API, checked by the program
    assert "api:read" in namespace["claims"]["scope"].split()
    # The downstream client sends the service account's token, fetched (and cached) for it.
    flow = namespace["api"].auth.sync_auth_flow(httpx.Request("GET", "https://api.example.com/"))
    sent = next(flow)
    token = sent.headers["Authorization"].removeprefix("Bearer ")
    assert oidc.validate_access_token(token)["client_id"] == "my-app"

    # The browser's part: the login URL leads through the server's forms back to the callback.
    login = namespace["login"]
    with httpx.Client(timeout=10) as browser:
        returned = authorization_code(browser, browser.get(login.url), LIBRARY_REDIRECT)
    assert returned["state"] == login.state
    tokens = namespace["callback"](returned["code"], returned["state"])
    assert oidc.validate_id_token(tokens.id_token, nonce=login.nonce)["sub"] == "alice"
    with pytest.raises(adapter.ValidationError, match="state"):
        namespace["callback"](returned["code"], "forged-state")
    oidc.close()
    namespace["api"].close()


def serve_snippet(
    block: Block, shell: str, idp: IdentityServer, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Stack, ExitStack]:
    """The snippet as ``app.py`` next to an ``adapter.toml`` for the test identity server, run as
    written; WSGI apps (Flask) on httpx's WSGI transport, ASGI apps in Starlette's TestClient."""
    directory.mkdir()
    config = directory / "adapter.toml"
    config.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nscope = "openid profile roles"\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    config.chmod(0o600)
    monkeypatch.chdir(directory)
    script = directory / "app.py"
    script.write_text(block.text)
    app = runpy.run_path(str(script), run_name=f"snippet_{shell}")["app"]
    resources = ExitStack()
    if shell in ("wsgi", "flask"):
        transport: httpx.BaseTransport = httpx.WSGITransport(app=app)
    else:
        transport = resources.enter_context(TestClient(app, base_url=APP))._transport
    return Stack(idp, config, {shell: transport}), resources


def signs_in(stack: Stack, shell: str, path: str, resources: ExitStack) -> dict[str, int]:
    """The status each of alice and bob gets for ``path`` after signing in; an anonymous API
    client's must be 401."""
    anonymous = resources.enter_context(closing(Browser(stack, shell).http))
    assert anonymous.get(path, headers={"Accept": "application/json"}).status_code == 401
    statuses = {}
    for login in ("alice", "bob"):
        browser = Browser(stack, shell)
        resources.callback(browser.http.close)
        answer = browser.log_in(path, login)
        statuses[login] = answer.status_code
        if answer.status_code == 200:
            assert re.search(rf"(?i)hello\W+{login}", answer.text), answer.text[:300]
    return statuses


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_the_smallest_apps_run_as_written(
    request: pytest.FixtureRequest,
    shell: str,
    idp: IdentityServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plain middleware in front of a one-page app: whoever signs in is greeted."""
    for number, block in enumerate(run_by(request.node.nodeid)):
        stack, resources = serve_snippet(block, shell, idp, tmp_path / str(number), monkeypatch)
        with resources:
            assert signs_in(stack, shell, "/", resources) == {"alice": 200, "bob": 200}


@pytest.mark.parametrize("framework", ["starlette", "fastapi", "flask"])
def test_each_framework_app_runs_as_written(
    request: pytest.FixtureRequest,
    framework: str,
    idp: IdentityServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each framework's idiom for a route that demands the admin role: alice (admin) gets in,
    bob gets 403."""
    for number, block in enumerate(run_by(request.node.nodeid)):
        stack, resources = serve_snippet(block, framework, idp, tmp_path / str(number), monkeypatch)
        with resources:
            assert signs_in(stack, framework, "/admin", resources) == {"alice": 200, "bob": 403}
