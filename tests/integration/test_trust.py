"""Server-to-server connections against the real identity server (tests/idp) over real TLS.

The server answers HTTPS with a certificate from a CA made here by openssl; truststores are made
by keytool (JKS, PKCS#12, and the PKCS#12 that ``keytool -importcert -keystore t.jks`` writes
since Java 9) and as a PEM bundle. The same server also answers on a plain-HTTP internal
listener as if it were reached at its public https issuer (Keycloak with a fixed hostname
behind a Docker or Kubernetes service name); its log says which listener every request came in
on. A small forwarding proxy here counts what passes through it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pytest

from adapter import ConfigError, ProviderError
from adapter.protocol.client import AsyncOIDCClient, OIDCClient
from tests.conftest import CliRunner, run_tool
from tests.idp_server import IdentityServer

PASSWORD = "truststore-pass-1"
SECRET = "client-secret-" + "t" * 40
API = "urn:oidc-adapter:test-api"
OPAQUE = "urn:oidc-adapter:opaque-api"
REALM_PATH = "/realms/test"
SERVICE = {
    "client_id": "svc",
    "client_secret": SECRET,
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["client_credentials"],
    "redirect_uris": [],
    "response_types": [],
}
WEB = {
    "client_id": "web",
    "client_secret": SECRET,
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["authorization_code"],
    "redirect_uris": ["https://app.example.test/oidc/callback"],
    "response_types": ["code"],
}


@dataclass(frozen=True)
class Pki:
    """The test CA, another CA the server does not use, and truststores made from them."""

    ca: Path
    server_key: Path
    server_cert: Path
    truststores: dict[str, Path]


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    run_tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return key, cert


def _make_server_cert(directory: Path, ca_key: Path, ca: Path) -> tuple[Path, Path]:
    """A server certificate for IP 127.0.0.1 only (not for the name localhost)."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
    )
    run_tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", "/CN=test identity server")  # fmt: skip
    run_tool("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", "2", "-days", "2", "-out", str(cert),
             "-extfile", str(extensions))  # fmt: skip
    return key, cert


def _import(ca: Path, store: Path, *storetype: str) -> Path:
    run_tool("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca),
             "-keystore", str(store), "-storepass", PASSWORD, *storetype)  # fmt: skip
    return store


def _empty_jks(store: Path) -> Path:
    """A JKS keytool made and emptied again: a truststore without a single certificate."""
    run_tool("keytool", "-genkeypair", "-alias", "gone", "-keyalg", "EC", "-groupname",
             "secp256r1", "-dname", "CN=gone", "-storetype", "JKS", "-keystore", str(store),
             "-storepass", PASSWORD)  # fmt: skip
    run_tool("keytool", "-delete", "-alias", "gone", "-keystore", str(store),
             "-storepass", PASSWORD)  # fmt: skip
    return store


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca = _make_ca(directory, "test-ca")
    _, other = _make_ca(directory, "other-ca")
    server_key, server_cert = _make_server_cert(directory, ca_key, ca)
    bundle = directory / "bundle.pem"
    bundle.write_bytes(other.read_bytes() + ca.read_bytes())  # a bundle: the server's CA second
    truststores = {
        "jks": _import(ca, directory / "ca-jks.jks", "-storetype", "JKS"),
        "keytool-default": _import(ca, directory / "truststore.jks"),  # PKCS#12 inside
        "pkcs12": _import(ca, directory / "ca.p12", "-storetype", "PKCS12"),
        "pem": bundle,
        "other-ca": _import(other, directory / "other.jks", "-storetype", "JKS"),
        "empty": _empty_jks(directory / "empty.jks"),
    }
    return Pki(ca, server_key, server_cert, truststores)


@pytest.fixture(scope="module")
def idp(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    with IdentityServer(
        [SERVICE, WEB],
        tmp_dir=tmp_path_factory.mktemp("idp"),
        issuer="https://127.0.0.1:{port}" + REALM_PATH,
        tls=(pki.server_key, pki.server_cert),
        ca=pki.ca,
        internal_port=0,
    ) as server:
        yield server


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def keycloak_json(directory: Path, idp: IdentityServer, **fields: Any) -> Path:
    """A keycloak.json as exported (auth-server-url + realm), plus ``fields``."""
    document = {
        "realm": "test",
        "auth-server-url": _origin(idp.issuer),
        "resource": "svc",
        "credentials": {"secret": SECRET},
        **fields,
    }
    path = directory / "keycloak.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)  # it holds the client secret
    return path


def native(directory: Path, idp: IdentityServer, extra: str = "", client: str = "svc") -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "{client}"\n{extra}\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


def log_mark(idp: IdentityServer) -> int:
    """A position in the server's log after which only this test's requests are logged: a
    request to a unique path, whose own line follows every earlier request's."""
    path = f"/mark-{uuid.uuid4().hex}"
    httpx.get(idp.internal_url + path, timeout=5)
    assert idp.wait_until(lambda logs: path in logs), "the mark request was not logged"
    logs = idp.logs()
    return logs.index("\n", logs.index(path)) + 1


def requests_since(idp: IdentityServer, mark: int, last: str) -> list[dict[str, Any]]:
    """The server's request log lines after ``mark`` (see :func:`log_mark`), once the line of
    the request to ``last`` (a path under the issuer) has arrived."""
    line = f'"url":"{REALM_PATH}{last}"'
    assert idp.wait_until(lambda logs: line in logs[mark:]), f"no request to {last} logged"
    entries = []
    for line in idp.logs()[mark:].splitlines():
        if line.startswith("{") and '"event":"request"' in line:
            entries.append(json.loads(line))
    return entries


# --- trust ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "content"),
    [("jks", "JKS"), ("keytool-default", "PKCS12"), ("pkcs12", "PKCS12"), ("pem", "PEM")],
)
def test_a_truststore_of_each_kind_is_trusted(
    pki: Pki, idp: IdentityServer, tmp_path: Path, kind: str, content: str
) -> None:
    password = {} if kind == "pem" else {"truststore-password": PASSWORD}
    config = keycloak_json(tmp_path, idp, truststore=str(pki.truststores[kind]), **password)
    mark = log_mark(idp)

    with OIDCClient(config) as client:
        tokens = client.client_credentials()
        claims = client.validate_access_token(tokens.access_token, audience=API)  # JWKS too

    assert claims["client_id"] == "svc"
    assert client.connection.truststore is not None
    assert client.connection.truststore.type == content
    seen = requests_since(idp, mark, "/jwks")
    assert {entry["listener"] for entry in seen} == {"public"}  # over TLS, at the issuer
    assert any(entry["url"].endswith("/token") for entry in seen)


def test_the_async_client_trusts_the_truststore_too(
    pki: Pki, idp: IdentityServer, tmp_path: Path
) -> None:
    config = keycloak_json(
        tmp_path, idp, truststore=str(pki.truststores["jks"]), **{"truststore-password": PASSWORD}
    )

    async def main() -> str:
        async with AsyncOIDCClient(config) as client:
            tokens = await client.client_credentials()
            claims = await client.validate_access_token(tokens.access_token, audience=API)
            return str(claims["client_id"])

    assert asyncio.run(main()) == "svc"


def test_without_a_truststore_the_tls_failure_is_one_line_naming_truststore(
    idp: IdentityServer, tmp_path: Path
) -> None:
    config = keycloak_json(tmp_path, idp)

    with OIDCClient(config) as client, pytest.raises(ProviderError) as caught:
        client.client_credentials()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"certificate verify failed for {idp.issuer}/.well-known/")
    assert "truststore = " in message


def test_the_async_client_names_truststore_too(idp: IdentityServer, tmp_path: Path) -> None:
    config = keycloak_json(tmp_path, idp)

    async def main() -> None:
        async with AsyncOIDCClient(config) as client:
            await client.client_credentials()

    with pytest.raises(ProviderError, match=r"^certificate verify failed for .*truststore = "):
        asyncio.run(main())


def test_a_truststore_without_the_servers_ca_is_refused(
    pki: Pki, idp: IdentityServer, tmp_path: Path
) -> None:
    """The truststore replaces the default CAs: the server's CA must be in it."""
    config = keycloak_json(
        tmp_path,
        idp,
        truststore=str(pki.truststores["other-ca"]),
        **{"truststore-password": PASSWORD},
    )

    with OIDCClient(config) as client, pytest.raises(ProviderError, match="truststore = "):
        client.client_credentials()


@pytest.mark.parametrize("kind", ["jks", "keytool-default", "pkcs12"])
def test_a_wrong_truststore_password_names_the_field(
    pki: Pki, idp: IdentityServer, tmp_path: Path, kind: str
) -> None:
    wrong = "not-the-password"
    config = keycloak_json(
        tmp_path, idp, truststore=str(pki.truststores[kind]), **{"truststore-password": wrong}
    )

    with pytest.raises(ConfigError) as caught:
        OIDCClient(config)

    message = str(caught.value)
    assert message.startswith("truststore-password: does not open ")
    assert "wrong password" in message
    assert "\n" not in message
    assert wrong not in message
    assert PASSWORD not in message


def test_an_empty_or_missing_truststore_names_the_field(
    pki: Pki, idp: IdentityServer, tmp_path: Path
) -> None:
    password = {"truststore-password": PASSWORD}
    empty = keycloak_json(tmp_path, idp, truststore=str(pki.truststores["empty"]), **password)
    with pytest.raises(ConfigError, match=r"^truststore: .*empty\.jks holds no certificate; "):
        OIDCClient(empty)

    missing = keycloak_json(tmp_path, idp, truststore="nowhere.jks", **password)
    with pytest.raises(ConfigError, match=r"^truststore: .*nowhere\.jks not found; check the path"):
        OIDCClient(missing)


def test_the_middleware_calls_the_server_with_the_truststore(
    pki: Pki, idp: IdentityServer, tmp_path: Path
) -> None:
    from adapter.wsgi import OIDCWSGIMiddleware

    config = keycloak_json(
        tmp_path, idp, truststore=str(pki.truststores["pem"]), **{"session-secret": "s" * 32}
    )

    middleware = OIDCWSGIMiddleware(lambda environ, start: [], config)

    assert middleware.client.metadata().token_endpoint == f"{idp.issuer}/token"


def test_config_check_shows_the_truststore_and_refuses_a_wrong_password(
    pki: Pki, idp: IdentityServer, tmp_path: Path, cli: CliRunner
) -> None:
    store = str(pki.truststores["keytool-default"])
    good = keycloak_json(tmp_path, idp, truststore=store, **{"truststore-password": PASSWORD})

    result = cli("config", "check", "--config", str(good))

    assert result.returncode == 0, result.stderr
    assert f"trust:         1 CA certificate(s) from {store} (PKCS12)" in result.stdout

    bad = keycloak_json(tmp_path, idp, truststore=store, **{"truststore-password": "nope-nope"})
    result = cli("config", "check", "--config", str(bad))

    assert result.returncode == 2
    assert result.stderr.startswith("oidc-adapter: error: truststore-password: does not open ")
    assert len(result.stderr.strip().splitlines()) == 1


# --- turning checks off -----------------------------------------------------------------------


def test_disable_trust_manager_on_loopback_works_and_warns_at_every_start(
    idp: IdentityServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = keycloak_json(tmp_path, idp, **{"disable-trust-manager": True})

    with caplog.at_level(logging.WARNING, logger="adapter"):
        with OIDCClient(config) as client:
            tokens = client.client_credentials()
        OIDCClient(config).close()

    assert tokens.access_token
    warned = [
        r
        for r in caplog.records
        if r.name.startswith("adapter") and "disable-trust-manager" in r.message
    ]
    assert len(warned) == 2
    assert all(r.levelno == logging.WARNING for r in warned)


def test_allow_any_hostname_accepts_a_certificate_for_another_name(
    pki: Pki, idp: IdentityServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reached as localhost, the server shows a certificate for 127.0.0.1 only. The server
    then names its endpoints on localhost too (as Keycloak's hostname-backchannel-dynamic
    does), which discovery accepts because backchannel-url names that host."""
    port = urlsplit(idp.issuer).port
    fields = {
        "truststore": str(pki.truststores["pem"]),
        "backchannel-url": f"https://localhost:{port}",
    }
    strict = keycloak_json(tmp_path, idp, **fields)
    with OIDCClient(strict) as client, pytest.raises(ProviderError) as caught:
        client.client_credentials()
    message = str(caught.value)
    assert message.startswith(f"certificate verify failed for https://localhost:{port}/realms/")
    assert "give the server a certificate for the name the adapter calls it by" in message

    relaxed = keycloak_json(tmp_path, idp, **fields, **{"allow-any-hostname": True})
    with caplog.at_level(logging.WARNING, logger="adapter"), OIDCClient(relaxed) as client:
        tokens = client.client_credentials()
        metadata = client.metadata()

    assert tokens.access_token
    assert metadata.token_endpoint == f"https://localhost:{port}{REALM_PATH}/token"
    assert any(
        "allow-any-hostname" in r.message for r in caplog.records if r.name.startswith("adapter")
    )


def test_turning_checks_off_for_another_machine_needs_the_explicit_flag(tmp_path: Path) -> None:
    base = {
        "realm": "test",
        "auth-server-url": "https://sso.example.com",
        "resource": "svc",
        "credentials": {"secret": SECRET},
    }
    for name in ("disable-trust-manager", "allow-any-hostname"):
        path = tmp_path / "keycloak.json"
        path.write_text(json.dumps({**base, name: True}))
        path.chmod(0o600)
        with pytest.raises(ConfigError, match=rf"{name}: turns TLS checks off for sso\.example"):
            OIDCClient(path)
        path.write_text(json.dumps({**base, name: True, "i-understand-tls-is-disabled": True}))
        OIDCClient(path).close()


# --- the internal address ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["origin", "with-path"])
def test_backchannel_url_carries_every_server_call_while_browsers_keep_the_issuer(
    idp: IdentityServer, tmp_path: Path, form: str
) -> None:
    """No truststore: the public https listener cannot be reached by this adapter at all (its
    CA is unknown), so every call that succeeds went to the plain-HTTP internal listener; the
    server's log says so too."""
    internal = idp.internal_url + (REALM_PATH if form == "with-path" else "")
    service = native(tmp_path, idp, f'backchannel-url = "{internal}"')
    (tmp_path / "web").mkdir()
    web = native(tmp_path / "web", idp, f'backchannel-url = "{internal}"', client="web")
    mark = log_mark(idp)

    with OIDCClient(service) as client:
        metadata = client.metadata()
        tokens = client.client_credentials()
        client.validate_access_token(tokens.access_token, audience=API)  # the JWKS
        opaque = client.client_credentials(resource=OPAQUE)
        assert client.introspect(opaque.access_token)["active"] is True
        client.revoke(opaque.access_token)
        assert client.introspect(opaque.access_token)["active"] is False
    with OIDCClient(web) as client:
        login = client.login_request("https://app.example.test/oidc/callback", pushed=True)

    assert metadata.issuer == idp.issuer
    assert metadata.authorization_endpoint == f"{idp.issuer}/auth"
    assert metadata.end_session_endpoint == f"{idp.issuer}/session/end"
    assert login.url.startswith(f"{idp.issuer}/auth?")  # the browser goes to the public URL
    assert "request_uri=" in login.url
    seen = requests_since(idp, mark, "/request")
    assert {entry["listener"] for entry in seen} == {"internal"}
    paths = {urlsplit(entry["url"]).path.removeprefix(REALM_PATH) for entry in seen}
    assert {"/.well-known/openid-configuration", "/token", "/jwks", "/token/introspection",
            "/token/revocation", "/request"} <= paths  # fmt: skip


def test_the_async_client_uses_backchannel_url_too(idp: IdentityServer, tmp_path: Path) -> None:
    config = native(tmp_path, idp, f'backchannel-url = "{idp.internal_url}"')
    mark = log_mark(idp)

    async def main() -> str:
        async with AsyncOIDCClient(config) as client:
            tokens = await client.client_credentials()
            claims = await client.validate_access_token(tokens.access_token, audience=API)
            return str(claims["iss"])

    assert asyncio.run(main()) == idp.issuer
    assert {entry["listener"] for entry in requests_since(idp, mark, "/jwks")} == {"internal"}


# --- the proxy --------------------------------------------------------------------------------


@dataclass
class ForwardProxy:
    """A real HTTP proxy on 127.0.0.1: forwards absolute-form requests, tunnels CONNECT."""

    server: ThreadingHTTPServer
    seen: list[str] = field(default_factory=list)  # "GET http://..." / "CONNECT host:port"
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: ClassVar[ForwardProxy]
    _HOP_BY_HOP: ClassVar[set[str]] = {
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade",
    }  # fmt: skip

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        with self.proxy.lock:
            self.proxy.seen.append(f"{self.command} {self.path}")

    def _forward(self) -> None:
        self._record()
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute-form http URL expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path or "/", body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in self._HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _forward

    def do_CONNECT(self) -> None:
        self._record()
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    handler = type("Handler", (_ProxyHandler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    proxy = ForwardProxy(server)
    handler.proxy = proxy
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_proxy_carries_the_plain_http_back_channel(
    idp: IdentityServer, tmp_path: Path, forward_proxy: ForwardProxy
) -> None:
    extra = f'backchannel-url = "{idp.internal_url}"\nproxy = "{forward_proxy.url}"'
    config = native(tmp_path, idp, extra)

    with OIDCClient(config) as client:
        tokens = client.client_credentials()

    assert tokens.access_token
    assert f"POST {idp.internal_url}{REALM_PATH}/token" in forward_proxy.seen
    assert f"GET {idp.internal_url}{REALM_PATH}/.well-known/openid-configuration" in (
        forward_proxy.seen
    )


def test_keycloak_proxy_url_tunnels_tls_with_the_truststore(
    pki: Pki, idp: IdentityServer, tmp_path: Path, forward_proxy: ForwardProxy
) -> None:
    config = keycloak_json(
        tmp_path,
        idp,
        truststore=str(pki.truststores["jks"]),
        **{"truststore-password": PASSWORD, "proxy-url": forward_proxy.url},
    )

    with OIDCClient(config) as client:
        tokens = client.client_credentials()

    assert tokens.access_token
    assert client.config.unused_fields == ()
    assert f"CONNECT {urlsplit(idp.issuer).netloc}" in forward_proxy.seen


def test_https_to_a_plain_http_port_says_so_in_one_line(
    pki: Pki, idp: IdentityServer, tmp_path: Path
) -> None:
    internal = idp.internal_url.replace("http://", "https://")
    config = native(tmp_path, idp, f'backchannel-url = "{internal}"\ntruststore = "{pki.ca}"')

    with OIDCClient(config) as client, pytest.raises(ProviderError) as caught:
        client.client_credentials()

    assert str(caught.value) == (
        f"{internal}{REALM_PATH}/.well-known/openid-configuration: the TLS handshake failed "
        "(WRONG_VERSION_NUMBER); is it an https port?"
    )
