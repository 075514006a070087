"""Over HTTP: uvicorn serving the bare app and the app behind the middleware, loaded by wrk.

For each server stack (uvicorn with h11 on asyncio, and with httptools on uvloop) and worker
count (1 and 2), the bare app and the app behind the middleware run side by side, with an
anonymous request to a public page and with a signed-in request (a session cookie seen before).
The rows are throughput ratios (target: at least 0.90 of bare) and p99 latencies.

One worker: every server is loaded at once, each by its own wrk, servers and wrks pinned to one
core, and a server's figure is the CPU time it spent per request it answered (the scheduler's
own count, /proc/PID/task/*/schedstat): its throughput per CPU-second. Loaded in turn, the
same bare server's rate moved between 12,000 and 25,000 requests per second from one round to
the next on the development machine (a shared virtual machine whose speed drifts), and wrk on
another core made every answer cost a cross-core wake-up; loaded at once, servers meet the
same speed, and two bare servers read 0.975 to 1.016 of each other. The p99 latencies then
include waiting for the other servers' turns.

Two workers: the servers are loaded in turn, each round started afresh; wrk and the workers
then share the machine's two cores, and which worker accepts which connection and how the
scheduler shares the cores decide more than the servers do: those throughput rows read
"noise" (no target met or missed).
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
    cpu_per_request: float | None = None  # seconds, when the server was loaded side by side

    @property
    def rate(self) -> float:
        """Requests per CPU-second when known, else per second."""
        return 1 / self.cpu_per_request if self.cpu_per_request else self.requests_per_second


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
    pin, _ = cores(workers) if workers > 1 else (_ONE_CORE, [])
    command = [
        *pin, sys.executable, "-m", "uvicorn", "--factory", "bench_http_app:create_app",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log", *STACKS[stack],
    ]  # fmt: skip
    # In the temporary directory: from the caller's directory, ``python -m`` would import that
    # directory's adapter (another checkout's) ahead of ROOT's.
    process = subprocess.Popen(command, env=env, cwd=directory, stdin=subprocess.DEVNULL)
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
    output = subprocess.run(
        _wrk_command(server, cookie, seconds, pin), capture_output=True, text=True, check=True
    ).stdout
    return _parse(output)


def load_together(
    servers: dict[str, Server], sent: dict[str, str], seconds: float
) -> dict[str, Load]:
    """wrk against every server at once (servers and wrks on one core), with ``sent[kind]``
    as the cookie: each server's CPU time per request too."""
    before = {kind: cpu_time(server.process.pid) for kind, server in servers.items()}
    runs = {
        kind: subprocess.Popen(
            _wrk_command(server, sent[kind], seconds, _ONE_CORE),
            stdout=subprocess.PIPE,
            text=True,
        )
        for kind, server in servers.items()
    }
    outputs = {kind: run.communicate()[0] for kind, run in runs.items()}
    loads = {}
    for kind, server in servers.items():
        spent = cpu_time(server.process.pid) - before[kind]
        answered = _parse(outputs[kind])
        count = re.search(r"(\d+) requests in", outputs[kind])
        if count is None or int(count[1]) == 0:
            raise RuntimeError(f"wrk: no request answered:\n{outputs[kind]}")
        loads[kind] = Load(answered.requests_per_second, answered.p99, spent / int(count[1]))
    return loads


def cpu_time(pid: int) -> float:
    """Seconds the process has run on a CPU, to the nanosecond (every thread's schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


_ONE_CORE = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def _wrk_command(server: Server, cookie: str, seconds: float, pin: list[str]) -> list[str]:
    return [
        *pin, wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
        *(["-H", f"Cookie: {cookie}"] if cookie else []), f"http://127.0.0.1:{server.port}/",
    ]  # fmt: skip


def _parse(output: str) -> Load:
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
                    if workers == 1:
                        _measure_together(servers, seconds, 1 if quick else 2 * rounds, results)
                    else:
                        _measure(servers, workers, seconds, rounds // starts, results)
                finally:
                    for server in servers.values():
                        server.process.terminate()
                        server.process.wait(timeout=20)
            label = f"HTTP wrk, uvicorn {stack}, {workers} worker{'s' if workers > 1 else ''}"
            # Without a core of its own for wrk, a bare server measured against itself varied
            # from 0.74 to 1.0 between starts on the development machine: such rows read noise.
            rows += _rows(label, results, unsettled=workers > 1 and not cores(workers)[1])
    return rows


REQUESTS = ("anonymous public page", "signed in (cookie seen before)")


def _sent(kind: str, request: str, servers: dict[str, Server]) -> str:
    """The Cookie header for ``kind``: none for anonymous requests; the middleware's session
    cookie for signed-in ones (the bare app gets the same header); the Redis app its own."""
    if request == REQUESTS[0]:
        return ""
    return servers[kind].cookie if kind == "redis" else servers["middleware"].cookie


def _measure(
    servers: dict[str, Server],
    workers: int,
    seconds: float,
    rounds: int,
    results: dict[tuple[str, str], list[Load]],
) -> None:
    """wrk against each server in turn, ``rounds`` times; the loads go into ``results``."""
    for server in servers.values():  # warm up: imports, caches, the remembered decision
        load(server, server.cookie, 1, workers)
    for _ in range(rounds):
        for kind, server in servers.items():
            for request in REQUESTS:
                if kind == "redis" and request == REQUESTS[0]:
                    continue  # the Redis store matters only to sessions
                sent = _sent(kind, request, servers)
                results.setdefault((kind, request), []).append(load(server, sent, seconds, workers))


def _measure_together(
    servers: dict[str, Server],
    seconds: float,
    rounds: int,
    results: dict[tuple[str, str], list[Load]],
) -> None:
    """Every server loaded at once (:func:`load_together`), ``rounds`` times per request."""
    load_together(servers, {kind: server.cookie for kind, server in servers.items()}, 1)
    for _ in range(rounds):
        for request in REQUESTS:
            loaded = dict(servers)
            if request == REQUESTS[0]:
                loaded.pop("redis", None)  # the Redis store matters only to sessions
            sent = {kind: _sent(kind, request, servers) for kind in loaded}
            for kind, done in load_together(loaded, sent, seconds).items():
                results.setdefault((kind, request), []).append(done)


def _rows(label: str, results: dict[tuple[str, str], list[Load]], unsettled: bool) -> list[Row]:
    rows: list[Row] = []
    for request in REQUESTS:
        bare, ours = results[("bare", request)], results[("middleware", request)]
        rows.append(_throughput(f"{label}: {request}", ours, bare, unsettled))
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
        rows.append(_throughput(f"{label}: signed in, Redis store", redis, bare, unsettled))
    return rows


def _throughput(name: str, ours: list[Load], bare: list[Load], unsettled: bool) -> Row:
    """Side by side (CPU time known), the median of each round's ratio, on bare's median
    rate; loaded in turn, the ratio of the medians."""
    baseline = statistics.median(r.rate for r in bare)
    if all(r.cpu_per_request for r in ours + bare):
        ratio = statistics.median(o.rate / b.rate for o, b in zip(ours, bare, strict=True))
        value, name = baseline * ratio, f"{name}, req per CPU-second vs bare"
    else:
        value, name = statistics.median(r.rate for r in ours), f"{name}, req/s vs bare"
    return Row(
        name, value, baseline, TARGET, higher_is_better=True, unit="req/s", unsettled=unsettled
    )
