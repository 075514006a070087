"""Every client authentication method against the real identity server (tests/idp).

One oidc-provider instance serves the module, with a Keycloak-style issuer
(``.../realms/test``). private_key_jwt clients register a ``jwks_uri`` on a local host that
serves their key ring's JWKS bytes, so the server really fetches the adapter's public keys.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from adapter import ConfigError, ProviderError, TokenError, load_config, load_key_ring
from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.protocol.client import AsyncOIDCClient, OIDCClient
from adapter.protocol.client_auth import PrivateKeyJwt
from adapter.protocol.flows import client_credentials, run
from tests.conftest import CliRunner, run_tool
from tests.http_host import LocalHost, Seen
from tests.idp_server import IdentityServer

SECRET = "client-secret-" + "s" * 50  # HS512 wants at least 64 bytes
ODD_SECRET = "p@ss:w+rd%20 /?&=" + "x" * 20  # VSCHARs that RFC 6749 §2.3.1 form-encodes
STORE = "store-password-1"
KEY = "key-password-22"
API = "urn:oidc-adapter:test-api"
OPAQUE = "urn:oidc-adapter:opaque-api"
ENV = {"STORE_PW": STORE, "KEY_PW": KEY}
NO_REDIRECTS = {"grant_types": ["client_credentials"], "redirect_uris": [], "response_types": []}


@dataclass(frozen=True)
class Client:
    """A client registered at the test server and the adapter configuration that matches it."""

    client_id: str
    config: Path
    uses_jwks_uri: bool


@dataclass
class World:
    idp: IdentityServer
    host: LocalHost
    clients: dict[str, Client]
    server_key: rsa.RSAPrivateKey
    directory: Path


def native(issuer: str, client_id: str, credentials: str) -> str:
    return f'issuer = "{issuer}"\nclient-id = "{client_id}"\n\n[credentials]\n{credentials}'


def keystores(directory: Path) -> dict[str, str]:
    """Client keystores made by keytool (PKCS#12, JKS) and by the adapter; TOML key tables."""
    p12, jks_rsa, jks_ec = directory / "rsa.p12", directory / "rsa.jks", directory / "ec.jks"
    run_tool("keytool", "-genkeypair", "-alias", "rs", "-keyalg", "RSA", "-keysize", "2048",
             "-dname", "CN=rs", "-storetype", "PKCS12", "-keystore", str(p12),
             "-storepass", STORE)  # fmt: skip
    run_tool("keytool", "-genkeypair", "-alias", "ps", "-keyalg", "RSA", "-keysize", "2048",
             "-dname", "CN=ps", "-storetype", "JKS", "-keystore", str(jks_rsa),
             "-storepass", STORE, "-keypass", KEY)  # fmt: skip
    run_tool("keytool", "-genkeypair", "-alias", "es", "-keyalg", "EC", "-groupname",
             "secp256r1", "-dname", "CN=es", "-storetype", "JKS", "-keystore", str(jks_ec),
             "-storepass", STORE, "-keypass", KEY)  # fmt: skip
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed = ed25519.Ed25519PrivateKey.generate()
    ed_cert = self_signed_certificate(ed, common_name("ed"), 5)
    write_keystore(directory / "ed.p12", "pkcs12", "ed", ed, ed_cert, STORE)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_cert = self_signed_certificate(other, common_name("other"), 5)
    write_keystore(directory / "other.p12", "pkcs12", "other", other, other_cert, STORE)
    password = 'password-env = "STORE_PW"'
    return {
        "RS256": f'keystore = "rsa.p12"\n{password}\nalias = "rs"',
        "PS256": f'keystore = "rsa.jks"\n{password}\nkey-password-env = "KEY_PW"\nalias = "ps"',
        "ES256": f'keystore = "ec.jks"\n{password}\nkey-password-env = "KEY_PW"',
        "EdDSA": f'keystore = "ed.p12"\n{password}',
        "other": f'keystore = "other.p12"\n{password}',
    }


@dataclass(frozen=True)
class Spec:
    """A client: how the server registers it, how the adapter configures it, what it publishes."""

    client_id: str
    registration: dict[str, Any]
    credentials: str  # the [credentials] table of its adapter configuration
    published: str | None = None  # the key table whose ring its jwks_uri serves


def specs(host: LocalHost, keys: dict[str, str]) -> list[Spec]:
    result = []
    for method in ("client_secret_basic", "client_secret_post"):
        registration = {"client_secret": SECRET, "token_endpoint_auth_method": method}
        credentials = f'method = "{method}"\nsecret = "{SECRET}"\n'
        result.append(Spec(method.removeprefix("client_secret_"), registration, credentials))
    odd = {"client_secret": ODD_SECRET, "token_endpoint_auth_method": "client_secret_basic"}
    credentials = f'method = "client_secret_basic"\nsecret = {json.dumps(ODD_SECRET)}\n'
    result.append(Spec("basic-odd", odd, credentials))
    for alg in ("HS256", "HS512"):
        registration = {
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_jwt",
            "token_endpoint_auth_signing_alg": alg,
        }
        credentials = f'method = "client_secret_jwt"\nalgorithm = "{alg}"\nsecret = "{SECRET}"\n'
        result.append(Spec(alg.lower(), registration, credentials))
    # pk-unknown signs with rsa.p12 but publishes other.p12: a key the server does not know.
    for name, alg, signing, published in (
        ("pk-rs256", "RS256", "RS256", "RS256"),
        ("pk-ps256", "PS256", "PS256", "PS256"),
        ("pk-es256", "ES256", "ES256", "ES256"),
        ("pk-eddsa", "EdDSA", "EdDSA", "EdDSA"),
        ("pk-unknown", "RS256", "RS256", "other"),
    ):
        registration = {
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": alg,
            "jwks_uri": host.url(f"/{name}/k_jwks"),
        }
        credentials = (
            f'method = "private_key_jwt"\nalgorithm = "{alg}"\n\n'
            f"[[credentials.keys]]\n{keys[signing]}\n"
        )
        result.append(Spec(name, registration, credentials, keys[published]))
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("token-client")
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_jwk = RSAKey.import_key(server_key).as_dict(private=True)
    server_jwk.update({"kid": "server-rsa", "use": "sig", "alg": "RS256"})
    keys = keystores(directory)
    with LocalHost() as host, pytest.MonkeyPatch.context() as env:
        for name, value in ENV.items():
            env.setenv(name, value)
        plan = specs(host, keys)
        keycloak = {
            "client_id": "pk-keycloak",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": host.url("/pk-keycloak/k_jwks"),
        }
        registrations = [{"client_id": p.client_id, **p.registration} for p in plan] + [keycloak]
        with IdentityServer(
            [{**r, **NO_REDIRECTS} for r in registrations],
            tmp_dir=directory,
            issuer="http://127.0.0.1:{port}/realms/test",
            jwks={"keys": [server_jwk]},
        ) as idp:
            clients: dict[str, Client] = {}
            for spec in plan:
                path = directory / f"{spec.client_id}.toml"
                path.write_text(native(idp.issuer, spec.client_id, spec.credentials))
                clients[spec.client_id] = Client(spec.client_id, path, spec.published is not None)
                if spec.published is not None:
                    # The same credentials, with the published key in place of the signing one.
                    ring_config = directory / f"{spec.client_id}-published.toml"
                    head = spec.credentials.split("[[credentials.keys]]")[0]
                    published = f"{head}[[credentials.keys]]\n{spec.published}\n"
                    ring_config.write_text(native(idp.issuer, spec.client_id, published))
                    ring = load_key_ring(load_config(ring_config))
                    host.serve_json(f"/{spec.client_id}/k_jwks", ring.jwks_bytes)
            kc = Client("pk-keycloak", keycloak_json(directory, idp), True)
            clients[kc.client_id] = kc
            host.serve_json("/pk-keycloak/k_jwks", load_key_ring(load_config(kc.config)).jwks_bytes)
            yield World(idp, host, clients, server_key, directory)


def keycloak_json(directory: Path, idp: IdentityServer) -> Path:
    """A keycloak.json as the admin console exports it, with "token-timeout": 10."""
    base, _, realm = idp.issuer.rpartition("/realms/")
    document = {
        "realm": realm,
        "auth-server-url": base + "/",
        "ssl-required": "external",
        "resource": "pk-keycloak",
        "credentials": {
            "jwt": {
                "client-keystore-file": "rsa.p12",
                "client-keystore-type": "PKCS12",
                "client-keystore-password": "${env.STORE_PW}",
                "client-key-password": "${env.STORE_PW}",
                "client-key-alias": "rs",
                "token-timeout": 10,
            }
        },
        "confidential-port": 0,
    }
    path = directory / "keycloak.json"
    path.write_text(json.dumps(document, indent=2))
    return path


WORKING = ["basic", "basic-odd", "post", "hs256", "hs512", "pk-rs256", "pk-ps256", "pk-es256",
           "pk-eddsa", "pk-keycloak"]  # fmt: skip


def check_token(world: World, client: Client, access_token: str) -> None:
    """The token is a JWT for ``client``; a jwks_uri client's keys were fetched by the server."""
    assert access_token.count(".") == 2, "resource indicators make JWT access tokens"
    with OIDCClient(client.config) as validator:
        claims = validator.validate_access_token(access_token, audience=API)
    assert claims["client_id"] == client.client_id
    if client.uses_jwks_uri:
        fetched = world.host.requests_to(f"/{client.client_id}/k_jwks")
        assert fetched, f"the server never fetched the JWKS of {client.client_id}"


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("client_id", WORKING)
def test_client_credentials_sync(world: World, client_id: str) -> None:
    client = world.clients[client_id]
    with OIDCClient(client.config) as oidc:
        tokens = oidc.client_credentials(resource=API)
    check_token(world, client, tokens.access_token)


@pytest.mark.parametrize("client_id", WORKING)
def test_client_credentials_async(world: World, client_id: str) -> None:
    client = world.clients[client_id]

    async def main() -> str:
        async with AsyncOIDCClient(client.config) as oidc:
            return (await oidc.client_credentials()).access_token

    check_token(world, client, asyncio.run(main()))


@pytest.mark.parametrize("client_id", WORKING)
def test_client_credentials_cli(world: World, client_id: str, cli: CliRunner) -> None:
    result = cli("token", "--config", str(world.clients[client_id].config), env=ENV)
    assert result.returncode == 0, result.stderr + world.idp.logs()[-2000:]
    response = json.loads(result.stdout)
    assert response["token_type"].lower() == "bearer"
    check_token(world, world.clients[client_id], response["access_token"])


def test_keycloak_json_assertion_lifetime(world: World, cli: CliRunner) -> None:
    result = cli("assertion", "--config", str(world.clients["pk-keycloak"].config), env=ENV)
    assert result.returncode == 0, result.stderr
    header, claims = (json.loads(_b64(part)) for part in result.stdout.strip().split(".")[:2])
    assert claims["exp"] - claims["iat"] == 10
    assert claims["aud"] == world.idp.issuer
    assert claims["iss"] == claims["sub"] == "pk-keycloak"
    published = json.loads(world.host.routes["/pk-keycloak/k_jwks"](Seen("GET", "/"))[2])
    assert header["kid"] == published["keys"][0]["kid"]


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- refusals ---------------------------------------------------------------------------------


def test_wrong_secret_is_a_token_error(world: World, tmp_path: Path) -> None:
    wrong = "wrong-" + SECRET
    config = tmp_path / "wrong.toml"
    config.write_text(
        native(world.idp.issuer, "basic", f'method = "client_secret_basic"\nsecret = "{wrong}"\n')
    )
    with OIDCClient(config) as oidc, pytest.raises(TokenError) as raised:
        oidc.client_credentials()
    assert raised.value.error == "invalid_client"
    assert wrong not in str(raised.value)
    assert SECRET not in str(raised.value)


def test_key_the_server_does_not_know(world: World) -> None:
    with (
        OIDCClient(world.clients["pk-unknown"].config) as oidc,
        pytest.raises(TokenError) as raised,
    ):
        oidc.client_credentials()
    assert raised.value.error == "invalid_client"
    assert world.host.requests_to("/pk-unknown/k_jwks"), "the server looked for the key"


def test_expired_assertion(world: World) -> None:
    with OIDCClient(world.clients["pk-rs256"].config) as oidc:
        endpoint = oidc.metadata().token_endpoint
        an_hour_ago = PrivateKeyJwt("pk-rs256", oidc.key_ring, world.idp.issuer,
                                    clock=lambda: time.time() - 3600)  # fmt: skip
        with pytest.raises(TokenError) as raised:
            run(client_credentials(endpoint), oidc.http, an_hour_ago)
    assert raised.value.error == "invalid_client"
    # Its own refusal, not an earlier test's grant.error on the same server (the log line can
    # land after the answer): wait for a line naming this client.
    assert world.idp.wait_until(
        lambda logs: any(
            '"client_id":"pk-rs256"' in line and '"event":"grant.error"' in line
            for line in logs.splitlines()
        ),
        timeout=5,
    )
    refusals = [
        line
        for line in world.idp.logs().splitlines()
        if '"client_id":"pk-rs256"' in line and '"event":"grant.error"' in line
    ]
    assert refusals, "the server logged why it refused"
    assert any("expired" in line or "exp" in line for line in refusals), refusals


def test_unreachable_server_is_a_provider_error_within_the_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    port = silent.getsockname()[1]
    config = tmp_path / "silent.toml"
    config.write_text(
        f'issuer = "http://127.0.0.1:{port}/realms/x"\nclient-id = "a"\n'
        "socket-timeout-millis = 500\nconnection-timeout-millis = 500\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    started = time.monotonic()
    try:
        with OIDCClient(config) as oidc, pytest.raises(ProviderError, match="no answer in time"):
            oidc.client_credentials()
    finally:
        silent.close()
    assert time.monotonic() - started < 3


def test_nothing_listening_is_a_provider_error(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = tmp_path / "closed.toml"
    config.write_text(native(f"http://127.0.0.1:{port}/realms/x", "a",
                             f'method = "client_secret_post"\nsecret = "{SECRET}"\n'))  # fmt: skip
    with OIDCClient(config) as oidc, pytest.raises(ProviderError, match="cannot connect"):
        oidc.client_credentials()


def test_discovery_must_name_the_configured_issuer(world: World, tmp_path: Path) -> None:
    config = tmp_path / "other-issuer.toml"
    config.write_text(native(world.idp.issuer + "/", "basic",
                             f'method = "client_secret_basic"\nsecret = "{SECRET}"\n'))  # fmt: skip
    with OIDCClient(config) as oidc, pytest.raises(ProviderError, match="issuer"):
        oidc.client_credentials()


def test_cli_token_refused_is_one_line_exit_2(world: World, tmp_path: Path, cli: CliRunner) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        native(world.idp.issuer, "post", 'method = "client_secret_post"\nsecret = "nope-nope"\n')
    )
    config.chmod(0o600)  # an inline secret: other users must not read it (else one more line)
    result = cli("token", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "invalid_client" in result.stderr
    assert "nope-nope" not in result.stderr + result.stdout


# --- introspection, revocation -----------------------------------------------------------------


def test_introspect_then_revoke(world: World) -> None:
    with OIDCClient(world.clients["pk-es256"].config) as oidc:
        token = oidc.client_credentials(resource=OPAQUE).access_token
        assert oidc.introspect(token)["active"] is True
        oidc.revoke(token, "access_token")
        assert oidc.introspect(token)["active"] is False


def test_introspect_async(world: World) -> None:
    async def main() -> tuple[bool, bool]:
        async with AsyncOIDCClient(world.clients["hs512"].config) as oidc:
            token = (await oidc.client_credentials(resource=OPAQUE)).access_token
            before = (await oidc.introspect(token))["active"]
            await oidc.revoke(token)
            return before, (await oidc.introspect(token))["active"]

    assert asyncio.run(main()) == (True, False)


# --- service accounts ---------------------------------------------------------------------------


def count_token_requests(oidc: OIDCClient | AsyncOIDCClient, token_endpoint: str) -> list[int]:
    """A one-element counter of POSTs the client really sends to the token endpoint."""
    counter = [0]

    def count(request: httpx.Request) -> None:
        if request.method == "POST" and str(request.url) == token_endpoint:
            counter[0] += 1

    async def count_async(request: httpx.Request) -> None:
        count(request)

    hook = count_async if isinstance(oidc, AsyncOIDCClient) else count
    oidc.http.event_hooks["request"].append(hook)
    return counter


def echo_bearer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/plain"}, seen.headers.get("authorization", "").encode()


def test_fifty_async_callers_cause_one_token_request(world: World) -> None:
    world.host.route("/api/async", echo_bearer)
    endpoint = world.idp.metadata["token_endpoint"]

    async def main() -> tuple[int, set[bytes]]:
        async with AsyncOIDCClient(world.clients["pk-eddsa"].config) as oidc:
            await oidc.metadata()  # discovery is not what this test counts
            counter = count_token_requests(oidc, endpoint)
            auth = oidc.service_account_auth(resource=API)
            async with httpx.AsyncClient(auth=auth) as api:
                responses = await asyncio.gather(
                    *(api.get(world.host.url("/api/async")) for _ in range(50))
                )
            return counter[0], {r.content for r in responses}

    requests, headers = asyncio.run(main())
    assert requests == 1
    assert len(headers) == 1
    assert next(iter(headers)).startswith(b"Bearer ey")


def test_twenty_threads_cause_one_token_request(world: World) -> None:
    world.host.route("/api/threads", echo_bearer)
    with OIDCClient(world.clients["basic"].config) as oidc:
        oidc.metadata()
        counter = count_token_requests(oidc, world.idp.metadata["token_endpoint"])
        auth = oidc.service_account_auth()
        barrier = threading.Barrier(20)
        seen: list[bytes] = []

        def call() -> None:
            with httpx.Client(auth=auth) as api:
                barrier.wait()
                seen.append(api.get(world.host.url("/api/threads")).content)

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert counter[0] == 1
    assert len(seen) == 20
    assert len(set(seen)) == 1


def test_a_refused_token_is_replaced_once(world: World) -> None:
    refused: set[str] = set()

    def api(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        bearer = seen.headers.get("authorization", "")
        if not refused:
            refused.add(bearer)  # the first token is "revoked" downstream
        return (401 if bearer in refused else 200), {}, b""

    world.host.route("/api/refusing", api)
    with OIDCClient(world.clients["post"].config) as oidc:
        auth = oidc.service_account_auth()
        with httpx.Client(auth=auth) as client:
            response = client.get(world.host.url("/api/refusing"))
    assert response.status_code == 200
    assert auth.cache.fetches == 2


def test_unknown_config_method_for_assertion(world: World, cli: CliRunner) -> None:
    result = cli("assertion", "--config", str(world.clients["basic"].config))
    assert result.returncode == 2
    assert "uses no client assertion" in result.stderr


def test_config_error_surfaces_before_any_request(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text(
        native("https://sso.example.com/r", "a", 'method = "private_key_jwt"\n')
        + '[[credentials.keys]]\nkeystore = "none.p12"\n'
    )
    with pytest.raises(ConfigError, match=r"none\.p12"):
        OIDCClient(config)


def test_token_endpoint_audience_and_thumbprint_headers(world: World, tmp_path: Path) -> None:
    """The same key, configured for servers that want aud = token endpoint and x5t headers."""
    base = world.clients["pk-rs256"].config.read_text()
    config = tmp_path / "aud.toml"
    config.write_text(
        base.replace(
            'method = "private_key_jwt"',
            'method = "private_key_jwt"\nassertion-audience = "token-endpoint"\n'
            "assertion-x5t = true\nassertion-x5t-s256 = true",
        ).replace('keystore = "', f'keystore = "{world.directory}/')
    )
    with OIDCClient(config) as oidc:
        tokens = oidc.client_credentials()
        header, claims = (json.loads(_b64(p)) for p in oidc.client_assertion().split(".")[:2])
    assert tokens.access_token.count(".") == 2
    assert claims["aud"] == world.idp.metadata["token_endpoint"]
    assert set(header) == {"alg", "kid", "x5t", "x5t#S256"}
