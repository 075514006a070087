"""A real nginx in front of an app, terminating TLS, for the deployment tests.

    ca = TestCA(tmp_path)                     # a CA and a 127.0.0.1 server certificate (openssl)
    with ReverseProxy(tmp_path, ca, {"/myapp/": app_port}) as proxy:
        proxy.url                              # https://127.0.0.1:<port>

Debian's nginx runs unprivileged-style: its own config, pid, logs and temp paths in the test's
directory, one worker, ``daemon off``, listening on 127.0.0.1 only. It passes the usual
``X-Forwarded-*`` headers (``X-Forwarded-Prefix`` too) and strips the prefix, as a typical
ingress does.

With ``client_certificates=True`` it also asks every client for a certificate (mutual TLS,
RFC 8705) and passes it on, as the identity server's mTLS mode reads it (tests/idp/server.mjs
``mtls``; tests/idp_server.py's ``behind_mtls_nginx`` puts the two together):

    ssl_verify_client optional_no_ca;   # any certificate, or none, gets through ...
    ssl_client_certificate ca.pem;      # ... but one from the test CA is verified: SUCCESS
    X-SSL-Client-Cert: $ssl_client_escaped_cert   (the URL-escaped PEM; absent without one)
    X-SSL-Client-Verify: $ssl_client_verify       (SUCCESS, FAILED:<reason> or NONE)

Both headers are always set by nginx, never taken from the client. A self-signed certificate
arrives as ``FAILED:self-signed certificate`` (``optional`` would refuse the request: 400), one
from another CA as ``FAILED:unable to verify the first certificate``. The access log then
carries ``verify=<$ssl_client_verify> subject="<$ssl_client_s_dn>"`` per request.

``TestCA.client_certificate`` and ``TestCA.self_signed_client_certificate`` make client
certificates (clientAuth); ``certificate_jwk`` and ``certificate_thumbprint`` give what a client
registers for ``self_signed_tls_client_auth`` and what a bound token's ``cnf`` holds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import require_tool, run_tool


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestCA:
    """A certificate authority and a server certificate for 127.0.0.1, made by openssl."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.cert = directory / "ca.pem"
        self.key = directory / "ca.key"
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        run_tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=oidc-adapter test CA", "-keyout", str(self.key),
                 "-out", str(self.cert))  # fmt: skip
        request = directory / "server.csr"
        run_tool("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", str(self.server_key), "-out", str(request))  # fmt: skip
        extensions = directory / "server.ext"
        extensions.write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
        run_tool("openssl", "x509", "-req", "-in", str(request), "-CA", str(self.cert),
                 "-CAkey", str(self.key), "-CAcreateserial", "-days", "2",
                 "-extfile", str(extensions), "-out", str(self.server_cert))  # fmt: skip
        self.directory = directory

    def client_certificate(
        self, name: str, subject: str = "/O=Test/CN=bank-app", key_type: str = "ec"
    ) -> tuple[Path, Path]:
        """A client certificate (extendedKeyUsage clientAuth) signed by this CA, valid for two
        days: the PEM files ``(<name>.pem, <name>.key)``. ``subject`` is in openssl's form,
        most significant RDN first: ``/O=Test/CN=bank-app`` is ``CN=bank-app,O=Test`` in
        RFC 4514 (``tls_client_auth_subject_dn``). ``key_type``: ``ec`` (P-256) or ``rsa``."""
        request, key, extensions = self._client_request(name, subject, key_type)
        cert = self.directory / f"{name}.pem"
        run_tool("openssl", "x509", "-req", "-in", str(request), "-CA", str(self.cert),
                 "-CAkey", str(self.key), "-CAcreateserial", "-days", "2",
                 "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
        return cert, key

    def self_signed_client_certificate(
        self, name: str, subject: str = "/O=Test/CN=self-app", key_type: str = "ec"
    ) -> tuple[Path, Path]:
        """A self-signed client certificate (clientAuth, not a CA), like
        :meth:`client_certificate` but signed by its own key: ``(<name>.pem, <name>.key)``."""
        request, key, extensions = self._client_request(name, subject, key_type)
        cert = self.directory / f"{name}.pem"
        run_tool("openssl", "x509", "-req", "-in", str(request), "-signkey", str(key),
                 "-days", "2", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
        return cert, key

    def _client_request(self, name: str, subject: str, key_type: str) -> tuple[Path, Path, Path]:
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        if key_type == "ec":
            algorithm = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        elif key_type == "rsa":
            algorithm = ["-newkey", "rsa:2048"]
        else:
            raise ValueError(f"key_type must be ec or rsa, not {key_type!r}")
        run_tool("openssl", "req", *algorithm, "-nodes", "-subj", subject,
                 "-keyout", str(key), "-out", str(request))  # fmt: skip
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = clientAuth\n"
        )
        return request, key, extensions


def certificate_thumbprint(cert: Path) -> str:
    """base64url(SHA-256(DER)) of a PEM certificate: RFC 8705's ``x5t#S256``, the value a
    certificate-bound access token carries in ``cnf``."""
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def certificate_jwk(cert: Path) -> dict[str, Any]:
    """The public JWK of a PEM certificate's key with the certificate itself in ``x5c``: an
    entry of a client's ``jwks`` for ``self_signed_tls_client_auth`` (RFC 8705 §2.2)."""
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())

    def b64url(number: int, size: int) -> str:
        return base64.urlsafe_b64encode(number.to_bytes(size, "big")).rstrip(b"=").decode()

    key = certificate.public_key()
    jwk: dict[str, Any]
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        jwk = {"kty": "EC", "crv": curves[key.curve.name],
               "x": b64url(point.x, size), "y": b64url(point.y, size)}  # fmt: skip
    elif isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        jwk = {"kty": "RSA", "n": b64url(numbers.n, (key.key_size + 7) // 8),
               "e": b64url(numbers.e, (numbers.e.bit_length() + 7) // 8)}  # fmt: skip
    else:
        raise ValueError(f"no JWK for a {type(key).__name__}")
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {**jwk, "use": "sig", "x5c": [base64.b64encode(der).decode()]}


_LOCATION = """
    location {prefix} {{
      proxy_pass http://127.0.0.1:{port}/;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;{prefix_header}{client_headers}
    }}"""

# Mutual TLS: ask for a client certificate, verify it against the test CA, pass it on either way.
_CLIENT_CERTIFICATES = """
    ssl_verify_client optional_no_ca;
    ssl_client_certificate {ca};
    ssl_verify_depth 2;"""

_CLIENT_HEADERS = """
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
      proxy_set_header X-SSL-Client-Verify $ssl_client_verify;"""

_MTLS_LOG = """
  log_format mtls '$remote_addr "$request" $status verify=$ssl_client_verify '
                  'subject="$ssl_client_s_dn"';"""

_CONFIG = """
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{{log_format}
  access_log {tmp}/access.log{log_name};
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};{client_certificates}
{locations}
  }}
}}
"""


class ReverseProxy:
    """nginx on https://127.0.0.1:PORT forwarding each prefix (``/myapp/``) to a local port;
    with ``client_certificates``, asking for client certificates (see the module's notes)."""

    def __init__(
        self,
        directory: Path,
        ca: TestCA,
        routes: dict[str, int],
        *,
        client_certificates: bool = False,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        locations = "".join(
            _LOCATION.format(
                prefix=prefix,
                port=port,
                # "/" is no prefix: nothing to strip, nothing to announce
                prefix_header=(
                    f"\n      proxy_set_header X-Forwarded-Prefix {prefix.rstrip('/')};"
                    if prefix.rstrip("/")
                    else ""
                ),
                client_headers=_CLIENT_HEADERS if client_certificates else "",
            )
            for prefix, port in routes.items()
        )
        self.config = directory / "nginx.conf"
        self.config.write_text(
            _CONFIG.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                tmp=directory,
                port=self.port,
                cert=ca.server_cert,
                key=ca.server_key,
                locations=locations,
                client_certificates=(
                    _CLIENT_CERTIFICATES.format(ca=ca.cert) if client_certificates else ""
                ),
                log_format=_MTLS_LOG if client_certificates else "",
                log_name=" mtls" if client_certificates else "",
            )
        )
        self.ca = ca
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReverseProxy:
        nginx = require_tool("nginx")
        self._process = subprocess.Popen(
            [nginx, "-c", str(self.config), "-p", str(self.directory), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        delay = 0.02
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"nginx exited: {error}")
            try:
                trust = ssl.create_default_context(cafile=str(self.ca.cert))
                httpx.get(self.url, verify=trust, timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(delay)  # back-off between polls; the answer is the sync point
                delay = min(delay * 2, 0.5)
        self.__exit__(None, None, None)
        raise RuntimeError("nginx did not answer within 20 s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def access_log(self) -> str:
        path = self.directory / "access.log"
        return path.read_text() if path.exists() else ""
