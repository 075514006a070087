"""One call in flight per key, shared by every concurrent caller, with its outcome remembered.

Two uses, both against a server that may be slow or hostile:

- **refresh**, keyed by session and refresh token: two requests of one session that both find
  the access token about to expire must not both spend a rotating refresh token (the second
  would be refused and end the session). The first refreshes; the others wait for it, or, when
  their token is still valid, go on without waiting. A failure is remembered for a short
  back-off, so a hanging token endpoint costs one timeout per session, not one per request.
- **introspection**, keyed by the token: a burst of requests with one unknown token costs one
  authenticated call to the server, not one each.

Keys are per call (a session, a token), never striped: unrelated sessions never queue behind
each other. Nothing grows without bound: flights are dropped when they land and the remembered
outcomes are capped.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")


class _Flight(Generic[T]):
    """A call in progress: waiters block on ``done`` (threads) or ``future`` (one event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.done = threading.Event()
        self.loop = loop
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.value: T | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Future[T] | None = None  # held here: the loop keeps tasks weakly

    def land(self, value: T | None, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self.done.set()
        if self.future is not None and not self.future.done():
            self.future.set_result(None)


class SingleFlight(Generic[T]):
    """Run ``fetch`` once per key at a time; remember successes and failures for a while.

    ``success_ttl`` / ``failure_ttl``: seconds an outcome is handed to later callers of the same
    key (0: only to the callers that waited for it).
    """

    def __init__(
        self, success_ttl: float = 0.0, failure_ttl: float = 0.0, max_remembered: int = 10_000
    ) -> None:
        self.success_ttl = success_ttl
        self.failure_ttl = failure_ttl
        self.max_remembered = max_remembered
        self._flights: dict[Hashable, _Flight[T]] = {}
        self._outcomes: OrderedDict[Hashable, tuple[float, T | None, BaseException | None]] = (
            OrderedDict()
        )
        self._guard = threading.Lock()

    def in_flight(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is running now."""
        return key in self._flights

    def run(self, key: Hashable, fetch: Callable[[], T], *, wait: bool = True) -> T | None:
        """``fetch()`` once for ``key``; ``None`` at once if one is running and not ``wait``."""
        with self._guard:
            remembered = self._remembered(key)
            if remembered is not None:
                return _outcome(remembered)
            flight, leader = self._join(key, None)
        if not leader:
            if not wait:
                return None
            flight.done.wait()
            return _outcome((flight.value, flight.error))
        return self._lead(key, flight, fetch)

    async def run_async(
        self, key: Hashable, fetch: Callable[[], Awaitable[T]], *, wait: bool = True
    ) -> T | None:
        """:meth:`run` for coroutines; a caller on another event loop (rare) waits in a thread."""
        import asyncio  # loaded by the running loop already; a WSGI app never imports it

        loop = asyncio.get_running_loop()
        with self._guard:
            remembered = self._remembered(key)
            if remembered is not None:
                return _outcome(remembered)
            flight, leader = self._join(key, loop)
        if not leader:
            if not wait:
                return None
            if flight.loop is loop and flight.future is not None:
                await asyncio.shield(flight.future)
            else:  # a flight led from another loop or a thread: do not block this loop
                await asyncio.to_thread(flight.done.wait)
            return _outcome((flight.value, flight.error))
        # The call runs as its own task: a leader whose request is cancelled (the client went
        # away) neither cancels its waiters nor loses a refresh the server may have answered.
        task = flight.task = asyncio.ensure_future(fetch())
        task.add_done_callback(lambda done: self._land_task(key, flight, done))
        assert flight.future is not None
        await asyncio.shield(flight.future)
        return _outcome((flight.value, flight.error))

    def _land_task(self, key: Hashable, flight: _Flight[T], task: asyncio.Future[T]) -> None:
        import asyncio

        if task.cancelled():
            self._land(key, flight, None, asyncio.CancelledError("the call was cancelled"))
        elif task.exception() is not None:
            self._land(key, flight, None, task.exception())
        else:
            self._land(key, flight, task.result(), None)

    def _join(
        self, key: Hashable, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[_Flight[T], bool]:
        """The flight for ``key`` and whether this caller leads it (call under the guard)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = _Flight(loop)
        return flight, True

    def _lead(self, key: Hashable, flight: _Flight[T], fetch: Callable[[], T]) -> T | None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fetch()
        except BaseException as exc:  # interrupted too: the waiters must never hang
            error = exc
        self._land(key, flight, value, error)
        if not isinstance(error, Exception) and error is not None:
            raise error
        return _outcome((value, error))

    def _land(
        self, key: Hashable, flight: _Flight[T], value: T | None, error: BaseException | None
    ) -> None:
        ttl = self.failure_ttl if error is not None else self.success_ttl
        now = time.monotonic()
        with self._guard:
            self._flights.pop(key, None)
            for old in list(itertools.islice(self._outcomes, 8)):  # expired ones, amortised
                if self._outcomes[old][0] <= now:
                    del self._outcomes[old]
            if ttl > 0 and (error is None or isinstance(error, Exception)):
                self._outcomes[key] = (now + ttl, value, error)
                self._outcomes.move_to_end(key)
                while len(self._outcomes) > self.max_remembered:
                    self._outcomes.popitem(last=False)
        flight.land(value, error)

    def _remembered(self, key: Hashable) -> tuple[T | None, BaseException | None] | None:
        entry = self._outcomes.get(key)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            del self._outcomes[key]
            return None
        return entry[1], entry[2]


def _outcome(outcome: tuple[T | None, BaseException | None]) -> T | None:
    """The value, or a fresh copy of the error (one exception object raised in several threads
    would share and grow one traceback)."""
    value, error = outcome
    if error is not None:
        raise copy.copy(error).with_traceback(None)
    return value
