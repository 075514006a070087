"""A real nginx in front of an app, terminating TLS, for the deployment tests.

    ca = TestCA(tmp_path)                     # a CA and a 127.0.0.1 server certificate (openssl)
    with ReverseProxy(tmp_path, ca, {"/myapp/": app_port}) as proxy:
        proxy.url                              # https://127.0.0.1:<port>

Debian's nginx runs unprivileged-style: its own config, pid, logs and temp paths in the test's
directory, one worker, ``daemon off``, listening on 127.0.0.1 only. It passes the usual
``X-Forwarded-*`` headers (``X-Forwarded-Prefix`` too) and strips the prefix, as a typical
ingress does.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

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


_LOCATION = """
    location {prefix} {{
      proxy_pass http://127.0.0.1:{port}/;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Prefix {bare};
    }}"""

_CONFIG = """
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {tmp}/access.log;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
{locations}
  }}
}}
"""


class ReverseProxy:
    """nginx on https://127.0.0.1:PORT forwarding each prefix (``/myapp/``) to a local port."""

    def __init__(self, directory: Path, ca: TestCA, routes: dict[str, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        locations = "".join(
            _LOCATION.format(prefix=prefix, port=port, bare=prefix.rstrip("/"))
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
