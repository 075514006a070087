"""SingleFlight: one refresh (or introspection) per key in flight, outcomes remembered."""

from __future__ import annotations

import asyncio
import threading

import pytest

from adapter.errors import ProviderError
from adapter.protocol._single_flight import SingleFlight
from adapter.protocol.tokens import TokenSet


def test_one_refresh_per_session_in_flight() -> None:
    flights: SingleFlight[TokenSet] = SingleFlight(success_ttl=30)
    calls: list[int] = []
    gate = threading.Barrier(10)

    def fetch() -> TokenSet:
        calls.append(1)
        return TokenSet(access_token=f"new-{len(calls)}")

    results: list[str] = []

    def request() -> None:
        gate.wait()
        result = flights.run(("sid-1", "rt-1"), fetch)
        assert result is not None
        results.append(result.access_token)

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == ["new-1"] * 10
    other = flights.run(("sid-2", "rt-1"), fetch)
    assert other is not None
    assert other.access_token == "new-2"


def test_a_slow_refresh_does_not_hold_other_sessions_or_valid_tokens() -> None:
    """Per-key locks: another session goes on while one hangs; a caller whose token is still
    valid does not wait; a failure is remembered, so the waiters and the next callers get it
    at once instead of each waiting for a timeout."""
    flights: SingleFlight[TokenSet] = SingleFlight(success_ttl=30, failure_ttl=5)
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def hanging() -> TokenSet:
        calls.append("slow")
        entered.set()
        release.wait(10)
        raise ProviderError("token endpoint: no answer in time")

    errors: list[str] = []

    def leader() -> None:
        try:
            flights.run("slow", hanging)
        except ProviderError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=leader)
    thread.start()
    assert entered.wait(5)
    assert flights.run("slow", hanging, wait=False) is None, "a valid token does not wait"
    other = flights.run("fast", lambda: TokenSet(access_token="other"))
    assert other is not None, "no stripe shared"
    assert other.access_token == "other"
    release.set()
    thread.join(5)
    assert errors == ["token endpoint: no answer in time"]
    with pytest.raises(ProviderError, match="no answer"):
        flights.run("slow", hanging)  # remembered: not called again
    assert calls == ["slow"]


def test_async_callers_share_one_flight() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        await asyncio.sleep(0)  # yield to the other callers, which must find the flight
        return "answer"

    async def main() -> list[str | None]:
        return await asyncio.gather(*(flights.run_async("token", fetch) for _ in range(20)))

    assert asyncio.run(main()) == ["answer"] * 20
    assert calls == [1]
    assert not flights.in_flight("token")


def test_a_cancelled_leader_neither_cancels_its_waiters_nor_the_call() -> None:
    """The client of the leading request goes away: the refresh it started still lands (the
    server may already have rotated the refresh token) and its waiters get the result."""
    flights: SingleFlight[str] = SingleFlight(success_ttl=30)

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            started.set()
            await release.wait()
            return "tokens"

        leader = asyncio.create_task(flights.run_async("k", slow))
        await started.wait()
        waiter = asyncio.create_task(flights.run_async("k", slow))
        await asyncio.sleep(0)  # let the waiter join the flight
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        release.set()
        assert await waiter == "tokens"
        assert not flights.in_flight("k")
        assert await flights.run_async("k", slow) == "tokens", "remembered, not called again"

    asyncio.run(asyncio.wait_for(main(), 5))
