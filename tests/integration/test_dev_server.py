"""``oidc-adapter dev-server`` (issue 21, item 6): a local OpenID provider built on the test
issuer, for trying an app without Keycloak or Node.js.

Started as a process (``python -m adapter.cli dev-server --config C``) with PATH holding only the
venv's ``bin`` (so no ``node``), it serves a keycloak.json's realm on loopback, and the README's
Flask snippet, run as written next to that configuration, signs alice in against it: with a
client secret (the app a process of its own, on the same restricted PATH) and with
``private_key_jwt`` (the app in this process behind a real server, so that the dev server fetches
its ``/k_jwks``), through the dev server's sign-in form, then out again by RP-initiated logout.
A configuration that names anything but loopback is refused with exit status 2 and one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import flask
import httpx
import pytest
from werkzeug.serving import make_server

from tests.app_server import free_port
from tests.conftest import CliRunner

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # python, flask, oidc-adapter; never node
SECRET = "dev-server-client-secret-" + "d" * 32
STORE_PASSWORD = "dev-server-St0re-Pa55"
BANNER = "development identity server \u2014 not for production"


def restricted_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the dev server and the app: PATH is the venv's bin, nothing else."""
    assert shutil.which("node", path=str(VENV_BIN)) is None
    return {"PATH": str(VENV_BIN), "HOME": str(tmp_path), "LANG": "C.UTF-8", **extra}


def flask_snippet() -> str:
    """The README's Flask example (the block with ``adapter.integrations.flask``, else any
    block with a Flask app), else an app from examples/flask_app."""
    blocks = (ROOT / "README.md").read_text().split("```")[1::2]
    python = [b.partition("\n")[2] for b in blocks if b.startswith("python")]
    flask = [b for b in python if "from flask import" in b]
    idiom = [b for b in flask if "adapter.integrations.flask" in b]
    if idiom or flask:
        return (idiom or flask)[0]
    return (
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from examples.flask_app.app import create_app\n\napp = create_app('adapter.toml')\n"
    )


def the_flask_app(namespace: dict[str, Any]) -> flask.Flask:
    return next(v for v in namespace.values() if isinstance(v, flask.Flask))


LAUNCHER = """\
import runpy, sys
import flask
from werkzeug.serving import run_simple

namespace = runpy.run_path("app.py", run_name="app")
app = next(v for v in namespace.values() if isinstance(v, flask.Flask))
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"""


def keycloak_json(directory: Path, port: int, **changes: Any) -> Path:
    """keycloak.json as exported for a confidential client ("Client Id and Secret")."""
    document = {
        "realm": "demo",
        "auth-server-url": f"http://127.0.0.1:{port}/",
        "ssl-required": "external",
        "resource": "web",
        "principal-attribute": "preferred_username",
        "credentials": {"secret": SECRET},
        **changes,
    }
    path = directory / "keycloak.json"
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)
    return path


def as_toml(document: dict[str, Any]) -> str:
    """The same settings as TOML (what the README's snippet reads as adapter.toml)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for table, values in ((k, v) for k, v in document.items() if isinstance(v, dict)):
        lines += [f"[{table}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def process(
    args: list[str], cwd: Path, env: dict[str, str], ready: str, log: Path
) -> Iterator[Path]:
    """``args`` running in ``cwd`` until the block ends, once ``ready`` answers; yields
    ``log``, where its output goes."""
    with log.open("w") as stderr:
        child = subprocess.Popen(args, cwd=cwd, env=env, stdout=stderr, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(ready, timeout=2)
                break
            except httpx.TransportError:
                if child.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{args} did not start: {log.read_text()}")
                time.sleep(0.05)  # polling until the server accepts connections
        yield log
    finally:
        child.terminate()
        child.wait(timeout=10)


@contextmanager
def dev_server(config: Path, env: dict[str, str], issuer: str) -> Iterator[Path]:
    args = [str(VENV_BIN / "python"), "-m", "adapter.cli", "dev-server", "--config", str(config)]
    ready = f"{issuer}/.well-known/openid-configuration"
    with process(args, config.parent, env, ready, config.parent / "dev-server.log") as log:
        yield log


class Form(HTMLParser):
    """The sign-in page's form: its action, its hidden fields and the users it offers."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.users: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values["action"]
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values["value"]
        elif tag == "button" and values.get("name") == "user":
            self.users.append(values["value"])


def follow(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    for _ in range(10):
        if not response.is_redirect:
            return response
        response = browser.get(urljoin(str(response.url), response.headers["location"]))
    raise AssertionError("too many redirects")


def sign_in(browser: httpx.Client, url: str, user: str) -> httpx.Response:
    """Open ``url`` in the app, pick ``user`` on the dev server's form; the app's answer."""
    page = follow(browser, browser.get(url))
    assert page.status_code == 200, page.text
    assert BANNER in page.text
    form = Form(page.text)
    assert {"alice", "bob"} <= set(form.users)
    assert form.fields["code_challenge_method"] == "S256"
    return follow(browser, browser.post(form.action, data={**form.fields, "user": user}))


def page_path(snippet: str) -> str:
    return "/admin" if '"/admin"' in snippet else "/"


def test_a_keycloak_json_realm_signs_alice_in_to_the_readme_flask_app(
    tmp_path: Path, cli: CliRunner
) -> None:
    idp_port, app_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}/realms/demo"
    config = keycloak_json(tmp_path, idp_port)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    snippet = flask_snippet()
    (app_dir / "app.py").write_text(snippet)
    (app_dir / "adapter.toml").write_text(as_toml(json.loads(config.read_text())))
    (app_dir / "adapter.toml").chmod(0o600)
    (app_dir / "launch.py").write_text(LAUNCHER)
    env = restricted_env(tmp_path)
    app = f"http://127.0.0.1:{app_port}"
    launch = [str(VENV_BIN / "python"), "launch.py", str(app_port)]
    app_log = app_dir / "app.log"
    with dev_server(config, env, issuer) as log, process(launch, app_dir, env, f"{app}/", app_log):
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
        assert discovery["issuer"] == issuer
        assert discovery["end_session_endpoint"] == f"{issuer}/protocol/openid-connect/logout"
        with httpx.Client(timeout=10) as alice:
            answer = sign_in(alice, f"{app}{page_path(snippet)}", "alice")
            assert answer.status_code == 200, answer.text
            assert "alice" in answer.text
        if page_path(snippet) == "/admin":  # the snippet's admins-only route
            with httpx.Client(timeout=10) as bob:
                assert sign_in(bob, f"{app}/admin", "bob").status_code == 403
        # The client's own secret, checked: a client_credentials token, and a wrong secret refused.
        token = cli("token", "--config", str(config))
        assert token.returncode == 0, token.stderr
        assert json.loads(token.stdout)["access_token"].count(".") == 2
        wrong = keycloak_json(tmp_path / "app", idp_port, credentials={"secret": "x" * 40})
        refused_token = cli("token", "--config", str(wrong))
        assert refused_token.returncode == 2
        assert "invalid_client" in refused_token.stderr
        assert "wrong client secret" in refused_token.stderr
    output = log.read_text()
    assert "signed in alice to web" in output
    assert SECRET not in output
    assert "Traceback" not in output


@pytest.fixture
def served_app() -> Iterator[Callable[[Any, int], list[str]]]:
    """Serve a WSGI app on 127.0.0.1:port in a thread (werkzeug, threaded: the dev server
    fetches /k_jwks while the app waits for its token answer); yields the paths requested."""
    servers: list[Any] = []

    def serve(app: Any, port: int) -> list[str]:
        seen: list[str] = []

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            seen.append(environ["PATH_INFO"])
            return app(environ, start_response)

        server = make_server("127.0.0.1", port, counting, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return seen

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_private_key_jwt_the_dev_server_fetches_the_apps_k_jwks(
    tmp_path: Path,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    served_app: Callable[[Any, int], list[str]],
) -> None:
    idp_port, app_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}/realms/demo"
    app = f"http://127.0.0.1:{app_port}"
    env = {"DEV_STORE_PW": STORE_PASSWORD}
    made = cli("keys", "generate", "--alias", "web", "--out", "web.p12",
               "--store-password-env", "DEV_STORE_PW", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = tmp_path / "adapter.toml"
    config.write_text(
        textwrap.dedent(f"""\
        issuer = "{issuer}"
        client-id = "web"
        principal-attribute = "preferred_username"
        redirect-uri = "{app}/oidc/callback"

        [credentials]
        method = "private_key_jwt"

        [[credentials.keys]]
        keystore = "web.p12"
        password-env = "DEV_STORE_PW"
        alias = "web"
        """)
    )
    config.chmod(0o600)
    monkeypatch.setenv("DEV_STORE_PW", STORE_PASSWORD)
    monkeypatch.chdir(tmp_path)
    snippet = flask_snippet()
    (tmp_path / "app.py").write_text(snippet)
    import runpy

    from flask import request

    from adapter import current_identity

    flask_app = the_flask_app(runpy.run_path(str(tmp_path / "app.py"), run_name="app"))

    @flask_app.get("/test-csrf")
    def csrf() -> str:  # the token the app's logout form would carry
        identity = current_identity(request.environ)
        return identity.csrf_token if identity and identity.csrf_token else ""

    requested = served_app(flask_app, app_port)
    restricted = restricted_env(tmp_path, **env)
    with dev_server(config, restricted, issuer) as log, httpx.Client(timeout=10) as alice:
        answer = sign_in(alice, f"{app}{page_path(snippet)}", "alice")
        assert answer.status_code == 200, answer.text
        assert "alice" in answer.text
        assert "/k_jwks" in requested  # fetched by the dev server, like "Use JWKS URL"
        # RP-initiated logout: to the dev server and back with the logout's state.
        token = alice.get(f"{app}/test-csrf").text
        out = alice.post(f"{app}/oidc/logout", data={"csrf": token})
        assert out.headers["location"].startswith(f"{issuer}/protocol/openid-connect/logout?")
        back = alice.get(out.headers["location"])
        assert back.headers["location"].startswith(f"{app}/oidc/logout?state=")
        done = alice.get(back.headers["location"])
        assert done.status_code == 302, done.text
        again = alice.get(f"{app}/test-csrf")
        assert again.status_code in (302, 401), again.text  # signed out: back to login
    output = log.read_text()
    assert f"fetched 1 client key(s) from {app}/k_jwks" in output
    assert "signed in alice to web" in output
    assert STORE_PASSWORD not in output


@pytest.mark.parametrize(
    "server_url", ["http://0.0.0.0:8080/", "http://192.0.2.10:8080/", "https://sso.example.com/"]
)
def test_anything_but_loopback_is_refused(tmp_path: Path, server_url: str) -> None:
    config = keycloak_json(tmp_path, 0, **{"auth-server-url": server_url})
    args = [str(VENV_BIN / "python"), "-m", "adapter.cli", "dev-server", "--config", str(config)]
    result = subprocess.run(
        args, cwd=tmp_path, env=restricted_env(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oidc-adapter: error: auth-server-url: ")
    assert "loopback" in lines[0]
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--user", "carol:user editor", "--user"),
        ("--port", "99999", "--port"),
        ("--app-url", "ftp://127.0.0.1/", "--app-url"),
    ],
)
def test_bad_options_get_one_line(
    tmp_path: Path, cli: CliRunner, option: str, value: str, named: str
) -> None:
    config = keycloak_json(tmp_path, free_port())
    result = cli("dev-server", "--config", str(config), option, value)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"oidc-adapter: error: {named}: "), lines


def test_a_port_in_use_is_named(tmp_path: Path, cli: CliRunner) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("dev-server", "--config", str(keycloak_json(tmp_path, port)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"port {port}" in lines[0], lines
    assert lines[0].startswith("oidc-adapter: error: auth-server-url: ")


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The dev server in this process (a thread) for a client_secret_jwt client, with carol
    (editor) beside alice and bob; yields the configuration and the issuer."""
    from adapter.config import load_config
    from adapter.testing._dev_http import DevHTTPServer
    from adapter.testing._dev_issuer import DEFAULT_USERS, DevIssuer

    port = free_port()
    issuer = f"http://127.0.0.1:{port}/realms/demo"
    config = tmp_path / "adapter.toml"
    config.write_text(
        f'issuer = "{issuer}"\nclient-id = "web"\n'
        f'[credentials]\nmethod = "client_secret_jwt"\nsecret = "{SECRET}"\nalgorithm = "HS256"\n'
    )
    config.chmod(0o600)
    users = {**DEFAULT_USERS, "carol": ("editor",)}
    dev = DevIssuer(load_config(config), issuer, users, "http://127.0.0.1:8000", say=lambda _: None)
    server = DevHTTPServer("127.0.0.1", port, dev.handle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield config, issuer
    server.shutdown()
    server.server_close()
    dev.close()


def test_the_library_gets_keycloak_shaped_tokens_refreshes_and_revokes(
    in_process: tuple[Path, str],
) -> None:
    from adapter import TokenError
    from adapter.protocol.client import OIDCClient

    config, issuer = in_process
    callback = "http://127.0.0.1:9/callback"
    with OIDCClient(config) as client, httpx.Client(timeout=10) as browser:
        login = client.login_request(callback, "openid profile email")
        form = Form(browser.get(login.url).text)
        assert form.users == ["alice", "bob", "carol"]
        back = browser.post(form.action, data={**form.fields, "user": "carol"})
        query = httpx.URL(back.headers["location"]).params
        assert query["state"] == login.state
        assert query["iss"] == issuer
        tokens = client.exchange_code(query["code"], callback, login.code_verifier)
        assert tokens.id_token is not None
        assert tokens.refresh_token is not None
        claims = client.validate_id_token(tokens.id_token, login.nonce)
        assert claims["preferred_username"] == "carol"
        assert claims["email"] == "carol@example.com"
        assert claims["realm_access"] == {"roles": ["editor"]}
        assert claims["resource_access"]["web"] == {"roles": ["editor"]}
        assert len(claims["sub"]) == 36  # a UUID, as Keycloak's
        access = client.validate_access_token(tokens.access_token)
        assert access["azp"] == "web"
        userinfo = httpx.get(
            f"{issuer}/protocol/openid-connect/userinfo",
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
        assert userinfo.json()["preferred_username"] == "carol"
        assert "realm_access" not in userinfo.json()
        assert client.introspect(tokens.access_token)["active"] is True
        assert client.introspect("not-a-token")["active"] is False
        refreshed = client.refresh(tokens.refresh_token)
        assert refreshed.refresh_token is not None
        client.revoke(refreshed.refresh_token, "refresh_token")
        with pytest.raises(TokenError, match="invalid_grant"):
            client.refresh(refreshed.refresh_token)
        assert client.client_credentials().access_token


def test_the_sign_in_form_refuses_what_keycloak_refuses(in_process: tuple[Path, str]) -> None:
    _, issuer = in_process
    auth = f"{issuer}/protocol/openid-connect/auth"
    good = {
        "client_id": "web",
        "redirect_uri": "http://127.0.0.1:9/callback",
        "response_type": "code",
        "state": "s1",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    with httpx.Client(timeout=10) as browser:
        assert BANNER in browser.get(auth, params=good).text
        elsewhere = browser.get(auth, params={**good, "redirect_uri": "https://evil.example/cb"})
        assert elsewhere.status_code == 400
        assert BANNER in elsewhere.text
        assert browser.get(auth, params={**good, "client_id": "other"}).status_code == 400
        no_pkce = browser.get(auth, params={**good, "code_challenge_method": "plain"})
        assert no_pkce.status_code == 302
        assert "error=invalid_request" in no_pkce.headers["location"]
        assert "state=s1" in no_pkce.headers["location"]
        nobody = browser.post(auth, data={**good, "user": "mallory"})
        assert nobody.status_code == 400
        out = browser.get(
            f"{issuer}/protocol/openid-connect/logout",
            params={"client_id": "web", "post_logout_redirect_uri": "https://evil.example/"},
        )
        assert out.status_code == 400
        assert BANNER in browser.get(issuer.rsplit("/realms", 1)[0] + "/").text


def test_logout_returns_with_its_state_even_with_a_hint_from_before_a_restart(
    in_process: tuple[Path, str],
) -> None:
    _, issuer = in_process
    logout = f"{issuer}/protocol/openid-connect/logout"
    params = {
        "id_token_hint": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",  # not this run's: ignored
        "client_id": "web",
        "post_logout_redirect_uri": "http://127.0.0.1:9/oidc/logout",
        "state": "st-1",
    }
    back = httpx.get(logout, params=params)
    assert back.status_code == 302
    assert back.headers["location"] == "http://127.0.0.1:9/oidc/logout?state=st-1"
    plain = httpx.get(logout)
    assert plain.status_code == 200
    assert BANNER in plain.text


@pytest.mark.parametrize(
    ("server_url", "port", "bind", "issuer"),
    [
        ("http://localhost:8080/", None, ("127.0.0.1", 8080), "http://localhost:8080/realms/demo"),
        ("http://127.0.0.1/", None, ("127.0.0.1", 80), "http://127.0.0.1/realms/demo"),
        ("http://[::1]:8080/", None, ("::1", 8080), "http://[::1]:8080/realms/demo"),
        (
            "http://127.0.0.1:8080/",
            "9090",
            ("127.0.0.1", 9090),
            "http://127.0.0.1:9090/realms/demo",
        ),
    ],
)
def test_where_it_listens_and_the_issuer_it_serves(
    server_url: str, port: str | None, bind: tuple[str, int], issuer: str
) -> None:
    from adapter.cli.dev_server import listen_address
    from adapter.config import load_config

    config = load_config(
        {"realm": "demo", "auth-server-url": server_url, "resource": "web", "public-client": True}
    )
    assert listen_address(config, port) == (*bind, issuer)
