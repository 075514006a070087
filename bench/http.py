"""Over HTTP: uvicorn serving the bare app and the app behind the middleware, under load.

The load is a bounded number of seconds of keep-alive requests from client threads in this
process (wrk is not assumed to be installed); both servers face the same client, one after
the other, and the ratio of their throughputs and p99 latencies is what counts.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.measure import Row

ROOT = Path(__file__).resolve().parent.parent
APP = """
import os
from bench.requests import bare_asgi, config, server, session_cookie
from adapter import OIDCMiddleware
import httpx

def create_app():
    if os.environ["BENCH_APP"] == "bare":
        return bare_asgi
    idp, _ = server()
    http = httpx.AsyncClient(transport=httpx.MockTransport(idp))
    if os.environ["BENCH_APP"] == "redis":
        from bench.requests import stored_session_cookie
        extra = {"session-store": "redis", "redis-url": os.environ["BENCH_REDIS_URL"]}
        app = OIDCMiddleware(bare_asgi, config(**extra), http=http)
        cookie = stored_session_cookie(app)
    else:
        app = OIDCMiddleware(bare_asgi, config(), http=http)
        cookie = session_cookie(app)
    with open(os.environ["BENCH_COOKIE_FILE"], "w") as f:
        f.write(cookie)
    return app
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(kind: str, directory: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    (directory / "bench_http_app.py").write_text(APP)
    port = free_port()
    cookie_file = directory / "cookie.txt"
    env = {
        **os.environ,
        "BENCH_APP": kind,
        "BENCH_COOKIE_FILE": str(cookie_file),
        "PYTHONPATH": f"{directory}:{ROOT}",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_http_app:create_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)  # back-off while uvicorn starts; the connection is the sync point
    cookie = cookie_file.read_text() if kind != "bare" else ""
    return process, port, cookie


def load(port: int, cookie: str, seconds: float, threads: int = 2) -> tuple[float, float]:
    """Requests per second and p99 latency over ``seconds`` of keep-alive GETs."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Cookie": cookie} if cookie else {}
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            connection.request("GET", "/", headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        connection.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 100 else max(latencies)
    return len(latencies) / seconds, p99


def http_rows(seconds: float, directory: Path) -> list[Row]:
    from tests.redis_server import RedisServer

    results = {}
    with RedisServer(directory / "redis") as redis:
        os.environ["BENCH_REDIS_URL"] = redis.url
        for kind in ("bare", "middleware", "redis"):
            process, port, cookie = serve(kind, directory)
            try:
                load(port, cookie, min(1.0, seconds / 4))  # warm up
                results[kind] = load(port, cookie, seconds)
            finally:
                process.terminate()
                process.wait(timeout=10)
    (bare_rps, bare_p99), (ours_rps, ours_p99) = results["bare"], results["middleware"]
    redis_rps = results["redis"][0]
    return [
        Row(
            "HTTP (uvicorn): throughput on the Redis store (seen before) vs bare",
            redis_rps,
            bare_rps,
            0.90,
            higher_is_better=True,
            unit="req/s",
        ),
        Row(
            "HTTP (uvicorn): throughput with middleware vs bare",
            ours_rps,
            bare_rps,
            0.90,
            higher_is_better=True,
            unit="req/s",
        ),
        Row("HTTP (uvicorn): p99 latency with middleware vs bare", ours_p99, bare_p99),
    ]
