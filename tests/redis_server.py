"""A real ``redis-server`` (Debian's) for the tests: loopback only, a private port, its data in
the test's directory (append-only, so a restart keeps the sessions).

    with RedisServer(tmp_path) as redis:
        redis.url            # redis://127.0.0.1:<port>/0
        redis.stop(); redis.start()   # an outage and a recovery, same port and data
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.conftest import require_tool
from tests.reverse_proxy import TestCA


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server --bind 127.0.0.1 --port P`` for the life of a ``with`` block."""

    def __init__(
        self, directory: Path, password: str | None = None, tls: TestCA | None = None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = _free_port()
        self.password = password
        self.tls = tls  # TLS only (rediss://), with a certificate from this test CA
        auth = f":{password}@" if password else ""
        scheme = "rediss" if tls else "redis"
        self.url = f"{scheme}://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        command = [
            require_tool("redis-server"),
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if self.tls:
            command[command.index("--port") + 1] = "0"  # no plain port at all
            command += [
                "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.server_cert),
                "--tls-key-file", str(self.tls.server_key),
                "--tls-ca-cert-file", str(self.tls.cert), "--tls-auth-clients", "no",
            ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        delay = 0.01
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._process.stderr!r}")
            if self._answers():
                return self
            time.sleep(delay)  # back-off between pings; the PONG is the synchronisation point
            delay = min(delay * 2, 0.2)
        raise RuntimeError("redis-server did not answer within 10 s")

    def _answers(self) -> bool:
        try:
            with self._connect() as connection:
                if self.password:
                    connection.sendall(f"AUTH {self.password}\r\n".encode())
                    connection.recv(64)
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        if self.tls is None:
            return connection
        context = ssl.create_default_context(cafile=str(self.tls.cert))
        return context.wrap_socket(connection, server_hostname="127.0.0.1")

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
