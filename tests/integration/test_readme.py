"""The README's snippets are true (issue 13, item 8): each fenced block is run or checked here.

A snippet that only drifts silently is worse than none, so every block in README.md is claimed
by exactly one test below: the configuration example is loaded by the real CLI with keystores
the CLI made, the "Use it" code runs as written in a directory holding that configuration and
answers requests, the command lines name Makefile targets and pyproject extras that exist, the
library program runs against the test identity server (its login finished through the server's
own forms), and each framework's ``app.py`` runs as written: alice (admin) gets the admins'
route, bob gets 403, an anonymous API client 401. The last test fails when a new block appears
unclaimed.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

import adapter
from tests.conftest import CliRunner
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, authorization_code, web_client

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
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


@dataclass(frozen=True)
class Block:
    language: str
    line: int
    text: str


def blocks() -> list[Block]:
    """Every fenced block of README.md, with the line its fence opens on."""
    found: list[Block] = []
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("```"):
            start, language = index, lines[index][3:].strip()
            index += 1
            body: list[str] = []
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            found.append(Block(language, start + 1, "\n".join(body) + "\n"))
        index += 1
    return found


def only(language: str, marker: str) -> Block:
    matching = [b for b in blocks() if b.language == language and marker in b.text]
    assert len(matching) == 1, f"expected one {language} block containing {marker!r}"
    return matching[0]


CONFIG_BLOCK = ("toml", "[[credentials.keys]]")
USE_IT_BLOCK = ("python", "OIDCWSGIMiddleware(")
QUICK_START_BLOCK = ("sh", "make demo")
INSTALL_BLOCK = ("sh", "pip install")
LIBRARY_BLOCK = ("python", "import adapter\n")
IDIOM_BLOCKS = {
    "starlette": ("python", "# Starlette:"),
    "fastapi": ("python", "# FastAPI:"),
    "flask": ("python", "# Flask:"),
}
BENCH_TABLE_BLOCK = ("", "benchmark ")
CLAIMED = [
    CONFIG_BLOCK,
    USE_IT_BLOCK,
    QUICK_START_BLOCK,
    INSTALL_BLOCK,
    LIBRARY_BLOCK,
    *IDIOM_BLOCKS.values(),
    BENCH_TABLE_BLOCK,
]


@pytest.fixture
def readme_config(tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """README's configuration as adapter.toml, and the keystores it names (made by the CLI)."""
    (tmp_path / "keys").mkdir()
    env = {"KEYSTORE_PASSWORD": PASSWORD}
    for name in ("keys/2026-11.p12", "keys/2026-12.p12"):
        made = cli("keys", "generate", "--alias", "my-app", "--out", name,
                   "--store-password-env", "KEYSTORE_PASSWORD", env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr
    config = tmp_path / "adapter.toml"
    config.write_text(only(*CONFIG_BLOCK).text)
    monkeypatch.setenv("KEYSTORE_PASSWORD", PASSWORD)
    return config


def test_the_configuration_example_loads(readme_config: Path, cli: CliRunner) -> None:
    checked = cli("config", "check", str(readme_config), env={"KEYSTORE_PASSWORD": PASSWORD})
    assert checked.returncode == 0, checked.stderr
    assert "https://sso.example.com/realms/demo" in checked.stdout
    assert "my-app" in checked.stdout
    assert "private_key_jwt" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr


def test_the_use_it_code_runs_as_written(
    readme_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(readme_config.parent)
    script = readme_config.parent / "use_it.py"
    script.write_text(only(*USE_IT_BLOCK).text)
    namespace = runpy.run_path(str(script), run_name="readme_use_it")

    import flask

    from adapter import OIDCMiddleware, OIDCWSGIMiddleware

    assert isinstance(namespace["app"], OIDCMiddleware)
    flask_app = namespace["flask_app"]
    assert isinstance(flask_app, flask.Flask)
    assert isinstance(flask_app.wsgi_app, OIDCWSGIMiddleware)

    # Both apps publish the configured keys without the identity server, and send an anonymous
    # browser to log in instead of running the view.
    wsgi = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://app")
    with wsgi:
        jwks = wsgi.get("/k_jwks")
        assert jwks.status_code == 200
        assert len(jwks.json()["keys"]) == 2
        api = wsgi.get("/", headers={"Accept": "application/json"})
        assert api.status_code == 401
    asgi = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=namespace["app"]), base_url="http://app"
    )

    import asyncio

    async def fetch() -> httpx.Response:
        async with asgi:
            return await asgi.get("/k_jwks")

    assert asyncio.run(fetch()).json() == jwks.json()


def test_the_quick_start_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    commands = [line.split("#")[0].split() for line in only(*QUICK_START_BLOCK).text.splitlines()]
    assert [words[:2] for words in commands] == [["make", "demo"], ["make", "test"]]
    for words in commands:
        assert re.search(rf"^{words[1]}:", makefile, re.MULTILINE), words


def test_the_install_lines_name_real_extras() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    block = only(*INSTALL_BLOCK).text
    for line in block.splitlines():
        words = shlex.split(line.split("#")[0])
        assert words[:3] == ["pip", "install", "-e"], line
        named = re.findall(r"\[([a-z,]+)\]", words[3])
        assert all(extra in extras for group in named for extra in group.split(",")), line
    mentioned = re.findall(r"\[(\w+)\]", block)
    assert set(mentioned) <= extras, set(mentioned) - extras


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    """The test identity server with the README's two clients: ``my-app`` (private_key_jwt with
    the key of ``key.pem``) for the library program, ``web`` for the framework apps."""
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
    idp: IdentityServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    program = only(*LIBRARY_BLOCK)
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


@pytest.mark.parametrize("framework", list(IDIOM_BLOCKS))
def test_each_framework_app_runs_as_written(
    framework: str, idp: IdentityServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\nscope = "openid profile roles"\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    config.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "app.py"
    script.write_text(only(*IDIOM_BLOCKS[framework]).text)
    app = runpy.run_path(str(script), run_name=f"readme_{framework}")["app"]

    with ExitStack() as stack:
        if framework == "flask":
            transport: httpx.BaseTransport = httpx.WSGITransport(app=app)
        else:
            transport = stack.enter_context(TestClient(app, base_url=APP))._transport
        stack_ = Stack(idp, config, {framework: transport})
        anonymous = stack.enter_context(closing(Browser(stack_, framework).http))
        refused = anonymous.get("/admin", headers={"Accept": "application/json"})
        assert refused.status_code == 401
        for login, status in (("alice", 200), ("bob", 403)):
            browser = Browser(stack_, framework)
            stack.callback(browser.http.close)
            answer = browser.log_in("/admin", login)
            assert answer.status_code == status, answer.text[:300]
            if status == 200:
                assert re.search(r"hello\W+alice", answer.text), answer.text


def test_every_block_is_claimed_by_a_test() -> None:
    unclaimed = [
        f"README.md:{block.line} ({block.language or 'plain'})"
        for block in blocks()
        if not any(
            block.language == language and marker in block.text for language, marker in CLAIMED
        )
    ]
    assert unclaimed == [], "add a test for each of these snippets"
