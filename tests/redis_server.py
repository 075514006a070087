"""A real ``redis-server`` (Debian's) for the tests: loopback only, a private port, its data in
the test's directory (append-only, so a restart keeps the sessions).

    with RedisServer(tmp_path) as redis:
        redis.url            # redis://127.0.0.1:<port>/0
        redis.stop(); redis.start()   # an outage and a recovery, same port and data

    with RedisServer(d / "a", password=pw) as primary, \
         RedisServer(d / "b", password=pw, replica_of=primary) as replica, \
         SentinelServer(d / "s", primary, password=pw) as sentinel:
        sentinel.url         # redis+sentinel://:<pw>@127.0.0.1:<port>/mymaster/0
        primary.kill()       # SIGKILL: no goodbye to the replica or the Sentinel
        sentinel.wait_for_new_primary(primary.port)   # polls get-master-addr-by-name
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable
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
        self,
        directory: Path,
        password: str | None = None,
        tls: TestCA | None = None,
        replica_of: RedisServer | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = _free_port()
        self.password = password
        self.tls = tls  # TLS only (rediss://), with a certificate from this test CA
        self.replica_of = replica_of  # a replica of that server (its password, if any)
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
            "--repl-diskless-sync-delay", "0",  # a replica's first copy at once, not in 5 s
            "--shutdown-timeout", "0",  # a primary stops at once, not waiting for its replicas
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if self.replica_of is not None:
            # No AOF: a replica writing its first one after the copy ignores SIGTERM until done.
            command[command.index("--appendonly") + 1] = "no"
            command += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
            if self.replica_of.password:
                command += ["--masterauth", self.replica_of.password]
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
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """One command (after AUTH), its raw RESP answer (the first 64 KiB)."""
        with self._connect() as connection:
            if self.password:
                connection.sendall(_resp("AUTH", self.password))
                connection.recv(64)
            connection.sendall(_resp(*words))
            return connection.recv(65536)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-flight (no shutdown, no goodbye to a replica)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self.stop()

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
        self.start()
        if self.replica_of is not None:  # a replica is ready once its copy is complete
            _until(lambda: b"master_link_status:up" in self.command("INFO", "replication"))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SentinelServer:
    """One ``redis-sentinel`` (Debian's) watching ``primary`` as ``service``, quorum 1, on a
    private loopback port; quick to act (down after 2 s), as a test needs. A TLS primary makes
    it TLS only too, with the same test CA (``rediss+sentinel://``). Ready when it knows the
    primary's ``replicas`` (a failover needs one) or, without any, has reached the primary."""

    def __init__(
        self,
        directory: Path,
        primary: RedisServer,
        service: str = "mymaster",
        password: str | None = None,
        replicas: int = 1,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = _free_port()
        self.service = service
        self.password = password  # the Sentinel's own requirepass (sentinel_password)
        self.log = directory / "sentinel.log"  # +sdown, +switch-master ...: what it saw and did
        self._primary = primary
        self._replicas = replicas
        auth = f":{primary.password}@" if primary.password else ""
        query = f"?sentinel_password={password}" if password else ""
        scheme = "rediss+sentinel" if primary.tls else "redis+sentinel"
        self.url = f"{scheme}://{auth}127.0.0.1:{self.port}/{service}/0{query}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelServer:
        lines = [
            "bind 127.0.0.1", f"port {self.port}", f"dir {self.directory}", "daemonize no",
            "protected-mode yes", "loglevel notice", f"logfile {self.log}",
            f"sentinel monitor {self.service} 127.0.0.1 {self._primary.port} 1",
            # Not 1000: Sentinel reconnects to a promoted primary at most once a second, and a
            # down-after of 1 s or less can then mark the new primary down right after a switch.
            f"sentinel down-after-milliseconds {self.service} 2000",
            f"sentinel failover-timeout {self.service} 10000",
            f"sentinel parallel-syncs {self.service} 1",
        ]  # fmt: skip
        if self._primary.password:
            lines.append(f"sentinel auth-pass {self.service} {self._primary.password}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        tls = self._primary.tls
        if tls is not None:  # TLS to its clients and to the primary, nothing in the clear
            lines[1] = "port 0"
            lines += [
                f"tls-port {self.port}", f"tls-cert-file {tls.server_cert}",
                f"tls-key-file {tls.server_key}", f"tls-ca-cert-file {tls.cert}",
                "tls-auth-clients no", "tls-replication yes",
            ]  # fmt: skip
        config = self.directory / "sentinel.conf"  # Sentinel rewrites it: its own, writable
        config.write_text("\n".join(lines) + "\n")
        self._process = subprocess.Popen(
            [require_tool("redis-sentinel"), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _until(self._ready)
        return self

    def _ready(self) -> bool:
        if self._replicas:  # known from the primary's INFO
            listed = self._ask("SENTINEL", "REPLICAS", self.service)
            return listed.count(b"master-link-status") >= self._replicas
        state = self._ask("SENTINEL", "MASTER", self.service)
        return b"role-reported" in state and b"disconnected" not in state

    def _ask(self, *words: str) -> bytes:
        try:
            connection = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            if self._primary.tls is not None:
                context = ssl.create_default_context(cafile=str(self._primary.tls.cert))
                connection = context.wrap_socket(connection, server_hostname="127.0.0.1")
            with connection:
                if self.password:
                    connection.sendall(_resp("AUTH", self.password))
                    connection.recv(64)
                connection.sendall(_resp(*words))
                return connection.recv(65536)
        except OSError:
            return b""

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinel names it now (``get-master-addr-by-name``)."""
        answer = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service).split(b"\r\n")
        return int(answer[4]) if len(answer) > 4 and answer[4].isdigit() else None

    def wait_for_new_primary(self, old_port: int, timeout: float = 30) -> int:
        """Poll until the Sentinel names another primary than ``old_port``; its port."""
        _until(lambda: self.primary_port() not in (None, old_port), timeout)
        port = self.primary_port()
        assert port is not None
        return port

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> SentinelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _resp(*words: str) -> bytes:
    """A command in RESP (arguments may hold spaces or anything else)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` with a short back-off; the condition is the synchronisation point."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
