"""Memory: flat after many authenticated requests and many distinct bearer tokens."""

from __future__ import annotations

import gc
import tracemalloc

import httpx

from adapter import OIDCMiddleware
from bench.measure import Row
from bench.requests import asgi_caller, bare_asgi, config, identity_server, server, session_cookie


def rss_bytes() -> int:
    """Resident memory now (Linux /proc), not the peak."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import resource

    return pages * resource.getpagesize()


def growth(call: object, total: int) -> tuple[float, float]:
    """Traced and resident memory growth between the middle and the end of ``total`` calls."""
    tracemalloc.start()
    half = total // 2
    for _ in range(half):
        call()  # type: ignore[operator]
    gc.collect()
    traced_half, rss_half = tracemalloc.get_traced_memory()[0], rss_bytes()
    for _ in range(total - half):
        call()  # type: ignore[operator]
    gc.collect()
    traced_end, rss_end = tracemalloc.get_traced_memory()[0], rss_bytes()
    tracemalloc.stop()
    # Traced memory in the adapter's steady state is a few KB: a 64 KiB floor keeps allocator
    # noise from looking like growth, while a leak of even one byte per request shows.
    floor = 64 * 1024
    return (traced_end + floor) / (traced_half + floor), rss_end / rss_half


def memory_rows(requests: int, tokens: int) -> list[Row]:
    idp, _ = server()
    app = OIDCMiddleware(
        bare_asgi, config(), http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
    )
    call = asgi_caller(app, headers=[(b"cookie", session_cookie(app).encode())])
    traced, rss = growth(call, requests)
    rows = [
        Row(
            f"memory, {requests:,} session requests: traced end/middle (+64 KiB)",
            traced,
            1.0,
            1.05,
            unit="x",
        ),
        Row(
            f"memory, {requests:,} session requests: resident end/middle", rss, 1.0, 1.05, unit="x"
        ),
    ]
    ec_server = identity_server("ES256")
    bearer = OIDCMiddleware(
        bare_asgi,
        config(**{"bearer-only": True}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(ec_server.idp)),
    )
    counter = iter(range(tokens + 10))

    def fresh() -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + ec_server.token(next(counter)).encode())]

    traced, rss = growth(asgi_caller(bearer, extra=fresh), tokens)
    rows += [
        Row(
            f"memory, {tokens:,} bearer tokens: traced end/middle (+64 KiB)",
            traced,
            1.0,
            1.05,
            unit="x",
        ),
        Row(f"memory, {tokens:,} bearer tokens: resident end/middle", rss, 1.0, 1.05, unit="x"),
    ]
    return rows
