"""The mutual-TLS test identity server (RFC 8705) itself, with plain httpx: no adapter code.

A real nginx ends TLS on https://127.0.0.1:PORT, asks every client for a certificate, verifies
it against the test CA (openssl) and forwards it, verified or not, to the identity server
(tests/idp, oidc-provider's mTLS feature), whose issuer is that nginx URL. A client registered
for ``tls_client_auth`` must show a certificate from the CA with its registered subject; one
registered for ``self_signed_tls_client_auth`` the self-signed certificate in its ``jwks``.
Either way the access token is bound to the certificate: ``cnf["x5t#S256"]``.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.idp_server import IdentityServer, behind_mtls_nginx
from tests.reverse_proxy import (
    ReverseProxy,
    TestCA,
    certificate_jwk,
    certificate_thumbprint,
)

API = "urn:oidc-adapter:test-api"
SUBJECT_DN = "CN=bank-app,O=Test"  # RFC 4514: the openssl subject /O=Test/CN=bank-app
NO_REDIRECTS: dict[str, Any] = {
    "grant_types": ["client_credentials"],
    "redirect_uris": [],
    "response_types": [],
}


@dataclass(frozen=True)
class Certificates:
    ca: TestCA
    bank: tuple[Path, Path]  # from the CA, subject CN=bank-app,O=Test
    other_subject: tuple[Path, Path]  # from the CA, CN=other-app,O=Test
    foreign: tuple[Path, Path]  # CN=bank-app,O=Test, but from another CA
    self_signed: tuple[Path, Path]  # registered for self-app
    self_signed_bank: tuple[Path, Path]  # self-signed, subject CN=bank-app,O=Test
    stranger: tuple[Path, Path]  # self-signed, registered nowhere


@dataclass(frozen=True)
class Setup:
    idp: IdentityServer
    proxy: ReverseProxy
    certs: Certificates


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("mtls")
    ca = TestCA(directory / "tls")
    other_ca = TestCA(directory / "other-ca")
    certs = Certificates(
        ca=ca,
        bank=ca.client_certificate("bank", "/O=Test/CN=bank-app"),
        other_subject=ca.client_certificate("other", "/O=Test/CN=other-app", key_type="rsa"),
        foreign=other_ca.client_certificate("foreign", "/O=Test/CN=bank-app"),
        self_signed=ca.self_signed_client_certificate("self", "/O=Test/CN=self-app"),
        self_signed_bank=ca.self_signed_client_certificate("self-bank", "/O=Test/CN=bank-app"),
        stranger=ca.self_signed_client_certificate("stranger", "/O=Test/CN=self-app"),
    )
    clients = [
        {
            "client_id": "bank-app",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": SUBJECT_DN,
            "tls_client_certificate_bound_access_tokens": True,
            **NO_REDIRECTS,
        },
        {
            "client_id": "self-app",
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": {"keys": [certificate_jwk(certs.self_signed[0])]},
            "tls_client_certificate_bound_access_tokens": True,
            **NO_REDIRECTS,
        },
    ]
    with behind_mtls_nginx(directory / "idp", ca, clients) as (idp, proxy):
        yield Setup(idp, proxy, certs)


def client(setup: Setup, cert: tuple[Path, Path] | None) -> httpx.Client:
    """An httpx client trusting the test CA, showing ``cert`` (certificate, key) if given."""
    context = ssl.create_default_context(cafile=str(setup.certs.ca.cert))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(verify=context, timeout=10)


def token_request(
    setup: Setup,
    client_id: str,
    cert: tuple[Path, Path] | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    with client(setup, cert) as http:
        return http.post(
            setup.idp.metadata["token_endpoint"],
            data={"grant_type": "client_credentials", "client_id": client_id},
            headers=headers,
        )


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refused(setup: Setup, answer: httpx.Response, reason: str, mark: int) -> None:
    """``answer`` is invalid_client, and the server logged ``reason`` for it."""
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    logs = setup.idp.settled_logs()[mark:]
    assert reason in logs, logs


def nginx_verdicts(setup: Setup, mark: int) -> list[str]:
    """nginx's access-log lines since ``mark`` for token requests that showed a certificate.

    nginx logs a request just after it sent the answer, so a test that has its answer may
    read the log too early. The identity server's marker request (``settled_logs``) goes
    through the same nginx, whose one worker handles it only after it finished (and logged)
    every earlier request. The marker shows no certificate (``verify=NONE``): left out."""
    setup.idp.settled_logs()
    lines = setup.proxy.access_log()[mark:].splitlines()
    return [line for line in lines if "/token" in line and "verify=NONE" not in line]


def test_discovery_is_at_the_nginx_url_with_mtls(setup: Setup) -> None:
    metadata = setup.idp.metadata
    assert setup.idp.issuer == setup.proxy.url
    assert metadata["issuer"] == setup.proxy.url
    assert metadata["token_endpoint"] == f"{setup.proxy.url}/token"
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    assert metadata["tls_client_certificate_bound_access_tokens"] is True


def test_tls_client_auth_gets_a_certificate_bound_token(setup: Setup) -> None:
    mark = len(setup.proxy.access_log())
    answer = token_request(setup, "bank-app", setup.certs.bank)
    assert answer.status_code == 200, answer.text
    access = claims(answer.json()["access_token"])
    assert access["client_id"] == "bank-app"
    assert access["aud"] == API
    assert access["iss"] == setup.proxy.url
    assert access["cnf"] == {"x5t#S256": certificate_thumbprint(setup.certs.bank[0])}
    (line,) = nginx_verdicts(setup, mark)
    assert 'verify=SUCCESS subject="CN=bank-app,O=Test"' in line


def test_tls_client_auth_without_a_certificate_is_refused(setup: Setup) -> None:
    mark = len(setup.idp.logs())
    answer = token_request(setup, "bank-app", None)
    refused(setup, answer, "client certificate was not provided", mark)


def test_tls_client_auth_with_another_subject_is_refused(setup: Setup) -> None:
    mark = len(setup.idp.logs())
    answer = token_request(setup, "bank-app", setup.certs.other_subject)
    refused(setup, answer, "certificate subject value does not match the registered one", mark)
    assert '"event":"mtls.subject_mismatch"' in setup.idp.logs()[mark:]


@pytest.mark.parametrize("which", ["self_signed_bank", "foreign"])
def test_tls_client_auth_needs_a_certificate_from_the_ca(setup: Setup, which: str) -> None:
    """The right subject, but self-signed or from another CA: nginx passes it on unverified."""
    mark, nginx_mark = len(setup.idp.logs()), len(setup.proxy.access_log())
    answer = token_request(setup, "bank-app", getattr(setup.certs, which))
    refused(setup, answer, "client certificate was not verified", mark)
    (line,) = nginx_verdicts(setup, nginx_mark)
    assert "verify=FAILED:" in line, line


def test_the_certificate_headers_come_from_nginx_only(setup: Setup) -> None:
    """A client claiming a verified certificate in nginx's own headers gets nowhere."""
    pem = setup.certs.bank[0].read_text()
    forged = {"X-SSL-Client-Cert": quote(pem, safe=""), "X-SSL-Client-Verify": "SUCCESS"}
    mark = len(setup.idp.logs())
    answer = token_request(setup, "bank-app", None, headers=forged)
    refused(setup, answer, "client certificate was not provided", mark)


def test_self_signed_tls_client_auth_gets_a_certificate_bound_token(setup: Setup) -> None:
    mark = len(setup.proxy.access_log())
    answer = token_request(setup, "self-app", setup.certs.self_signed)
    assert answer.status_code == 200, answer.text
    access = claims(answer.json()["access_token"])
    assert access["client_id"] == "self-app"
    assert access["aud"] == API
    assert access["cnf"] == {"x5t#S256": certificate_thumbprint(setup.certs.self_signed[0])}
    (line,) = nginx_verdicts(setup, mark)
    assert "verify=FAILED:self-signed certificate" in line, line


@pytest.mark.parametrize("which", ["stranger", "bank"])
def test_self_signed_tls_client_auth_with_another_certificate_is_refused(
    setup: Setup, which: str
) -> None:
    """Same subject and key type but not the registered certificate; or a CA-verified one."""
    mark = len(setup.idp.logs())
    answer = token_request(setup, "self-app", getattr(setup.certs, which))
    refused(setup, answer, "unregistered client certificate provided", mark)


def test_self_signed_tls_client_auth_without_a_certificate_is_refused(setup: Setup) -> None:
    mark = len(setup.idp.logs())
    answer = token_request(setup, "self-app", None)
    refused(setup, answer, "client certificate was not provided", mark)
