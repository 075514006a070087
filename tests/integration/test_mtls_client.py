"""mTLS client authentication (RFC 8705, docs/fapi.md#mtls) by the adapter itself, against the
test identity server behind a real nginx that asks for client certificates
(tests/idp_server.py's ``behind_mtls_nginx``): ``tls_client_auth`` with a JKS keystore made by
``keytool`` (a certificate from the test CA), ``self_signed_tls_client_auth`` with a PKCS#12
made by ``openssl``; each gets a token bound to its certificate (``cnf.x5t#S256``); a key
without its certificate is refused at start in one line."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from adapter import ConfigError, OIDCClient
from tests.conftest import require_tool, run_tool
from tests.idp_server import IdentityServer, behind_mtls_nginx
from tests.reverse_proxy import ReverseProxy, TestCA, certificate_jwk, certificate_thumbprint
from tests.web_client import client_api

API = "urn:oidc-adapter:test-api"
PASSWORD = "mtls-keystore-password-7"
CLIENTS: dict[str, Any] = {"grant_types": ["client_credentials"], "redirect_uris": [],
                           "response_types": []}  # fmt: skip


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def pkcs12(directory: Path, name: str, cert: Path, key: Path) -> Path:
    """The certificate and key as a PKCS#12 keystore, made by openssl."""
    out = directory / f"{name}.p12"
    run_tool("openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
             "-name", name, "-out", str(out), "-passout", f"pass:{PASSWORD}")  # fmt: skip
    return out


def jks(directory: Path, name: str, cert: Path, key: Path) -> Path:
    """The certificate and key as a JKS keystore, converted by keytool."""
    source = pkcs12(directory, f"{name}-source", cert, key)
    out = directory / f"{name}.jks"
    run_tool(require_tool("keytool"), "-importkeystore", "-noprompt",
             "-srckeystore", str(source), "-srcstoretype", "PKCS12", "-srcstorepass", PASSWORD,
             "-destkeystore", str(out), "-deststoretype", "JKS", "-deststorepass", PASSWORD,
             "-destkeypass", PASSWORD)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def mtls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]]]:
    directory = tmp_path_factory.mktemp("mtls")
    ca = TestCA(directory / "tls")
    certificates = {
        "bank": ca.client_certificate("bank", "/O=Test/CN=bank-app", key_type="rsa"),
        "self": ca.self_signed_client_certificate("self", "/O=Test/CN=self-app"),
    }
    clients = [
        {"client_id": "bank-app", "token_endpoint_auth_method": "tls_client_auth",
         "tls_client_auth_subject_dn": "CN=bank-app,O=Test",
         "tls_client_certificate_bound_access_tokens": True, **CLIENTS},
        {"client_id": "unbound-app", "token_endpoint_auth_method": "tls_client_auth",
         "tls_client_auth_subject_dn": "CN=bank-app,O=Test",
         "tls_client_certificate_bound_access_tokens": False, **CLIENTS},
        {"client_id": "self-app", "token_endpoint_auth_method": "self_signed_tls_client_auth",
         "jwks": {"keys": [certificate_jwk(certificates["self"][0])]},
         "tls_client_certificate_bound_access_tokens": True, **CLIENTS},
    ]  # fmt: skip
    proxy: ReverseProxy
    with behind_mtls_nginx(directory / "idp", ca, clients) as (idp, proxy):
        assert proxy.url == idp.issuer
        yield idp, ca, certificates


def config(directory: Path, idp: IdentityServer, ca: TestCA, client_id: str, method: str,
           keystore: Path) -> Path:  # fmt: skip
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "{client_id}"\n'
        f'truststore = "{ca.cert}"\ntruststore-type = "PEM"\n'
        f'[credentials]\nmethod = "{method}"\n'
        f'[[credentials.keys]]\nkeystore = "{keystore.name}"\npassword-env = "MTLS_PASSWORD"\n'
    )
    path.chmod(0o600)
    return path


def test_tls_client_auth_with_a_jks_keystore_gets_a_certificate_bound_token(
    mtls: tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idp, ca, certificates = mtls
    cert, key = certificates["bank"]
    store = jks(tmp_path, "bank", cert, key)
    monkeypatch.setenv("MTLS_PASSWORD", PASSWORD)
    client = OIDCClient(config(tmp_path, idp, ca, "bank-app", "tls_client_auth", store))
    token = client.client_credentials(resource=API).access_token
    assert claims(token)["cnf"] == {"x5t#S256": certificate_thumbprint(cert)}
    client.close()


def test_self_signed_tls_client_auth_with_a_pkcs12_keystore(
    mtls: tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idp, ca, certificates = mtls
    cert, key = certificates["self"]
    store = pkcs12(tmp_path, "self", cert, key)
    monkeypatch.setenv("MTLS_PASSWORD", PASSWORD)
    path = config(tmp_path, idp, ca, "self-app", "self_signed_tls_client_auth", store)
    client = OIDCClient(path)
    token = client.client_credentials(resource=API).access_token
    assert claims(token)["cnf"] == {"x5t#S256": certificate_thumbprint(cert)}
    client.close()


def test_a_key_without_its_certificate_is_refused_at_start(
    mtls: tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]], tmp_path: Path
) -> None:
    idp, ca, certificates = mtls
    _, key = certificates["self"]
    bare = tmp_path / "bare.pem"
    bare.write_bytes(key.read_bytes())
    bare.chmod(0o600)
    path = tmp_path / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "self-app"\n'
        f'truststore = "{ca.cert}"\ntruststore-type = "PEM"\n'
        '[credentials]\nmethod = "self_signed_tls_client_auth"\n'
        '[[credentials.keys]]\nkeystore = "bare.pem"\n'
    )
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="mTLS needs the key's certificate"):
        OIDCClient(path)


def test_a_certificate_bound_token_passes_only_with_its_forwarded_certificate(
    mtls: tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API behind a TLS terminator that forwards the client certificate (nginx's
    ``$ssl_client_escaped_cert``): the bound token passes with that certificate from the
    terminator's address; without it, with another one, or from anyone else, 401."""
    import httpx

    from adapter import OIDCWSGIMiddleware

    idp, ca, certificates = mtls
    cert, key = certificates["bank"]
    monkeypatch.setenv("MTLS_PASSWORD", PASSWORD)
    store = jks(tmp_path, "bank", cert, key)
    client = OIDCClient(config(tmp_path, idp, ca, "bank-app", "tls_client_auth", store))
    token = client.client_credentials(resource=API).access_token
    client.close()

    path = tmp_path / "api.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "bank-app"\nbearer-only = true\n'
        f'truststore = "{ca.cert}"\ntruststore-type = "PEM"\ntoken-audiences = ["{API}"]\n'
        'client-certificate-header = "X-SSL-Client-Cert"\n'
        'client-certificate-proxies = ["127.0.0.0/8"]\n'
    )
    path.chmod(0o600)
    served = OIDCWSGIMiddleware(client_api, path)

    def call(certificate: Path | None, peer: str = "127.0.0.1") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if certificate is not None:
            headers["X-SSL-Client-Cert"] = quote(certificate.read_text(), safe="")
        transport = httpx.WSGITransport(app=served, remote_addr=peer)
        with httpx.Client(transport=transport, base_url="http://127.0.0.1:8765") as http:
            return http.get("/api/reports", headers=headers)

    assert call(cert).json() == {"client": "bank-app"}
    assert call(cert).status_code == 200  # checked again, never remembered without it
    assert call(None).status_code == 401
    assert call(certificates["self"][0]).status_code == 401  # another certificate
    assert call(cert, peer="10.9.8.7").status_code == 401  # the header from anyone else
    served.close()


def test_under_the_profile_an_unbound_token_is_refused(
    mtls: tuple[IdentityServer, TestCA, dict[str, tuple[Path, Path]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``profile = "fapi2"`` with mTLS counts on the certificate to bind the tokens: a server
    that did not bind them (the client's setting off) is refused, never believed."""
    from adapter import ProviderError

    idp, ca, certificates = mtls
    cert, key = certificates["bank"]
    store = jks(tmp_path, "bank", cert, key)
    monkeypatch.setenv("MTLS_PASSWORD", PASSWORD)
    for client_id, bound in (("unbound-app", False), ("bank-app", True)):
        path = config(tmp_path, idp, ca, client_id, "tls_client_auth", store)
        path.write_text('profile = "fapi2"\n' + path.read_text())
        client = OIDCClient(path)
        if bound:
            token = client.client_credentials(resource=API).access_token
            assert claims(token)["cnf"] == {"x5t#S256": certificate_thumbprint(cert)}
        else:
            with pytest.raises(ProviderError, match="not bound to the client certificate"):
                client.client_credentials(resource=API)
        client.close()
