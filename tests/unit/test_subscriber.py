"""The session-events subscriber's thread ends with its owner: a middleware dropped without
``close()`` (an app's test, a rebuilt app) leaves no thread reconnecting forever."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable
from typing import Any

from adapter.stores.redis import RedisRegistry, Subscriber


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


def until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling the condition, which is the synchronisation point
    return True


class Owner:
    def __init__(self) -> None:
        self.live: list[bool] = []

    def on_event(self, event: dict[str, Any]) -> None:
        raise AssertionError("no server, no events")

    def on_live(self, live: bool) -> None:
        self.live.append(live)


def test_the_thread_ends_when_its_owner_is_gone() -> None:
    registry = RedisRegistry(f"redis://127.0.0.1:{closed_port()}/0")
    owner = Owner()
    subscriber = Subscriber(registry, owner.on_event, owner.on_live, retry=0.05).start()
    live = owner.live
    assert until(lambda: len(live) >= 2), "it keeps trying while its owner is there"
    assert subscriber.thread.is_alive()
    assert not any(live), "never live: nothing answers"
    del owner
    gc.collect()
    subscriber.thread.join(timeout=5)
    assert not subscriber.thread.is_alive(), "its owner is gone: the thread ended"


def test_a_plain_function_is_held_as_it_is() -> None:
    registry = RedisRegistry(f"redis://127.0.0.1:{closed_port()}/0")
    seen: list[bool] = []
    subscriber = Subscriber(registry, lambda event: None, seen.append, retry=0.05).start()
    try:
        assert until(lambda: len(seen) >= 2), "held as it is: still called"
        assert subscriber.thread.is_alive()
    finally:
        subscriber.stop()
        subscriber.thread.join(timeout=5)
    assert not subscriber.thread.is_alive()
