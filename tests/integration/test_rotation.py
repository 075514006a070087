"""Key rotation and live reload against the real identity server, under a steady load.

The app (the WSGI middleware around a tiny app) serves /k_jwks on a real socket, so the
identity server fetches the client's keys from it. oidc-provider caches a client's JWKS for at
least 60 s and refetches only when a signature fails after that: right after a switch it still
refuses the new key, and the adapter's previous-key retry keeps every request succeeding. To
show that the server accepts the new key itself, a second client whose cache is empty (same
keys, same jwks_uri) asks for a token signed by it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server

from adapter import OIDCWSGIMiddleware
from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from tests.app_server import hello
from tests.idp_server import IdentityServer
from tests.web_client import jwks_uri_client

PASSWORD = "rotation-store-pw"


@dataclass
class App:
    directory: Path
    config: Path
    middleware: OIDCWSGIMiddleware
    url: str
    idp: IdentityServer
    keys: list[dict[str, str]] = field(default_factory=list)  # as last written

    def write(self, keys: list[dict[str, str]], client_id: str = "rotation") -> None:
        self.keys = keys
        tables = "".join(
            "\n[[credentials.keys]]\n" + "".join(f'{k} = "{v}"\n' for k, v in key.items())
            for key in keys
        )
        self.config.write_text(
            f'issuer = "{self.idp.issuer}"\nclient-id = "{client_id}"\n'
            'public-paths = ["/"]\nsession-secret = "rotation-session-secret-0123456789abcd"\n'
            '[credentials]\nmethod = "private_key_jwt"\n' + tables
        )

    def published_kids(self) -> list[str]:
        return [k["kid"] for k in httpx.get(f"{self.url}/k_jwks").json()["keys"]]

    def signing_kid(self) -> str:
        assertion = self.middleware.client.client_assertion()
        header = assertion.split(".")[0]
        return str(json.loads(_b64(header))["kid"])


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def key_file(directory: Path, name: str, kind: str = "rsa") -> dict[str, str]:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    certificate = self_signed_certificate(
        key, common_name(name), 5, "RS256" if kind == "rsa" else "ES256"
    )
    write_keystore(directory / f"{name}.p12", "pkcs12", name, key, certificate, PASSWORD)
    return {"keystore": f"{name}.p12", "password": PASSWORD, "alias": name}


@pytest.fixture
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Its own identity server per test: the server's JWKS cache starts empty each time."""
    directory = tmp_path_factory.mktemp("rotation")
    probe = make_server("127.0.0.1", 0, hello)
    port = probe.server_port
    probe.server_close()
    url = f"http://127.0.0.1:{port}"
    clients = [
        jwks_uri_client(client_id, f"{url}/k_jwks")
        for client_id in ("rotation", "rotation-fresh", "rotation-fresh-2")
    ]
    with IdentityServer(clients, tmp_dir=directory) as idp:
        config = directory / "adapter.toml"
        holder = App(directory, config, None, url, idp)  # type: ignore[arg-type]
        holder.write([{**key_file(directory, "key-a"), "state": "active"}])
        holder.middleware = OIDCWSGIMiddleware(hello, config)
        server = make_server("127.0.0.1", port, holder.middleware, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield holder
        finally:
            server.shutdown()
            holder.middleware.close()


class Load:
    """Token requests and /k_jwks fetches in a loop until stopped (bounded in time)."""

    def __init__(self, app: App, limit_seconds: float = 180) -> None:
        self.app, self.deadline = app, time.monotonic() + limit_seconds
        self.tokens = self.jwks = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._token_loop, daemon=True),
            threading.Thread(target=self._jwks_loop, daemon=True),
        ]

    def _token_loop(self) -> None:
        client = self.app.middleware.client
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                client.client_credentials()
                self.tokens += 1
            except Exception as error:
                self.failures.append(f"token: {error}")

    def _jwks_loop(self) -> None:
        with httpx.Client() as http:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                response = http.get(f"{self.app.url}/k_jwks")
                if response.status_code >= 500:
                    self.failures.append(f"/k_jwks: {response.status_code}")
                self.jwks += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def wait_for(condition: Any, timeout: float = 15) -> None:
    """Poll ``condition`` until true (the condition is the synchronisation point)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def fresh_token(app: App, client_id: str) -> str:
    """A token for a client the server has never seen (empty JWKS cache), same keys."""
    from adapter import OIDCClient

    text = app.config.read_text().replace('client-id = "rotation"', f'client-id = "{client_id}"')
    config = app.directory / f"{client_id}.toml"
    config.write_text(text)
    with OIDCClient(config) as client:
        kid = json.loads(_b64(client.client_assertion().split(".")[0]))["kid"]
        client.client_credentials()
    return str(kid)


def test_rotation_under_load_loses_no_request(app: App) -> None:
    a = {**key_file(app.directory, "key-a-again"), "state": "active"}
    app.write([a])
    assert app.middleware.reload()
    kid_a = app.signing_kid()
    with Load(app) as load:
        wait_for(lambda: load.tokens >= 3)
        # 1. Add B as next: published, not signing.
        b = key_file(app.directory, "key-b")
        app.write([a, {**b, "state": "next"}])
        assert app.middleware.reload()
        kid_b = next(k for k in app.published_kids() if k != kid_a)
        assert app.published_kids() == [kid_a, kid_b]
        assert app.signing_kid() == kid_a
        # 2. B takes over by itself at its activate-at (no reload at the switch).
        switch = datetime.now(UTC) + timedelta(seconds=5)
        app.write([a, {**b, "activate-at": switch.isoformat()}])
        assert app.middleware.reload()
        assert app.signing_kid() == kid_a
        wait_for(lambda: app.signing_kid() == kid_b)
        wait_for(lambda: load.tokens >= 10)
        assert fresh_token(app, "rotation-fresh") == kid_b, "the server accepts B itself"
        # The runbook: A stays published until the server has fetched the JWKS with B. This
        # server refetches once its cache is 60 s old and a B-signed assertion fails; until
        # then the previous-key retry (A) serves every request.
        fetches = app.idp.logs().count('"event":"fetch"')
        wait_for(lambda: app.idp.logs().count('"event":"fetch"') > fetches, timeout=100)
        target = load.tokens + 3  # a few requests with B accepted by the refreshed server
        wait_for(lambda: load.tokens >= target)
        # 3. Remove A: only B is published (and signs; A never signs again).
        app.write([{**b, "state": "active"}])
        assert app.middleware.reload()
        assert app.published_kids() == [kid_b]
        wait_for(lambda: load.tokens >= 15)
    assert load.failures == [], load.failures[:5]
    assert load.jwks > 10
    status = app.middleware.status
    assert status is not None
    assert status.last_error is None
    assert [k["kid"] for k in status.keys] == [kid_b]


def test_switch_by_an_edit_and_the_previous_key_retry(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The signer is replaced by an edit with a key the server's JWKS cache does not hold."""
    current = next(k for k in app.keys if k.get("state") == "active")
    app.middleware.client.client_credentials()  # the current key works
    kid_before = app.signing_kid()
    c = key_file(app.directory, "edit-c")
    app.write([{**current, "state": "retired"}, {**c, "state": "active"}])
    assert app.middleware.reload()
    assert app.signing_kid() != kid_before
    with caplog.at_level("WARNING", logger="adapter.protocol.flows"):
        app.middleware.client.client_credentials()
    assert "retrying once with the previous key" in caplog.text
    assert kid_before in caplog.text


BREAKAGES = {
    "broken TOML": lambda text: text + "\n[[credentials.keys]\n",
    "wrong keystore password": lambda text: text.replace(PASSWORD, "not-the-password", 1),
    "missing keystore": lambda text: text.replace('keystore = "', 'keystore = "gone-', 1),
    "algorithm mismatch": lambda text: text.replace(
        'method = "private_key_jwt"', 'method = "private_key_jwt"\nalgorithm = "EdDSA"'
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_file_changes_nothing(app: App, breakage: str) -> None:
    good = app.config.read_text()
    before = app.published_kids()
    app.config.write_text(BREAKAGES[breakage](good))
    assert not app.middleware.reload()
    status = app.middleware.status
    assert status is not None
    assert status.last_error
    assert "not-the-password" not in status.last_error
    assert app.published_kids() == before, "the old keys keep being served"
    app.middleware.client.client_credentials()  # and keep signing
    app.config.write_text(good)
    assert app.middleware.reload(), "the fixed file is applied"
    assert app.middleware.status.last_error is None  # type: ignore[union-attr]


def test_the_watcher_picks_up_an_edit(app: App) -> None:
    current = list(app.keys)
    reloader = app.middleware.shell.reloader
    assert reloader is not None
    thread = reloader.watch_in_thread(0.05)
    try:
        b = key_file(app.directory, "watched-b")
        app.write([*current, {**b, "state": "next"}])
        wait_for(lambda: len(app.published_kids()) == len(current) + 1)
    finally:
        reloader.stop()
        thread.join(timeout=5)


def test_hundred_reloads_keep_every_request_consistent(app: App) -> None:
    one = [{**key_file(app.directory, "flip-a"), "state": "active"}]
    two = [{**key_file(app.directory, "flip-b", "ec"), "state": "active"}]
    problems: list[str] = []
    stop = threading.Event()

    def observe() -> None:
        client = app.middleware.client
        while not stop.is_set():
            state = client.state  # what a request reads, once
            published = {k["kid"] for k in json.loads(state.ring.jwks_bytes)["keys"]}
            auth = client.auth_for(state).resolve(state)  # type: ignore[attr-defined]
            kid = json.loads(_b64(auth.assertion().split(".")[0]))["kid"]
            if kid not in published:
                problems.append(f"{kid} not in {published}")

    def fetch() -> None:
        with httpx.Client() as http:
            while not stop.is_set():
                response = http.get(f"{app.url}/k_jwks")
                body = response.json()
                import hashlib

                from adapter.jose import b64url

                etag = '"' + b64url(hashlib.sha256(response.content).digest()[:18]) + '"'
                if response.headers["etag"] != etag or len(body["keys"]) != 1:
                    problems.append("a /k_jwks answer mixed two states")

    threads = [threading.Thread(target=observe), threading.Thread(target=fetch)]
    for thread in threads:
        thread.start()
    try:
        for index in range(100):
            app.write(one if index % 2 else two)
            assert app.middleware.reload()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert problems == []
    assert app.middleware.status.reloads >= 100  # type: ignore[union-attr]


def test_asgi_watcher_runs_with_the_lifespan(app: App) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from adapter import OIDCMiddleware

    middleware = OIDCMiddleware(Starlette(), app.config, watch=0.05)
    with TestClient(middleware) as client:
        before = client.get("/k_jwks").json()["keys"]
        b = key_file(app.directory, "lifespan-b")
        app.write([*app.keys, {**b, "state": "next"}])
        wait_for(lambda: len(client.get("/k_jwks").json()["keys"]) == len(before) + 1)
    assert len(middleware._watchers) == 1
    assert all(watcher.cancelled() or watcher.done() for watcher in middleware._watchers)


def test_sighup_reloads(app: App) -> None:
    import os
    import signal

    reloader = app.middleware.shell.reloader
    assert reloader is not None
    previous = signal.getsignal(signal.SIGHUP)
    try:
        reloader.install_sighup()
        count = reloader.status.reloads
        b = key_file(app.directory, "hup-b")
        app.write([*app.keys, {**b, "state": "next"}])
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: reloader.status.reloads == count + 1)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert len(app.published_kids()) == 2
