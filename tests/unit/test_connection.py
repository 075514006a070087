"""Connection settings one function at a time: parsing (truststore, TLS switches, backchannel-url,
proxy), the truststore reader, the back-channel rewrite, the TLS context, the TLS failure line.

The real server calls over TLS, through the internal listener and a proxy are in
tests/integration/test_trust.py.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from adapter import ConfigError, load_config
from adapter.config.secret import Secret
from adapter.keys.keyring import KeyRing
from adapter.protocol._connection import Backchannel, Connection
from adapter.protocol._truststore import read_truststore
from adapter.protocol.flows import _transport_error
from adapter.state import AdapterState

ISSUER = "https://sso.example.com/realms/demo"
PASSWORD = "trust-Passw0rd-5e1d"
CLIENT = {"issuer": ISSUER, "client-id": "app", "public-client": True}


def config(**fields: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these fields is unknown
        return load_config({**CLIENT, **fields}, base_dir=Path("/etc/app"))


def ca_certificate(name: str = "Test CA") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


# --- parsing ----------------------------------------------------------------------------------


def test_truststore_fields_are_read_with_a_secret_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRUST_PW", PASSWORD)
    loaded = config(
        truststore="certs/ca.jks",
        **{"truststore-password-env": "TRUST_PW", "truststore-type": "jks"},
    )

    assert loaded.truststore == Path("/etc/app/certs/ca.jks")
    assert loaded.truststore_password == Secret(PASSWORD)
    assert loaded.truststore_type == "JKS"
    assert loaded.unused_fields == ()
    assert PASSWORD not in repr(loaded)


def test_a_truststore_password_without_a_truststore_is_listed_as_not_used() -> None:
    loaded = config(**{"truststore-password": PASSWORD, "truststore-type": "PEM"})

    assert loaded.truststore_password is None
    assert loaded.unused_fields == ("truststore-password", "truststore-type")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"truststore": "t.jks", "truststore-type": "BKS"},
         "truststore-type: 'BKS' is not valid; use one of PKCS12, JKS, PEM"),
        ({"truststore": "t.jks", "truststore-password": PASSWORD, "truststore-password-env": "X"},
         "truststore-password: give only one of "),
        ({"truststore": "t.jks", "disable-trust-manager": True},
         "disable-trust-manager: turns certificate checks off, so the truststore would not be "
         "used; remove one of them"),
        ({"disable-trust-manager": "maybe"}, "disable-trust-manager: must be true or false"),
        ({"disable-trust-manager": True},
         "disable-trust-manager: turns TLS checks off for sso.example.com, which is not this "
         "machine; trust its CA with truststore instead, or set i-understand-tls-is-disabled = "
         "true"),
        ({"allow-any-hostname": True}, "allow-any-hostname: turns TLS checks off for sso.exam"),
        ({"backchannel-url": "keycloak:8080"}, "backchannel-url: 'keycloak:8080' is not an http"),
        ({"backchannel-url": "http://kc.internal.example/realms/demo?x=1"},
         "backchannel-url: must not contain a query or fragment"),
        ({"backchannel-url": "http://admin:" + PASSWORD + "@10.0.0.5:8080"},
         "backchannel-url: must not contain user:password@; remove the credentials"),
        ({"backchannel-url": "http://keycloak:8080"},
         "backchannel-url: plain http to keycloak is refused with ssl-required = 'external'"),
        ({"proxy": "http://proxy:3128", "proxy-url": "http://proxy:3128"},
         "proxy: give proxy or proxy-url (Keycloak's name), not both"),
        ({"proxy-url": "http://bob:" + PASSWORD + "@proxy:3128"},
         "proxy-url: must not contain user:password@; a proxy that asks for credentials is not "
         "supported"),
        ({"proxy": "socks5://proxy:1080"},
         "proxy: 'socks5://proxy:1080' is not an http(s) proxy URL; write http://proxy.exampl"),
        ({"proxy": "http://proxy:3128/path"}, "proxy: 'http://proxy:3128/path' is not an http"),
        ({"proxy": "http://proxy:port"}, "proxy: is not a valid URL; write http://proxy.exampl"),
    ],
)  # fmt: skip
def test_connection_settings_refused_in_one_line_naming_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**fields)

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("name", ["disable-trust-manager", "allow-any-hostname"])
def test_turning_tls_checks_off_is_refused_for_any_remote_host_without_the_flag(
    name: str,
) -> None:
    loopback = "http://127.0.0.1:8080/realms/demo"
    assert config(issuer=loopback, **{name: True}).issuer == loopback
    assert config(issuer="https://localhost:8443/r", **{name: True})
    assert config(issuer="https://[::1]:8443/r", **{name: True})
    with pytest.raises(ConfigError, match=rf"^{name}: turns TLS checks off for kc\.internal,"):
        config(issuer=loopback, **{name: True, "backchannel-url": "https://kc.internal"})
    with pytest.raises(ConfigError, match=rf"^{name}: turns TLS checks off for sso\.example\.com"):
        config(issuer=loopback, **{name: True, "endpoint-hosts": ["sso.example.com"]})

    understood = config(**{name: True, "i-understand-tls-is-disabled": True})

    assert getattr(understood, name.replace("-", "_")) is True


def test_keycloak_proxy_url_and_native_proxy_are_the_same_setting() -> None:
    assert config(**{"proxy-url": "http://proxy.example.com:3128"}).proxy == (
        "http://proxy.example.com:3128"
    )
    assert config(proxy="https://proxy.example.com").proxy == "https://proxy.example.com"
    assert config().unused_fields == ()


def test_a_reload_keeps_the_connection_it_started_with() -> None:
    first = AdapterState.load(config(), key_ring=KeyRing(()))
    changes = {
        "truststore": {"truststore": "ca.pem"},
        "backchannel-url": {"backchannel-url": "https://kc.internal.example"},
        "proxy": {"proxy": "http://proxy:3128"},
        "allow-any-hostname": {"allow-any-hostname": True, "i-understand-tls-is-disabled": True},
    }
    for name, fields in changes.items():
        with pytest.raises(ConfigError, match=f"^{name}: changed; a reload keeps"):
            AdapterState.load(config(**fields), key_ring=first.ring, previous=first)
    assert AdapterState.load(config(), key_ring=first.ring, previous=first)


# --- the truststore reader ------------------------------------------------------------------


def test_a_pem_bundle_gives_every_certificate_and_other_blocks_are_ignored(tmp_path: Path) -> None:
    first, second = ca_certificate("one"), ca_certificate("two")
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "bundle.crt"  # the extension says nothing: the content does
    path.write_bytes(pem(first) + key + pem(second))

    store = read_truststore(path)

    assert store.type == "PEM"
    assert store.certificates == (first, second)
    assert store.pem().encode() == pem(first, second)


def test_jks_and_pkcs12_pass_for_each_other_as_in_java(tmp_path: Path) -> None:
    certificate = ca_certificate()
    path = tmp_path / "truststore.jks"  # what keytool -keystore truststore.jks writes: PKCS#12
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"ca", None, None, [certificate],
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )  # fmt: skip

    store = read_truststore(path, Secret(PASSWORD), declared="JKS")

    assert (store.type, store.certificates) == ("PKCS12", (certificate,))
    with pytest.raises(
        ConfigError, match=r"^truststore-type: .* holds a PKCS12 truststore, not PEM"
    ):
        read_truststore(path, Secret(PASSWORD), declared="PEM")
    with pytest.raises(ConfigError, match=r"^truststore-password: missing; the PKCS#12 trust"):
        read_truststore(path)


def test_a_jks_truststore_gives_its_trusted_certificates(tmp_path: Path) -> None:
    jks = pytest.importorskip("jks")
    certificate = ca_certificate()
    der = certificate.public_bytes(serialization.Encoding.DER)
    store_bytes = jks.KeyStore.new("jks", [jks.TrustedCertEntry.new("ca", der)]).saves(PASSWORD)
    path = tmp_path / "ca.truststore"
    path.write_bytes(store_bytes)

    assert read_truststore(path, Secret(PASSWORD)).certificates == (certificate,)
    with pytest.raises(ConfigError, match=r"^truststore-password: does not open .*wrong password"):
        read_truststore(path, Secret("wrong"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a JKS, PKCS#12 or PEM truststore; check the file"),
        (b"plain text\n", "is not a JKS, PKCS#12 or PEM truststore; check the file"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "holds no certificate; import the server's CA"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
         "is corrupt or in an unsupported format"),
        (b"\x30\x03\x02\x01\x03", "is corrupt or in an unsupported format"),
        (b"\xfe\xed\xfe\xed\x00", "is corrupt or in an unsupported format"),
    ],
)  # fmt: skip
def test_an_unusable_truststore_is_one_line_naming_truststore(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(content)

    with pytest.raises(ConfigError) as caught:
        read_truststore(path, Secret(PASSWORD))

    assert str(caught.value).startswith(f"truststore: {path} {message}")
    assert "\n" not in str(caught.value)


# --- the TLS context ------------------------------------------------------------------------


def test_a_truststore_replaces_the_default_cas(tmp_path: Path) -> None:
    certificate = ca_certificate("Only CA")
    path = tmp_path / "ca.pem"
    path.write_bytes(pem(certificate))

    connection = Connection.from_config(config(truststore=str(path)))

    assert isinstance(connection.verify, ssl.SSLContext)
    assert [dict(pair[0] for pair in ca["subject"]) for ca in connection.verify.get_ca_certs()] == [
        {"commonName": "Only CA"}
    ]
    assert connection.verify.check_hostname is True
    assert connection.verify.verify_mode == ssl.CERT_REQUIRED


def test_the_tls_switches_make_the_verify_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loopback = "https://127.0.0.1:8443/r"
    assert Connection.from_config(config()).verify is True  # httpx's default CAs
    assert Connection.from_config(config()).customised is False

    off = Connection.from_config(config(issuer=loopback, **{"disable-trust-manager": True}))
    assert off.verify is False
    any_name = Connection.from_config(config(issuer=loopback, **{"allow-any-hostname": True}))
    assert isinstance(any_name.verify, ssl.SSLContext)
    assert any_name.verify.check_hostname is False
    assert any_name.verify.verify_mode == ssl.CERT_REQUIRED  # the chain is still checked
    names = [r.name for r in caplog.records if r.levelname == "WARNING"]
    assert [name.split(".")[0] for name in names] == ["adapter", "adapter"]  # or its children


# --- the back channel -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("internal", "url", "expected"),
    [
        ("http://keycloak:8080", f"{ISSUER}/protocol/openid-connect/token",
         "http://keycloak:8080/realms/demo/protocol/openid-connect/token"),
        ("http://keycloak:8080/", "https://sso.example.com:443/admin?x=1",
         "http://keycloak:8080/admin?x=1"),
        ("http://10.0.0.5/auth/realms/demo", f"{ISSUER}/.well-known/openid-configuration",
         "http://10.0.0.5/auth/realms/demo/.well-known/openid-configuration"),
        ("http://10.0.0.5/auth/realms/demo/", f"{ISSUER}?a=b", "http://10.0.0.5/auth/realms/demo?a=b"),
        ("https://[fd00::5]:8443", f"{ISSUER}/jwks", "https://[fd00::5]:8443/realms/demo/jwks"),
        # Not the issuer's origin, or (with a path) not under the issuer: sent as they are.
        ("http://keycloak:8080", "http://sso.example.com/realms/demo/token", None),
        ("http://keycloak:8080", "https://sso.example.com:8443/realms/demo/token", None),
        ("http://keycloak:8080", "https://other.example.com/realms/demo/token", None),
        ("http://10.0.0.5/realms/demo", "https://sso.example.com/realms/demo2/token", None),
        ("http://10.0.0.5/realms/demo", "https://sso.example.com/admin", None),
    ],
)  # fmt: skip
def test_the_back_channel_rewrites_only_requests_for_the_issuer(
    internal: str, url: str, expected: str | None
) -> None:
    rewritten = Backchannel(ISSUER, internal).target(httpx.URL(url))

    assert (str(rewritten) if rewritten is not None else None) == expected


def test_the_rewrite_hook_moves_the_request_and_its_host_header() -> None:
    backchannel = Backchannel(ISSUER, "http://keycloak:8080")
    request = httpx.Request("POST", f"{ISSUER}/token", content=b"grant_type=x")

    backchannel.rewrite(request)

    assert str(request.url) == "http://keycloak:8080/realms/demo/token"
    assert request.headers["Host"] == "keycloak:8080"
    assert request.content == b"grant_type=x"


def test_discovery_may_name_endpoints_on_the_back_channel_host() -> None:
    assert Backchannel(ISSUER, "http://keycloak").endpoint_host == "keycloak:80"
    assert Backchannel(ISSUER, "https://[fd00::5]:8443/x").endpoint_host == "[fd00::5]:8443"
    connection = Connection.from_config(config(**{"backchannel-url": "http://10.0.0.5:8080"}))
    assert connection.endpoint_hosts(("sso2.example.com",)) == (
        "sso2.example.com",
        "10.0.0.5:8080",
    )


# --- the TLS failure line -------------------------------------------------------------------


def _tls_error(code: int, message: str) -> httpx.ConnectError:
    """An httpx error as httpx raises it: httpx -> httpcore -> ssl, each the cause of the next."""
    tls = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    tls.verify_code, tls.verify_message = code, message
    inner = httpcore.ConnectError(str(tls))
    inner.__cause__ = tls
    outer = httpx.ConnectError(str(inner))
    outer.__cause__ = inner
    return outer


def test_a_certificate_failure_names_the_truststore_in_one_line() -> None:
    request = httpx.Request("GET", f"{ISSUER}/.well-known/openid-configuration?x=1")

    error = _transport_error(request, _tls_error(20, "unable to get local issuer certificate"))

    assert str(error) == (
        f"certificate verify failed for {ISSUER}/.well-known/openid-configuration (unable to get "
        "local issuer certificate); trust the server's CA with truststore = a PEM, JKS or "
        "PKCS#12 file that holds it"
    )


def test_a_host_name_failure_names_the_certificate_not_the_truststore() -> None:
    request = httpx.Request("GET", f"{ISSUER}/token")
    mismatch = "Hostname mismatch, certificate is not valid for 'sso.example.com'."

    error = str(_transport_error(request, _tls_error(62, mismatch)))

    assert error.startswith(f"certificate verify failed for {ISSUER}/token (Hostname mismatch")
    assert "give the server a certificate for the name the adapter calls it by" in error


def test_an_expired_certificate_is_the_servers_to_renew() -> None:
    request = httpx.Request("GET", f"{ISSUER}/token")

    error = str(_transport_error(request, _tls_error(10, "certificate has expired")))

    assert error == (
        f"certificate verify failed for {ISSUER}/token (certificate has expired); the server "
        "must renew its certificate (or check this machine's clock)"
    )


def test_the_failure_names_the_url_the_request_went_to() -> None:
    flow_request = httpx.Request("GET", f"{ISSUER}/token")
    sent = httpx.Request("GET", "http://keycloak:8080/realms/demo/token")
    error = httpx.ConnectError("refused", request=sent)

    message = str(_transport_error(flow_request, error))

    assert message == "http://keycloak:8080/realms/demo/token: cannot connect (ConnectError)"
