"""Over HTTP: uvicorn serving the bare app and the app behind the middleware, loaded by wrk.

For each server stack (uvicorn with h11 on asyncio, and with httptools on uvloop) and worker
count (1 and 2), the bare app and the app behind the middleware run side by side; wrk loads
each in turn, in alternating rounds, with an anonymous request to a public page and with a
signed-in request (a session cookie seen before). The rows are the throughput ratios (target:
at least 0.90 of bare) and the p99 latencies. wrk and the servers are pinned to separate cores
where the machine has enough (see :func:`cores`); where it has not (two workers on two cores),
which worker accepts which connection and how the scheduler shares the cores with wrk decide
more than the servers do, and those throughput rows read "noise" (no target met or missed).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Row

ROOT = Path(__file__).resolve().parent.parent
APP = """
import os
from bench.requests import bare_asgi, config, server, session_cookie, stored_session_cookie
from adapter import OIDCMiddleware
import httpx

def create_app():
    if os.environ["BENCH_APP"] == "bare":
        return bare_asgi
    idp, _ = server()
    http = httpx.AsyncClient(transport=httpx.MockTransport(idp))
    public = {"public-paths": ["/"]}
    if os.environ["BENCH_APP"] == "redis":
        extra = {"session-store": "redis", "redis-url": os.environ["BENCH_REDIS_URL"], **public}
        app = OIDCMiddleware(bare_asgi, config(**extra), http=http)
        cookie = stored_session_cookie(app)
    else:
        app = OIDCMiddleware(bare_asgi, config(**public), http=http)
        cookie = session_cookie(app)
    with open(os.environ["BENCH_COOKIE_FILE"] + f".{os.getpid()}", "w") as f:
        f.write(cookie)
    return app
"""
STACKS = {
    "h11": ["--http", "h11"],  # the default loop (uvloop when installed; see the module doc)
    "httptools+uvloop": ["--http", "httptools", "--loop", "uvloop"],
}
CONNECTIONS = 32
TARGET = 0.90
_LATENCY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    cookie: str


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p99: float  # seconds


def wrk() -> str:
    """The load generator: Debian's wrk (``make bench`` installs it)."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench: wrk is not installed; install it (Debian: apt-get install wrk)")
    return found


def cores(workers: int) -> tuple[list[str], list[str]]:
    """``taskset`` prefixes for the server and for wrk: separate cores when the machine has
    at least one more core than workers, else none (they share every core)."""
    count = len(os.sched_getaffinity(0))
    if count < workers + 1 or shutil.which("taskset") is None:
        return [], []
    server = ",".join(str(c) for c in range(workers))
    load = ",".join(str(c) for c in range(workers, count))
    return ["taskset", "-c", server], ["taskset", "-c", load]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(kind: str, stack: str, workers: int, directory: Path) -> Server:
    (directory / "bench_http_app.py").write_text(APP)
    port = free_port()
    cookie_file = directory / f"cookie-{kind}-{port}"
    env = {
        **os.environ,
        "BENCH_APP": kind,
        "BENCH_COOKIE_FILE": str(cookie_file),
        "PYTHONPATH": f"{directory}:{ROOT}",
    }
    pin, _ = cores(workers)
    command = [
        *pin, sys.executable, "-m", "uvicorn", "--factory", "bench_http_app:create_app",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log", *STACKS[stack],
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        written = sorted(directory.glob(f"{cookie_file.name}.*"))
        ready = kind == "bare" or len(written) >= workers
        if ready and _accepts(port):
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"uvicorn ({kind}, {stack}, {workers} workers) did not start")
        time.sleep(0.05)  # back-off while uvicorn starts; the port and files are the sync point
    cookie = written[0].read_text() if kind != "bare" else ""
    return Server(process, port, cookie)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def load(server: Server, cookie: str, seconds: float, workers: int) -> Load:
    """wrk against ``/`` for ``seconds``: requests per second and the p99 latency."""
    _, pin = cores(workers)
    command = [
        *pin, wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
        *(["-H", f"Cookie: {cookie}"] if cookie else []), f"http://127.0.0.1:{server.port}/",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if rate is None or p99 is None or errors is not None:
        raise RuntimeError(f"wrk: unexpected output:\n{output}")
    return Load(float(rate[1]), float(p99[1]) * _LATENCY_UNITS[p99[2]])


def http_rows(seconds: float, directory: Path, quick: bool = False) -> list[Row]:
    """Every stack and worker count (``quick``: two combinations, for the smoke test).

    With several workers, which worker accepts which of wrk's connections is decided once per
    server start, and an uneven split caps a server at one core: each round then starts both
    servers afresh, so that the median is not one start's luck.
    """
    from tests.redis_server import RedisServer

    combinations = [(s, w) for s in STACKS for w in (1, 2)]
    if quick:
        combinations = [("h11", 1), ("httptools+uvloop", 2)]
    rounds = 1 if quick else 3
    rows: list[Row] = []
    with RedisServer(directory / "redis") as redis:
        os.environ["BENCH_REDIS_URL"] = redis.url
        for stack, workers in combinations:
            kinds = ["bare", "middleware"]
            if (stack, workers) == ("httptools+uvloop", 1) or (quick and workers == 2):
                kinds.append("redis")
            results: dict[tuple[str, str], list[Load]] = {}
            starts = rounds if workers > 1 else 1
            for _ in range(starts):
                servers = {kind: serve(kind, stack, workers, directory) for kind in kinds}
                try:
                    _measure(servers, workers, seconds, rounds // starts, results)
                finally:
                    for server in servers.values():
                        server.process.terminate()
                        server.process.wait(timeout=20)
            label = f"HTTP wrk, uvicorn {stack}, {workers} worker{'s' if workers > 1 else ''}"
            # Without a core of its own for wrk, a bare server measured against itself varied
            # from 0.74 to 1.0 between starts on the development machine: such rows read noise.
            rows += _rows(label, results, unsettled=not cores(workers)[1])
    return rows


REQUESTS = ("anonymous public page", "signed in (cookie seen before)")


def _measure(
    servers: dict[str, Server],
    workers: int,
    seconds: float,
    rounds: int,
    results: dict[tuple[str, str], list[Load]],
) -> None:
    """wrk against each server in turn, ``rounds`` times; the loads go into ``results``."""
    cookie = servers["middleware"].cookie
    for server in servers.values():  # warm up: imports, caches, the remembered decision
        load(server, server.cookie, 1, workers)
    for _ in range(rounds):
        for kind, server in servers.items():
            for request in REQUESTS:
                if kind == "redis" and request == REQUESTS[0]:
                    continue  # the Redis store matters only to sessions
                # The bare app gets the same Cookie header as the middleware does.
                sent = "" if request == REQUESTS[0] else cookie
                sent = server.cookie if kind == "redis" else sent
                results.setdefault((kind, request), []).append(load(server, sent, seconds, workers))


def _rows(label: str, results: dict[tuple[str, str], list[Load]], unsettled: bool) -> list[Row]:
    rows: list[Row] = []
    for request in REQUESTS:
        bare, ours = results[("bare", request)], results[("middleware", request)]
        rows.append(_throughput(f"{label}: {request}, req/s vs bare", ours, bare, unsettled))
        rows.append(
            Row(
                f"{label}: {request}, p99 latency vs bare",
                statistics.median(r.p99 for r in ours),
                statistics.median(r.p99 for r in bare),
            )
        )
    redis = results.get(("redis", REQUESTS[1]))
    if redis is not None:
        bare = results[("bare", REQUESTS[1])]
        name = f"{label}: signed in, Redis store, req/s vs bare"
        rows.append(_throughput(name, redis, bare, unsettled))
    return rows


def _throughput(name: str, ours: list[Load], bare: list[Load], unsettled: bool) -> Row:
    return Row(
        name,
        statistics.median(r.requests_per_second for r in ours),
        statistics.median(r.requests_per_second for r in bare),
        TARGET,
        higher_is_better=True,
        unit="req/s",
        unsettled=unsettled,
    )
